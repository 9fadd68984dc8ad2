"""Writes builders.json: groups, plans, scores and slimmed models of the paper's builders.

Run once with the code before a refactor of the channel analysis; the test
``tests/pruning/test_reference_builders.py`` then checks that the refactored code
gives the same groups, the same plans, the same scores and the same slimmed
models (parameter counts and outputs on a fixed input).

Usage: python tests/pruning/reference/make_reference.py
"""

import json
from pathlib import Path

import keras
import numpy as np

import tfprune
from tfprune import models

#: builder name -> keyword arguments (small widths: the test stays fast).
BUILDERS = {
    "vgg13": {"width_multiplier": 0.25},
    "resnet20": {"width_multiplier": 0.5},
    "resnet56": {"width_multiplier": 0.25},
    "mobilenet_v1": {"width_multiplier": 0.25},
}


#: False for the code before ``ScoringContext(batchnorm=...)`` existed (the fixture's).
BATCHNORM_OPTION = True


def fixed_input(model, seed=0):
    shape = (4, *model.inputs[0].shape[1:])
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def fixed_data(model, seed=1):
    images = fixed_input(model, seed)
    labels = np.arange(len(images)) % int(model.outputs[0].shape[-1])
    return images, labels


def reference(name: str, kwargs: dict) -> dict:
    keras.utils.set_random_seed(0)
    model = models.build(name, num_classes=10, **kwargs)
    groups = [g.to_dict() for g in tfprune.channel_groups(model)]
    magnitude = tfprune.score(model, "magnitude")
    # BN in inference mode, as the paper scores (at initialization "auto" would recalibrate).
    snip = tfprune.score(model, "snip", fixed_data(model), num_samples=4, batch_size=4,
                         **({"batchnorm": "inference"} if BATCHNORM_OPTION else {}))
    plan = tfprune.make_plan(model, magnitude, 0.5)
    slimmed = tfprune.slim(model, plan)
    return {
        "groups": groups,
        "magnitude": {k: np.asarray(v).tolist() for k, v in magnitude.items()},
        "snip": {k: np.asarray(v).tolist() for k, v in snip.items()},
        "plan_keep": {k: np.flatnonzero(v).tolist() for k, v in plan.keep.items()},
        "slim_params": int(slimmed.count_params()),
        "slim_output": slimmed(fixed_input(model), training=False).numpy().tolist(),
    }


if __name__ == "__main__":
    out = {name: reference(name, kwargs) for name, kwargs in BUILDERS.items()}
    path = Path(__file__).with_name("builders.json")
    path.write_text(json.dumps(out))
    print(f"wrote {path}")
