"""The refactor guard: channel groups, scores, plans, cost counts and slimmed weights of a model
zoo equal the values recorded in golden.json (``golden_values.py --write``)."""

import json

import numpy as np
import pytest
from golden_values import GOLDEN_FILE, ZOO, compute

GOLDEN = json.loads(GOLDEN_FILE.read_text())
#: Scores come from float32 gradients: equal to about 5 significant digits on one machine type.
SCORE_RTOL = 1e-4


def _assert_scores_equal(actual: dict, expected: dict, what: str):
    assert sorted(actual) == sorted(expected), what
    for layer, values in expected.items():
        scale = max(np.max(np.abs(values)), 1e-30)
        np.testing.assert_allclose(actual[layer], values, rtol=SCORE_RTOL,
                                   atol=SCORE_RTOL * scale, err_msg=f"{what} {layer}")


def test_every_zoo_model_has_golden_values():
    assert sorted(GOLDEN) == sorted(ZOO)


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_model_matches_its_golden_values(name):
    actual, expected = json.loads(json.dumps(compute(name))), GOLDEN[name]
    assert sorted(actual) == sorted(expected)
    for key, value in expected.items():
        if key in ("magnitude", "snip", "grasp", "proposed"):
            _assert_scores_equal(actual[key], value, f"{name} {key}")
        elif key == "slim":
            assert actual[key]["params"] == value["params"]
            assert [w[:2] for w in actual[key]["weights"]] == [w[:2] for w in value["weights"]]
            np.testing.assert_allclose([w[2] for w in actual[key]["weights"]],
                                       [w[2] for w in value["weights"]], rtol=1e-5)
        else:
            assert actual[key] == value, f"{name} {key}"
