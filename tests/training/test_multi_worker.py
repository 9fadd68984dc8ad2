"""Two workers on 127.0.0.1 under MultiWorkerMirroredStrategy: one plan, one model, one writer.

Each worker is a fresh process (a process can join one cluster). The test runs
the cluster twice:

1. ``run``: every worker scores its own shard of 40 samples (rows ``i::2``)
   and recalibrates BatchNorm on it (the test process scores the union of the
   shards alone and compares), scores its half of the run's own data (a
   DataBundle), checks that workers with different plans are stopped and
   Keras' multi-worker ``fit`` bugs. Then it prunes inside ``fit`` from the
   command line (``tfprune prune``, run.strategy=multi_worker): worker 1 dies
   after epoch 1's checkpoint, and worker 0 must stop by itself (TensorFlow's
   health check aborts its collectives) with a one-line error.
2. ``resume``: both workers resume the cut run, prune its second round and
   finish with one plan and bit-identical weights. (An uninterrupted run gave
   the same plan and weights, bit for bit, when this was built; the test no
   longer trains that baseline, to save a minute of CI.)
"""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest

import tfprune
from tfprune.config import load_config
from tfprune.data import load_data
from tfprune.importance import ScoringContext, get_measure
from tfprune.importance.batchnorm import batch_norm_layers, recalibrated_batchnorm
from tfprune.training import data_spec

MEASURES = ("snip", "grasp")  # g alone; g and Hg
OPTIONS = {"num_samples": 40, "samples_per_class": 4, "batchnorm": "inference"}

