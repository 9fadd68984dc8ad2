"""Golden values over a model zoo: what the channel analysis, the measures, the plans, the
cost counts and slim give, recorded before a refactor so that the refactor can prove it
changed none of them.

Run ``python tests/golden/golden_values.py --write`` to record them (only when a change is
meant to alter results, and say so in the commit); ``test_golden.py`` compares.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import keras
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/: zoo_models when run as a script

from zoo_models import grouped_conv_cnn, nested_backbone, transformer, unet, vit  # noqa: E402

GOLDEN_FILE = HERE / "golden.json"
#: Significant digits kept of scores and weight sums (float32 sums over a few hundred terms).
DIGITS = 6


def _paper_net(name, **options):
    from tfprune.models import build

    return lambda: build(name, width_multiplier=0.25, num_classes=10, **options)


def _application():
    return keras.applications.MobileNetV3Small(
        weights=None, classes=10, input_shape=(32, 32, 3), classifier_activation=None)


#: name -> (builder, gradient measure or None when the default classification loss does not
#: fit the output, e.g. per-pixel logits).
ZOO = {
    "vgg13": (_paper_net("vgg13"), "snip"),
    "resnet20": (_paper_net("resnet20"), "grasp"),
    "mobilenet_v1": (_paper_net("mobilenet_v1"), "proposed"),
    "mobilenet_v3_small": (_application, "snip"),
    "nested_mobilenet_v2": (nested_backbone, None),
    "transformer": (transformer, "snip"),
    "vit": (vit, "snip"),
    "unet": (unet, None),
    "grouped_conv": (grouped_conv_cnn, "snip"),
}


def _round(values) -> list:
    return [float(f"{v:.{DIGITS}g}") for v in np.asarray(values, dtype=np.float64).ravel()]


def _data(model, count=20, classes=10):
    rng = np.random.default_rng(0)
    shape = tuple(model.inputs[0].shape[1:])
    if model.inputs[0].dtype.startswith("int"):
        x = rng.integers(0, 50, size=(count, *shape)).astype("int32")
    else:
        x = rng.normal(size=(count, *shape)).astype("float32")
    classes = int(model.outputs[0].shape[-1])
    return x, np.arange(count) % classes


def _scores(scores) -> dict:
    return {layer: _round(values) for layer, values in sorted(scores.items())}


def _plan(plan) -> dict:
    return {key: np.flatnonzero(~mask).tolist() for key, mask in sorted(plan.keep.items())}


def _costs(model, plan) -> dict:
    from tfprune.graph.channels import ChannelGraph
    from tfprune.pruning.cost import KeepCost
    from tfprune.pruning.stats import flops, param_count

    graph = ChannelGraph(model)
    keep = {int(key): mask for key, mask in plan.keep.items()}
    return {"flops": flops(model, plan), "params": param_count(model, plan),
            "cost_model": {kind: KeepCost(model, graph, kind)(keep)
                           for kind in ("flops", "params")}}


def _weights(model) -> list:
    return [[w.path, list(w.shape), _round([np.sum(np.abs(w.numpy()))])[0]]
            for w in model.weights]


def compute(name: str) -> dict:
    """Every golden value of one zoo model, built from seed 0."""
    import tfprune
    from tfprune.pruning.stats import flops, param_count

    builder, measure = ZOO[name]
    keras.backend.clear_session()  # automatic layer names restart, whatever ran before
    keras.utils.set_random_seed(0)
    model = builder()
    x, y = _data(model)
    values = {"groups": [g.to_dict() for g in tfprune.channel_groups(model)],
              "flops": flops(model), "params": param_count(model)}
    magnitude = tfprune.score(model, "magnitude")
    values["magnitude"] = _scores(magnitude)
    ranked = magnitude
    if measure:
        ranked = tfprune.score(model, measure, (x, y), samples_per_class=2, num_samples=20,
                               batch_size=10)
        values[measure] = _scores(ranked)
    plan = tfprune.make_plan(model, ranked, 0.4)
    values["plan"] = _plan(plan)
    values["plan_costs"] = _costs(model, plan)
    budget = tfprune.make_plan(model, magnitude, {"flops": 0.6 * values["flops"]})
    values["flops_plan"] = _plan(budget)
    values["flops_plan_costs"] = _costs(model, budget)
    slimmed = tfprune.slim(model, plan)
    values["slim"] = {"params": int(slimmed.count_params()), "weights": _weights(slimmed)}
    return values


def main(argv=None) -> int:
    """Records (``--write``) or prints the golden values."""
    values = {name: compute(name) for name in ZOO}
    if "--write" in (argv or sys.argv[1:]):
        lines = [f" {json.dumps(name)}: {json.dumps(values[name], sort_keys=True)}"
                 for name in sorted(values)]
        GOLDEN_FILE.write_text("{\n" + ",\n".join(lines) + "\n}\n")
        print(f"wrote {GOLDEN_FILE}")
    else:
        print(json.dumps(values, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
