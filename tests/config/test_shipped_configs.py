from pathlib import Path

import pytest

from tfprune import models
from tfprune.config import load_config

ROOT_CONFIGS = Path(__file__).resolve().parents[2] / "configs"
CONFIGS = sorted([*ROOT_CONFIGS.glob("*.yaml"), *ROOT_CONFIGS.glob("finetune/*.yaml")])


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_shipped_config_is_valid_and_names_a_model(path):
    config = load_config(path)
    assert config["model"]["name"] in models.available_models()


def test_there_are_configs_for_the_papers_networks():
    names = {p.stem for p in CONFIGS}
    assert {"quickstart", "vgg13_cifar10", "mobilenet_v1_cifar10", "resnet56_cifar10"} <= names


def _generator():
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "scripts" / "generate_configs.py"
    spec = importlib.util.spec_from_file_location("generate_configs", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pruning_configs_are_generated_and_up_to_date():
    root = Path(__file__).resolve().parents[2] / "configs" / "pruning"
    expected = _generator().all_configs()
    on_disk = {str(p.relative_to(root)): p.read_text() for p in root.rglob("*.yaml")}
    assert on_disk == expected, "run: python scripts/generate_configs.py"
    assert len(expected) == 2 * 3 * 2 * 3 * 8 + 1 + 8 + 4  # paper + reduced; the study (+4 cells)


def test_the_study_configs_follow_the_protocol():
    root = Path(__file__).resolve().parents[2] / "configs" / "pruning" / "study"
    measures = {}
    for path in sorted(root.glob("*_r5.yaml")):
        config = load_config(path)
        assert config["data"]["train_per_class"] is None  # all 50,000 / 10,000 images
        assert config["data"]["test_per_class"] is None
        assert (config["train"]["epochs"], config["train"]["lr_phases"]) == (20, [10, 5, 5])
        prune = config["prune"]
        assert (prune["target"], prune["rounds"], prune["num_samples"]) == (0.75, 5, 2560)
        measures[path.stem] = (prune["measure"], prune["measure_options"])
    assert measures["vgg13_cifar10_snip_r5"] == ("snip", {})
    assert measures["vgg13_cifar10_grasp_t1_r5"] == ("grasp", {"temperature": 1.0})
    assert measures["vgg13_cifar10_random_r5"] == ("random", {})  # seeded by train.seed
    assert measures["vgg13_cifar10_uniform_r5"] == ("uniform", {})
    assert len(measures) == 9
    one_round = {path.stem: load_config(path)["prune"] for path in root.glob("*_r1.yaml")}
    assert sorted(one_round) == ["vgg13_cifar10_grasp_abs_r1", "vgg13_cifar10_grasp_t1_r1",
                                 "vgg13_cifar10_grasp_t200_r1"]
    assert all(p["rounds"] == 1 and p["target"] == 0.75 for p in one_round.values())


def test_every_pruning_config_passes_the_prune_checks():
    from tfprune.workflows.prune_run import PruneExtension

    root = Path(__file__).resolve().parents[2] / "configs" / "pruning"
    for path in sorted(root.rglob("*.yaml")):
        if path.stem.endswith("_base"):  # the study's unpruned base models
            assert "prune" not in path.read_text(), path
            continue
        extension = PruneExtension(load_config(path))
        assert extension.schedule.rounds == extension.config["prune"]["rounds"], path
    cell = load_config(root / "paper" / "resnet56_cifar10_grasp_t1_r25.yaml")
    assert cell["prune"]["target"] == 0.6 and cell["train"]["epochs"] == 160
    assert PruneExtension(cell).measure.get_config() == {"temperature": 1.0}


def test_random_pruning_takes_the_runs_seed():
    from tfprune.workflows.prune_run import PruneExtension

    root = Path(__file__).resolve().parents[2] / "configs" / "pruning" / "study"
    path = root / "vgg13_cifar10_random_r5.yaml"
    seeds = [PruneExtension(load_config(path, [f"train.seed={s}"])).measure.seed for s in (0, 2)]
    assert seeds == [0, 2]
