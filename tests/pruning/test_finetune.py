"""Pruning a trained model, then fine-tuning it, with and without keras.distillation."""

import json

import keras
import numpy as np
import pytest

from tfprune.cli.main import main
from tfprune.config import ConfigError, load_config
from tfprune.run_folder import RunFolder
from tfprune.workflows.finetune import finetune, resume_finetune


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(an image folder, a base run trained on it for one epoch), shared by the module."""
    from conftest import write_image_folder

    root = tmp_path_factory.mktemp("finetune")
    image_folder, base, config = write_image_folder(root / "images"), root / "base", \
        root / "train.yaml"
    config.write_text("model: {name: vgg11, width_multiplier: 0.0625}\n"
                      f"data: {{source: {image_folder}, batch_size: 9}}\n"
                      "train: {epochs: 1, verbose: 0}\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TFPRUNE_CACHE_DIR", str(root / "cache"))
        assert main(["train", str(config), "--set", f"run.dir={base}"]) == 0
    return image_folder, base


def base_and_config(trained, tmp_path, **finetune_options):
    """The trained base run, and a fine-tuning config of it (2 rounds of snip, 3 epochs)."""
    image_folder, base = trained
    overrides = [f"data.source={image_folder}", "data.batch_size=9", "train.epochs=3",
                 "train.verbose=0", "model.name=vgg11", "model.width_multiplier=0.0625",
                 f"finetune.source={base}", "prune.rounds=2", "prune.measure=snip",
                 "prune.num_samples=12", "prune.samples_per_class=1",
                 f"run.dir={tmp_path / 'finetuned'}"]
    overrides += [f"finetune.{key}={value}" for key, value in finetune_options.items()]
    return base, load_config(None, overrides)


@pytest.fixture(scope="module")
def distilled(trained, tmp_path_factory):
    """A distilled fine-tuning run to half the FLOPs, one learning-rate phase (so its first two
    epochs are a 2-epoch run's): ``(base, config, result)``."""
    from tfprune.pruning.stats import flops

    base, config = base_and_config(trained, tmp_path_factory.mktemp("distilled"),
                                   distill="true")
    dense = keras.models.load_model(base / "model.keras", compile=False)
    config["prune"]["target"] = {"flops": 0.5 * flops(dense)}
    config["train"]["lr_values"], config["train"]["lr_phases"] = [0.01], [1]
    return base, config, finetune(config)


def test_distilled_fine_tuning_prunes_before_training_and_resumes(distilled):
    from tfprune.pruning.stats import flops

    base, config, result = distilled
    dense = keras.models.load_model(base / "model.keras", compile=False)
    summary = result.summary
    assert summary["distilled"] and summary["rounds_done"] == 2
    assert summary["flops_after"] <= 0.5 * flops(dense)
    run = RunFolder(result.run_dir)
    plans = sorted(path.name for path in run.plans.glob("epoch_*.json"))
    assert plans == ["epoch_000.json", "epoch_001.json"]  # before training, then after epoch 1
    metrics = run.read_metrics()
    assert metrics[0]["kept_filters"] < sum(n for _, n in summary["filters_kept"].values())
    # the saved model is the student: pruned channels are zero, the teacher is not in it
    student = keras.models.load_model(run.model)
    assert student.count_params() == dense.count_params()
    # a finished run resumes to nothing and changes nothing
    before = run.summary.read_bytes()
    with pytest.raises(ConfigError, match="already finished"):
        resume_finetune(run.path)
    assert run.summary.read_bytes() == before


def test_an_interrupted_distilled_run_resumes_from_its_student(distilled, tmp_path):
    """Stopped after epoch 2 of 3 and resumed, it ends where the uninterrupted run ends."""
    from tfprune.config import save_config

    _, config, full = distilled
    stopped = json.loads(json.dumps(config))
    stopped["run"]["dir"] = str(tmp_path / "stopped")
    stopped["train"]["epochs"] = 2  # the same first two epochs
    finetune(stopped)
    run = RunFolder(stopped["run"]["dir"])
    run.summary.unlink()  # as if killed after the epoch-2 checkpoint
    run.model.unlink()
    stopped["train"]["epochs"] = 3
    save_config(stopped, run.config)
    resumed = resume_finetune(run.path)
    assert resumed.summary["rounds_done"] == 2 and resumed.summary["epochs"] == 3
    for a, b in zip(full.model.get_weights(), resumed.model.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_bad_sources_are_refused_before_training(image_folder, tmp_path):
    config = load_config(None, [f"data.source={image_folder}", "train.epochs=2"])
    with pytest.raises(ConfigError, match="finetune.source: name the trained model"):
        finetune(config)
    config["finetune"]["source"] = str(tmp_path / "nothing.keras")
    with pytest.raises(ConfigError, match="not a .keras file or a run folder"):
        finetune(config)
    config["finetune"]["source"] = str(tmp_path)
    config["prune"]["schedule"] = "early_bird"
    with pytest.raises(ConfigError, match="early_bird"):
        finetune(config)


def test_the_distillation_loss_is_the_kl_divergence_of_the_softened_outputs(trained, tmp_path):
    """Checked by hand: T^2 KL(softmax(t / T) || softmax(s / T)) / scale^2, T = scale x 3."""
    import tensorflow as tf

    from tfprune.training import compile_model
    from tfprune.workflows.finetune import FinetuneExtension

    base, config = base_and_config(trained, tmp_path, distill="true")
    extension = FinetuneExtension(config)
    student = keras.models.load_model(base / "model.keras", compile=False)
    rng = np.random.default_rng(0)
    student.set_weights([w + 0.05 * rng.normal(size=w.shape) for w in student.get_weights()])
    compile_model(student, config)
    distiller = extension.fit_model(student, config)
    x = rng.normal(size=(6, *student.inputs[0].shape[1:])).astype("float32")
    t = distiller.teacher(x, training=False).numpy() / 15.0  # scale 5 x temperature 3
    s = student(x, training=False).numpy() / 15.0
    p, q = tf.nn.softmax(t).numpy(), tf.nn.softmax(s).numpy()
    expected = np.mean(np.sum(p * np.log(p / q), axis=-1)) * 15.0 ** 2 / 5.0 ** 2
    (loss,) = distiller.distillation_losses
    value = float(loss.compute_loss(distiller.teacher(x, training=False),
                                    student(x, training=False))) / 5.0 ** 2
    assert expected > 0 and value == pytest.approx(expected, rel=1e-4)
    assert distiller.distillation_loss_weights == [1 / 25]
