"""``RunClaim``: which of many grid processes on one shared folder runs a given run.

Grid processes started together on one ``--runs-dir`` (a job array, several
machines on a shared disk) must never train a run twice. Before it starts or
resumes a run, a grid process claims it: it creates ``RUN_DIR/.tfprune-claim.json``
with ``O_CREAT | O_EXCL``, which exactly one process can do, naming itself
(host, PID, a random token). While the run trains, a background thread touches
the file every ``heartbeat`` seconds. Another process that finds the claim
skips the run, unless the claim is stale:

- no heartbeat for ``stale_after`` seconds (its process hangs, or its machine
  died), or
- its holder is a process of this machine that no longer exists (killed).

A stale claim is taken over under a second exclusive file
(``.tfprune-claim.json.takeover``), so of several processes that see it stale
only one replaces it. Clocks of machines sharing a folder are assumed to agree
to well within ``stale_after``. A claim is removed when its run ends; the run
folder's own OS lock (``RunFolder.lock``) still guards each run on top of this.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import threading
import time
from pathlib import Path

from tfprune.provenance import host
from tfprune.run_folder import RunFolder

#: Seconds between heartbeats of a held claim.
HEARTBEAT_SECONDS = 30.0
#: Seconds without a heartbeat after which a claim is stale and may be taken over.
STALE_SECONDS = 600.0


class RunClaim:
    """One process's claim on one run folder.

    Args:
        run_dir: The run folder (created if missing).
        heartbeat: Seconds between heartbeats while held.
        stale_after: Seconds without a heartbeat before another process may take over.

    Example:
        >>> claim = RunClaim("runs/grid/mag-s0")
        >>> if claim.acquire():
        ...     with claim.held():
        ...         ...  # train the run
        ... else:
        ...     print("running elsewhere:", claim.describe_holder())
    """

    def __init__(self, run_dir: str | os.PathLike, heartbeat: float = HEARTBEAT_SECONDS,
                 stale_after: float = STALE_SECONDS):
        if not 0 < heartbeat < stale_after:
            raise ValueError(f"heartbeat ({heartbeat} s) must be positive and shorter than "
                             f"stale_after ({stale_after} s).")
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / RunFolder.CLAIM
        self.heartbeat = heartbeat
        self.stale_after = stale_after
        self.token = secrets.token_hex(8)
        self.owner = {"host": host(), "pid": os.getpid(), "token": self.token}
        self.lost = False
        self._stop = threading.Event()

    # -- reading ---------------------------------------------------------------------------
    def holder(self) -> dict | None:
        """The claim file's owner with its ``age`` in seconds, or None if unclaimed."""
        try:
            age = time.time() - self.path.stat().st_mtime
            owner = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):  # written half by a process killed while creating it
            owner = {}
        return {**owner, "age": max(age, 0.0)} if isinstance(owner, dict) else {"age": age}

    def describe_holder(self) -> str:
        """The holder as text, for progress lines."""
        holder = self.holder()
        if holder is None:
            return "nobody"
        return (f"process {holder.get('pid', '?')} on {holder.get('host', '?')}, last heartbeat "
                f"{holder['age']:.0f} s ago")

    def is_stale(self, holder: dict) -> bool:
        """Whether ``holder`` (from ``holder()``) may be taken over."""
        if holder["age"] > self.stale_after:
            return True
        if holder.get("host") == host() and isinstance(holder.get("pid"), int):
            return not _process_exists(holder["pid"])
        return False

    # -- claiming --------------------------------------------------------------------------
    def acquire(self) -> bool:
        """Claims the run; False if another live process holds it."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                descriptor = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if not self._remove_if_stale():
                    return False
                continue
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                json.dump({**self.owner, "since": time.strftime("%Y-%m-%d %H:%M:%S")}, handle)
                handle.flush()
                os.fsync(handle.fileno())
            self.lost = False
            return True
        return False

    def _remove_if_stale(self) -> bool:
        """Removes a stale claim (one process at a time); True if the claim is gone."""
        holder = self.holder()
        if holder is None:
            return True
        if not self.is_stale(holder):
            return False
        guard = self.path.with_name(self.path.name + ".takeover")
        try:
            os.close(os.open(guard, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:  # another process is taking over; a dead one's guard expires
            with contextlib.suppress(FileNotFoundError):
                if time.time() - guard.stat().st_mtime > self.stale_after:
                    guard.unlink()
            return False
        try:
            again = self.holder()  # the same stale claim, not one just made by another taker
            if again is not None and again.get("token") == holder.get("token") and \
                    self.is_stale(again):
                self.path.unlink(missing_ok=True)
            return self.holder() is None
        finally:
            guard.unlink(missing_ok=True)

    def is_ours(self) -> bool:
        """Whether the claim file is this object's."""
        holder = self.holder()
        return holder is not None and holder.get("token") == self.token

    def release(self) -> None:
        """Stops the heartbeat and removes the claim if it is still ours."""
        self._stop.set()
        if self.is_ours():
            self.path.unlink(missing_ok=True)

    @contextlib.contextmanager
    def held(self):
        """Heartbeats the claim while the block runs, then releases it."""
        self._stop.clear()
        thread = threading.Thread(target=self._beat, name=f"claim {self.run_dir.name}",
                                  daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.release()
            thread.join(timeout=5)

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat):
            if not self.is_ours():  # taken over while this process was frozen
                self.lost = True
                return
            with contextlib.suppress(FileNotFoundError):
                os.utime(self.path)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    except OSError:  # platforms without signal 0 (Windows): assume alive
        return True
    return True
