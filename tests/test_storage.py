"""Saved plans and scores: corrupted or truncated files fail with one line naming the file."""

import json

import numpy as np
import pytest

from tfprune.pruning.plan import PruningPlan
from tfprune.storage import StorageError, read_pair, write_pair


def saved_plan(tmp_path):
    plan = PruningPlan("filter", [{"index": 0, "size": 3, "sources": ["conv"], "followers": [],
                                   "consumers": []}], {"0": [True, False, True]},
                       {"0": [1.0, 0.0, 2.0]})
    return plan.save(tmp_path / "plan")


def test_round_trip(tmp_path):
    path = saved_plan(tmp_path)
    assert PruningPlan.load(path).keep["0"].tolist() == [True, False, True]


def test_truncated_json_names_the_file(tmp_path):
    path = saved_plan(tmp_path)
    json_path = path.with_suffix(".json")
    json_path.write_text(json_path.read_text()[:20])
    with pytest.raises(StorageError, match=r"plan.json: not a readable pruning plan description"):
        PruningPlan.load(path)


def test_corrupted_npz_never_suggests_pickles(tmp_path):
    path = saved_plan(tmp_path)
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(StorageError) as error:
        PruningPlan.load(path)
    assert "plan.npz: not a readable pruning plan file" in str(error.value)
    assert "pickle" not in str(error.value)


def test_object_arrays_are_refused_not_unpickled(tmp_path):
    write_pair(tmp_path / "scores", {"x": {"a": np.zeros(2)}}, {})
    np.savez(tmp_path / "scores.npz", x_0=np.array([{"evil": 1}], dtype=object))
    with pytest.raises(StorageError, match="scores.npz: not a readable scores file"):
        read_pair(tmp_path / "scores", "scores")


def test_a_description_of_something_else(tmp_path):
    path = saved_plan(tmp_path)
    path.with_suffix(".json").write_text(json.dumps({"keys": {"keep": ["0"], "score": ["0"]}}))
    with pytest.raises(StorageError, match="not a pruning plan"):
        PruningPlan.load(path)


def test_ensure_space_raises_a_disk_full_error_before_a_writer_starts(tmp_path, monkeypatch):
    import errno
    import shutil
    from collections import namedtuple

    from tfprune.atomic import ensure_space
    from tfprune.cli.main import describe_os_error

    ensure_space(tmp_path, 1024, "a test")  # plenty here
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10, 10, 2**20))
    with pytest.raises(OSError) as raised:
        ensure_space(tmp_path, 2**21, "the initial weights")
    assert raised.value.errno == errno.ENOSPC
    message = describe_os_error(raised.value)
    assert message.startswith(f"{tmp_path}: no space left on the device (no space left on "
                              "device for the initial weights (needs about 2.0 MiB, 1.0 MiB")
    assert "--resume RUN_DIR" in message


def test_a_failed_write_leaves_the_old_plan_file_and_no_temporary(tmp_path, monkeypatch):
    import tfprune.storage as storage

    path = write_pair(tmp_path / "plan", {"keep": {"a": np.ones(3)}}, {"kind": "test"})
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def disk_full(file, *args, **kwargs):  # half a file written, then the disk is full
        with open(file, "wb") as handle:
            handle.write(b"PK\x03\x04 half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(storage.np, "savez", disk_full)
    with pytest.raises(OSError):
        write_pair(tmp_path / "plan", {"keep": {"a": np.zeros(3)}}, {"kind": "new"})
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    tables, description = read_pair(path, "plan")
    assert description["kind"] == "test" and tables["keep"]["a"].tolist() == [1, 1, 1]
