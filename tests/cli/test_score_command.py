import json

import numpy as np
import pytest

from tfprune.cli.main import main
from tfprune.importance import ImportanceScores


@pytest.fixture
def config(image_folder, tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "model: {name: vgg11, width_multiplier: 0.0625}\n"
        f"data: {{source: {image_folder}, batch_size: 9}}\n"
        f"train: {{epochs: 1, verbose: 0, temperature: 5}}\nrun: {{dir: {tmp_path / 'run'}}}\n"
    )
    return path


def test_score_at_initialization_prints_and_saves(config, tmp_path, capsys):
    assert main(["score", str(config), "--measure", "grasp", "--option", "samples_per_class=2",
                 "--option", "temperature=1"]) == 0
    out = capsys.readouterr().out
    assert "block1_unit1_conv" in out and "saved:" in out
    scores = ImportanceScores.load(tmp_path / "run" / "scores" / "grasp-filter.npz")
    assert scores.measure == {"name": "grasp", "temperature": 1.0}
    assert scores.metadata["samples"] == {"hessian": 6}
    assert main(["score", str(config), "--measure", "snip", "--option", "num_samples=12"]) == 0
    snip = json.loads((tmp_path / "run" / "scores" / "snip-filter.json").read_text())
    assert snip["measure"]["temperature"] == 5.0  # g-based measures follow train.temperature


def test_score_a_checkpoint_against_its_run_initialization(config, tmp_path, capsys):
    assert main(["train", str(config)]) == 0
    checkpoint = tmp_path / "run" / "model.keras"
    output = tmp_path / "out" / "distance"
    assert main(["score", str(config), "--measure", "distance_from_init", "--checkpoint",
                 str(checkpoint), "--granularity", "weight", "--output", str(output)]) == 0
    scores = ImportanceScores.load(output)
    assert scores.granularity == "weight" and scores["block1_unit1_conv"].shape == (3, 3, 3, 4)
    assert all(np.all(values >= 0) for values in scores.values())
    assert sum(float(values.sum()) for values in scores.values()) > 0  # training moved weights


@pytest.mark.parametrize("arguments, message", [
    (["--measure", "magnitud"], "unknown importance measure 'magnitud'"),
    (["--measure", "snip", "--option", "sample=3"], "unknown option(s) ['sample']"),
    (["--measure", "snip", "--checkpoint", "nope.keras"], "--checkpoint nope.keras: no such"),
    (["--measure", "grasp"], "fewer than the 10 per class"),
    (["--measure", "bn_scale", "--granularity", "weight"], "supports granularity ['filter']"),
])
def test_bad_requests_exit_2_with_a_clear_message(config, capsys, arguments, message):
    assert main(["score", str(config), *arguments]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tfprune score: error:") and message in err


def test_an_existing_output_is_refused_before_scoring(config, tmp_path, capsys):
    mine = tmp_path / "mine.json"
    mine.write_text("{}")
    assert main(["score", str(config), "--measure", "magnitude", "--output",
                 str(tmp_path / "mine")]) == 2
    assert "mine.json: already exists, and tfprune never overwrites" in capsys.readouterr().err
    assert mine.read_text() == "{}" and not (tmp_path / "mine.npz").exists()
