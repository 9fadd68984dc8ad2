"""``export_all`` / ``ExportReport``, latency timing and the bench table."""

import keras
import pytest
from conftest import write_image_folder

import tfprune
from tfprune.data import load_data
from tfprune.export import (
    BenchRow,
    Verification,
    export_all,
    format_bench,
    litert_latency,
    speedups,
)
from tfprune.export.deploy import ExportReport
from tfprune.export.latency import _median_ms


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A narrow VGG-11 trained to confidence on 3 colour-coded classes (40 test images each)."""
    folder = write_image_folder(tmp_path_factory.mktemp("data") / "images", per_class=(40, 40))
    bundle = load_data(str(folder), batch_size=20, augment=False)
    keras.utils.set_random_seed(0)
    model = tfprune.models.build("vgg11", width_multiplier=0.0625, num_classes=3)
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(bundle.train_dataset(), epochs=8, verbose=0)
    return model, bundle


def test_int8_export_of_a_trained_model_agrees_with_keras(trained, tmp_path):
    model, bundle = trained
    none, int8 = export_all(model, tmp_path, ["none", "int8"], data=bundle, progress=None)
    assert none.keras_accuracy > 0.9  # the model is trained: the check below means something
    assert none.passed and none.verification.max_abs_diff <= 1e-3
    assert int8.verification.examples == 120 and int8.inputs == "test split"
    assert int8.verification.top1_agreement >= 0.97 and int8.passed
    assert int8.size_bytes < none.size_bytes / 2.5  # int8 weights
    assert int8.params == model.count_params() and int8.flops == tfprune.pruning.stats.flops(model)
    assert "check (top-1 agreement >= 97%): passed" in int8.format()


def test_export_all_refuses_bad_requests_before_exporting(trained, tmp_path):
    model, _ = trained
    with pytest.raises(ValueError, match=r"quantize: \['int4'\] not in"):
        export_all(model, tmp_path, ["none", "int4"], progress=None)
    with pytest.raises(ValueError, match="int8 quantization calibrates on training data"):
        export_all(model, tmp_path, ["int8"], progress=None)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(("quantize", "diff", "agreement", "passed"), [
    ("none", 9e-4, 0.5, True), ("none", 2e-3, 1.0, False),
    ("int8", 5.0, 0.97, True), ("int8", 0.1, 0.96, False),
])
def test_the_check_depends_on_the_quantization(quantize, diff, agreement, passed, tmp_path):
    report = ExportReport(tmp_path / "m.tflite", quantize, 1, 1, 1,
                          Verification(diff, agreement, 100), "random")
    assert report.passed is passed and report.as_dict()["passed"] is passed


def test_median_of_timed_runs_skips_the_warmup():
    calls = []
    latency = _median_ms(lambda: calls.append(1), repeats=5, warmup=3)
    assert len(calls) == 8 and latency.runs == 5 and latency.median_ms >= 0
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        _median_ms(lambda: None, repeats=0, warmup=0)


def test_speedups_are_ratios_against_the_first_row():
    rows = [BenchRow("dense", 1000, 400, 4000, 8.0, {1: 6.0, 2: 4.0}),
            BenchRow("slim", 250, 100, 1000, 4.0, {1: 2.0, 2: 2.0})]
    (ratio,) = speedups(rows)[1:]
    assert ratio["flops_reduction"] == 4.0 and ratio["params_reduction"] == 4.0
    assert ratio["keras_speedup"] == 2.0 and ratio["litert_speedup"] == {1: 3.0, 2: 2.0}
    table = format_bench(rows)
    assert "slim: FLOPs reduction 4.00x; speedup Keras 2.00x, LiteRT 1t 3.00x, LiteRT 2t 2.00x" \
        in table


def test_litert_latency_times_a_real_file(trained, tmp_path):
    model, _ = trained
    path = tfprune.export.export_tflite(model, tmp_path / "m.tflite")
    latency = litert_latency(path, threads=2, repeats=3, warmup=1)
    assert latency.runs == 3 and 0 < latency.median_ms < 1000


def test_bench_times_an_exported_file_as_it_is(trained, tmp_path, monkeypatch):
    """The pipeline's float export is timed, not converted again."""
    from tfprune.export import bench

    model, _ = trained
    path = tfprune.export.export_tflite(model, tmp_path / "m.tflite")
    converted = []
    monkeypatch.setattr(bench, "export_tflite", lambda *a, **k: converted.append(a) or path)
    (row,) = bench.bench_models([("slim", model)], threads=(1,), repeats=2, warmup=0,
                                progress=None, tflite_files={"slim": path})
    assert not converted and row.tflite_bytes == path.stat().st_size and row.litert_ms[1] > 0
    bench.bench_models([("other", model)], threads=(1,), repeats=2, warmup=0, progress=None,
                       tflite_files={"slim": path})
    assert len(converted) == 1  # a label without a file is converted
