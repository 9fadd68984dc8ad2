"""Claims on run folders: one holder at a time, heartbeats, stale claims taken over once."""

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from tfprune.config import ConfigError
from tfprune.study.grid import parse_shard, shard_items
from tfprune.study.run_claims import RunClaim


def test_one_holder_at_a_time_and_release(tmp_path):
    first, second = RunClaim(tmp_path / "run"), RunClaim(tmp_path / "run")
    assert first.acquire()
    assert not second.acquire()  # a live process of this machine (this one) holds it
    assert f"process {os.getpid()}" in second.describe_holder()
    assert first.is_ours() and not second.is_ours()
    first.release()
    assert first.holder() is None and second.acquire()


def test_heartbeat_keeps_a_claim_fresh_and_its_end_removes_it(tmp_path):
    claim = RunClaim(tmp_path / "run", heartbeat=0.05, stale_after=0.5)
    assert claim.acquire()
    os.utime(claim.path, (time.time() - 10, time.time() - 10))
    with claim.held():
        time.sleep(0.3)
        assert claim.holder()["age"] < 0.3  # touched again by the heartbeat thread
        assert not RunClaim(tmp_path / "run", heartbeat=0.05, stale_after=0.5).acquire()
    assert not claim.path.exists() and not claim.lost


def test_a_claim_without_heartbeat_is_taken_over(tmp_path):
    old = RunClaim(tmp_path / "run", heartbeat=0.1, stale_after=1.0)
    assert old.acquire()
    os.utime(old.path, (time.time() - 5, time.time() - 5))  # its process froze 5 s ago
    new = RunClaim(tmp_path / "run", heartbeat=0.1, stale_after=1.0)
    assert new.acquire() and new.is_ours() and not old.is_ours()
    old.release()  # the frozen process wakes up: it must not remove the new claim
    assert new.is_ours()


def test_a_dead_process_claim_is_taken_over_at_once(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    claim = RunClaim(tmp_path / "run")
    claim.run_dir.mkdir()
    claim.path.write_text(json.dumps({**claim.owner, "pid": int(dead.stdout), "token": "x"}))
    assert RunClaim(tmp_path / "run").acquire()  # fresh heartbeat, but the holder is gone


def test_racing_takers_of_a_stale_claim_yield_one_holder(tmp_path):
    stale = RunClaim(tmp_path / "run", heartbeat=0.1, stale_after=1.0)
    assert stale.acquire()
    os.utime(stale.path, (time.time() - 5, time.time() - 5))
    takers = [RunClaim(tmp_path / "run", heartbeat=0.1, stale_after=1.0) for _ in range(8)]
    won = []
    start = threading.Barrier(len(takers))

    def take(claim):
        start.wait()
        if claim.acquire():
            won.append(claim)

    threads = [threading.Thread(target=take, args=(claim,)) for claim in takers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1 and won[0].is_ours()


def test_a_half_written_claim_counts_as_held_until_stale(tmp_path):
    (tmp_path / "run").mkdir()
    claim = RunClaim(tmp_path / "run", heartbeat=0.1, stale_after=1.0)
    claim.path.write_text('{"host": ')  # its writer was killed mid-write
    assert not claim.acquire()
    os.utime(claim.path, (time.time() - 5, time.time() - 5))
    assert claim.acquire()


def test_claim_settings_are_checked():
    with pytest.raises(ValueError, match="heartbeat"):
        RunClaim("run", heartbeat=10, stale_after=5)


def test_shards_are_disjoint_and_cover_the_grid():
    items = list(range(7))
    shares = [shard_items(items, index, 3) for index in range(3)]
    assert shares == [[0, 3, 6], [1, 4], [2, 5]]
    assert parse_shard("2/3") == (2, 3)
    for bad in ("3/3", "-1/2", "1", "a/b", "0/0"):
        with pytest.raises(ConfigError, match="--shard"):
            parse_shard(bad)


def test_a_run_path_that_is_a_users_file_fails_that_run_and_keeps_the_file(tmp_path):
    from tfprune.study.grid import GridItem, run_grid

    mine = tmp_path / "runs" / "mag-s0"
    mine.parent.mkdir()
    mine.write_text("my notes")
    item = GridItem(tmp_path / "c.yaml", 0, {"run": {"dir": str(mine)}}, prune=True)
    lines = []
    assert run_grid([item], progress=lines.append)["failed"] == [mine]
    assert "FAILED: cannot claim" in lines[-1] and mine.read_text() == "my notes"
