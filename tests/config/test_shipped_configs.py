from pathlib import Path

import pytest

from tfprune import models
from tfprune.config import load_config

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_shipped_config_is_valid_and_names_a_model(path):
    config = load_config(path)
    assert config["model"]["name"] in models.available_models()


def test_there_are_configs_for_the_papers_networks():
    names = {p.stem for p in CONFIGS}
    assert {"quickstart", "vgg13_cifar10", "mobilenet_v1_cifar10", "resnet56_cifar10"} <= names
