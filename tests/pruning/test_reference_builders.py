"""The paper's builders give the groups, scores, plans and slimmed models they gave before.

``reference/builders.json`` was written by ``reference/make_reference.py`` with the code
before the per-type handler registry; everything must still match it.
"""

import json
from pathlib import Path

import numpy as np
import pytest

REFERENCE = json.loads((Path(__file__).parent / "reference" / "builders.json").read_text())


def _make():
    import importlib.util

    path = Path(__file__).parent / "reference" / "make_reference.py"
    spec = importlib.util.spec_from_file_location("make_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_builder_matches_the_reference(name):
    module = _make()
    now = module.reference(name, module.BUILDERS[name])
    before = REFERENCE[name]
    assert now["groups"] == before["groups"]
    assert now["plan_keep"] == before["plan_keep"]
    assert now["slim_params"] == before["slim_params"]
    for measure in ("magnitude", "snip"):
        assert sorted(now[measure]) == sorted(before[measure])
        for layer, values in before[measure].items():
            np.testing.assert_allclose(now[measure][layer], values, rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(now["slim_output"], before["slim_output"], rtol=1e-4, atol=1e-5)