WORKER = r"""
import contextlib
import hashlib
import json
import os
import sys
from pathlib import Path

index, ports, out, phase = int(sys.argv[1]), sys.argv[2].split(","), Path(sys.argv[3]), sys.argv[4]
os.environ["TF_CONFIG"] = json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                                      "task": {"type": "worker", "index": index}})
# TensorFlow checks its peers every 30 s; 2 s finds a dead worker quickly (as TF's own tests).
from tensorflow.python.distribute import collective_all_reduce_strategy as mwms

mwms.CollectiveAllReduceExtended._check_health_interval = 2

import keras
import numpy as np
import tensorflow as tf

import tfprune
from tfprune.cli.main import main
from tfprune.config import load_config, save_config
from tfprune.data import load_data
from tfprune.importance import ScoringContext, get_measure
from tfprune.importance.batchnorm import batch_norm_layers, recalibrated_batchnorm
from tfprune.run_folder import RunFolder
from tfprune.training import data_spec, keras_workarounds
from tfprune.training.strategy import strategy_for
from tfprune.workers import WorkersDisagreeError, is_chief, require_same_plan
from tfprune.workflows.prune_run import resume_prune

BUNDLE_OPTIONS = {"num_samples": 18, "samples_per_class": 2, "batchnorm": "inference"}
SETTINGS = [
    "model.name=vgg11", "model.width_multiplier=0.0625", f"data.source={out / 'images'}",
    "data.batch_size=9", "train.epochs=2", "train.verbose=0", "run.strategy=multi_worker",
    "prune.measure=snip", "prune.target=0.5", "prune.rounds=2", "prune.num_samples=12"]
config = load_config(None, [*SETTINGS, "run.dir=" + str(out / "cut")])
strategy = strategy_for(config)


def report(key, value):
    print(f"@@ {key} {json.dumps(value)}", flush=True)


def digest(model):
    return hashlib.sha256(b"".join(np.asarray(w, np.float32).tobytes()
                                   for w in model.get_weights())).hexdigest()[:12]


if phase == "run":
    union = np.load(out / "union.npz")
    x, y = union["x"][index::2], union["y"][index::2]  # this worker's shard: 2 per class
    with strategy.scope():
        keras.utils.set_random_seed(0)
        model = tfprune.models.build("vgg11", width_multiplier=0.0625)
        model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    if is_chief(strategy):
        model.save_weights(out / "initial.weights.h5")
    scores = {measure: tfprune.score(model, measure, (x, y), num_samples=20, samples_per_class=2,
                                     batchnorm="inference") for measure in
              ("snip", "grasp")}
    np.savez(out / f"scores_{index}.npz", **{f"{m}/{k}": v for m, s in scores.items()
                                             for k, v in s.items()})
    # The run's own data (a DataBundle, the same on every worker): each scores half of it.
    context = ScoringContext(model, load_data(data_spec(config)), **BUNDLE_OPTIONS)
    np.savez(out / f"bundle_scores_{index}.npz",
             **{f"proposed/{k}": v for k, v in get_measure("proposed").score(context).items()})
    report("samples_used", context.samples_used)
    with recalibrated_batchnorm(model, [(x, y)]):
        report("moving_mean", batch_norm_layers(model)[0].moving_mean.numpy().tolist())
    plan = tfprune.make_plan(model, scores["snip"], 0.25 if index == 0 else 0.5)
    try:
        require_same_plan(plan, strategy)
        report("disagreement", "not found")
    except WorkersDisagreeError as error:
        report("disagreement", str(error))
    # Keras 3.15.1's multi-worker fit, without tfprune's workarounds (last: it may fail).
    rows = np.random.default_rng(0).random((32, 8)).astype("float32")
    dataset = tf.data.Dataset.from_tensor_slices((rows, np.arange(32) % 3)).batch(8)

    def fitted(build, reduce):
        with strategy.scope():
            inputs = keras.Input((8,))
            dense = keras.Model(inputs, keras.layers.Dense(3)(inputs))
            dense.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        patched = {} if reduce else {"_multi_worker_reduce": contextlib.nullcontext}
        originals = {name: getattr(keras_workarounds, name) for name in patched}
        try:
            for name, value in patched.items():
                setattr(keras_workarounds, name, value)
            with keras_workarounds.fit_workarounds(dense) if build else strategy.scope():
                dense.fit(dataset, epochs=1, verbose=0)
        except Exception as error:
            return "fails: " + " ".join(str(error).split())[:160]
        finally:
            for name, value in originals.items():
                setattr(keras_workarounds, name, value)
        return "fits"

    report("keras", [fitted(True, True), fitted(True, False), fitted(False, False)])

    # A prune run from the command line: worker 1 dies right after writing epoch 1's
    # checkpoint (into its scratch folder); worker 0 must stop by itself.
    if index == 1:
        commit = RunFolder.commit_checkpoint

        def dying_commit(self, epoch, path):
            commit(self, epoch, path)
            if epoch == 1:
                os._exit(9)

        RunFolder.commit_checkpoint = dying_commit
    save_config(config, out / f"cut_{index}.yaml")
    report("cutting", True)
    sys.exit(main(["prune", str(out / f"cut_{index}.yaml")]))
else:
    result = resume_prune(out / "cut")
    report("plans", sorted(p.name for p in (result.run_dir / "plans").glob("*.json")))
    report("final", [tfprune.PruningPlan.load(result.run_dir / "plans" / "epoch_002").checksum(),
                     digest(result.model)])
    report("scratch", [name for name in os.listdir(os.environ["TMPDIR"]) if "tfprune" in name])
"""


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _cluster(out: Path, phase: str, timeout=240):
    """Runs both workers of a phase; returns [(exit code, {key: value}, stderr)] per worker."""
    ports = ",".join(map(str, _free_ports(2)))
    processes = []
    for index in range(2):
        scratch = out / f"tmp-{phase}-{index}"
        scratch.mkdir(exist_ok=True)
        env = {**os.environ, "TMPDIR": str(scratch), "TF_CPP_MIN_LOG_LEVEL": "2"}
        processes.append(subprocess.Popen(
            [sys.executable, "-c", WORKER, str(index), ports, str(out), phase], env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = []
    started = time.time()
    try:
        for process in processes:
            stdout, stderr = process.communicate(timeout=timeout)
            reports = dict(line[3:].split(" ", 1) for line in stdout.splitlines()
                           if line.startswith("@@ "))
            results.append((process.returncode, {k: json.loads(v) for k, v in reports.items()},
                            stderr))
            print(phase, len(results) - 1, "ended after", round(time.time() - started), "s")
    finally:
        for process in processes:
            process.kill()
    return results


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """The two phases' results, and the folder they ran in."""
    from conftest import write_image_folder

    out = tmp_path_factory.mktemp("workers")
    write_image_folder(out / "images")
    rng = np.random.default_rng(1)
    np.savez(out / "union.npz", x=rng.normal(size=(40, 32, 32, 3)).astype("float32"),
             y=np.repeat(np.arange(10), 4))
    return {phase: _cluster(out, phase) for phase in ("run", "resume")}, out


def test_workers_score_their_shards_into_the_scores_of_the_union(cluster):
    phases, out = cluster
    for _, reports, stderr in phases["run"]:
        assert "cutting" in reports, stderr[-3000:]
    union = np.load(out / "union.npz")
    model = tfprune.models.build("vgg11", width_multiplier=0.0625)
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.load_weights(out / "initial.weights.h5")
    workers = [np.load(out / f"scores_{index}.npz") for index in range(2)]
    for measure in MEASURES:
        alone = tfprune.score(model, measure, (union["x"], union["y"]), **OPTIONS)
        for layer, value in alone.items():
            np.testing.assert_array_equal(workers[0][f"{measure}/{layer}"],
                                          workers[1][f"{measure}/{layer}"])
            np.testing.assert_allclose(workers[0][f"{measure}/{layer}"], value, rtol=2e-4,
                                       atol=1e-6 * np.abs(value).max(), err_msg=measure)
    # A DataBundle is the same on every worker: each scores every other sample of it.
    config = load_config(None, [f"data.source={out / 'images'}", "data.batch_size=9"])
    context = ScoringContext(model, load_data(data_spec(config)), num_samples=18,
                             samples_per_class=2, batchnorm="inference")
    for layer, value in get_measure("proposed").score(context).items():
        for index in range(2):
            np.testing.assert_allclose(np.load(out / f"bundle_scores_{index}.npz")[
                f"proposed/{layer}"], value, rtol=2e-4, atol=1e-6 * np.abs(value).max())
    used = [reports["samples_used"]["gradient"] for _, reports, _ in phases["run"]]
    assert context.samples_used["gradient"] == sum(used) == 18 and max(used) < 18, used
    shards = [(union["x"][i::2], union["y"][i::2]) for i in range(2)]
    with recalibrated_batchnorm(model, shards):  # the mean of the two shards' statistics
        expected = batch_norm_layers(model)[0].moving_mean.numpy()
    for _, reports, _ in phases["run"]:
        np.testing.assert_allclose(reports["moving_mean"], expected, rtol=1e-5, atol=1e-6)


def test_workers_with_different_plans_stop_naming_both_checksums(cluster):
    phases, _ = cluster
    messages = [reports["disagreement"] for _, reports, _ in phases["run"]]
    for message in messages:
        assert "the workers made different pruning plans (worker 0: " in message, message
        assert "worker 1: " in message
    assert messages[0].split("(")[1].split(")")[0] == messages[1].split("(")[1].split(")")[0]


def test_a_killed_worker_stops_the_other_with_one_line(cluster):
    phases, _ = cluster
    (chief_code, _, chief_err), (worker_code, _, worker_err) = phases["run"]
    assert worker_code == 9, worker_err[-3000:]
    assert chief_code == 3 and "Traceback" not in chief_err, chief_err[-3000:]
    (line,) = [line for line in chief_err.splitlines() if line.startswith("tfprune prune")]
    assert "the cluster lost a worker" in line and "--resume RUN_DIR" in line, line


def test_resumed_workers_end_with_one_plan_and_one_model_and_only_the_chief_writes(cluster):
    phases, out = cluster
    for code, reports, stderr in phases["resume"]:
        assert code == 0, stderr[-3000:]
        assert reports["plans"] == ["epoch_001.json", "epoch_002.json"]
        assert reports["scratch"] == []  # worker 1's scratch folder is gone
    (_, chief, _), (_, worker, _) = phases["resume"]
    assert chief["final"] == worker["final"]  # the same plan and bit-identical weights
    run = out / "cut"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["replicas"] == 2 and summary["rounds_done"] == 2
    # channels removed before the kill stay removed
    before, after = (tfprune.PruningPlan.load(run / "plans" / f"epoch_00{i}") for i in (1, 2))
    assert all(np.all(after.keep[k] <= before.keep[k]) for k in before.keep)
    assert before.fraction_removed == pytest.approx(0.25, abs=0.01)
    assert after.fraction_removed == pytest.approx(0.5, abs=0.01)
    assert sorted(p.name for p in out.iterdir() if p.is_dir() and p.name.startswith("cut")) \
        == ["cut"]


def test_keras_multi_worker_fit_needs_both_workarounds(cluster):
    phases, _ = cluster
    for _, reports, _ in phases["run"]:
        both, build_only, neither = reports["keras"]
        assert both == "fits"
        # If one of these fits, Keras fixed that bug: see tfprune/training/keras_workarounds.py.
        assert "Invalid reduction dimension 0 for input with 0 dimensions" in build_only, \
            build_only
        assert "Attempt to convert a value (PerReplica" in neither, neither


def test_on_a_worker_other_than_the_chief_the_pipeline_stops_after_training(monkeypatch,
                                                                           tmp_path):
    """Slimming, exports and timing are one process's work: the chief's."""
    import tfprune.pipeline as pipeline
    from tfprune.config import validate
    from tfprune.training import TrainResult

    trained = TrainResult(tmp_path, None, {"epochs": 1})
    monkeypatch.setattr(pipeline, "prune", lambda config, resume=False: trained)
    monkeypatch.setattr(pipeline, "is_chief", lambda strategy: False)
    monkeypatch.setattr(pipeline, "slim_run", lambda run_dir: pytest.fail("a worker slimmed"))
    lines = []
    config = validate({"run": {"dir": str(tmp_path / "run")}})
    assert pipeline.run_pipeline(config, progress=lines.append) is trained
    assert lines == ["training done; the chief slims, exports and times the model"]
