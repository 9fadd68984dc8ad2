"""``RunFolder``: the layout of a run folder and its state, in one place.

Every command that writes or reads a run folder (train, prune, pipeline,
grid, report, export, slim, score, analyze) goes through this class, so the
file names live here and nowhere else:

```
RUN_DIR/
  .tfprune-run.json      the ownership marker: written first, when tfprune creates the run
  .tfprune.lock          held (an OS file lock) by the one process using the run
  .tfprune-claim.json    a grid process's claim on the run (tfprune.study.run_claims)
  config.yaml            the resolved config
  checkpoints/           epoch_<e>.keras + state.json naming it (after each finished epoch),
                         initial.weights.h5 (the weights at initialization)
  metrics.csv / .json    one row per epoch
  tensorboard/           Keras' logs; pruning/ and analysis/ beside them
  plans/                 epoch_<e>.npz/.json: the plan after each pruning round
  model.keras            the final model          (finished runs)
  summary.json           the run's results        (finished runs)
  scores/ analysis/ slim.keras export/ pipeline.json   written by later commands
```

A folder is ``new`` (no checkpoint, no summary), ``interrupted`` (a
checkpoint but no summary: resumable) or ``finished`` (a summary: never
rewritten). Files that cannot be read (truncated, corrupted) raise
``RunFolderError`` naming the file and what to do.

Guarantees (docs/guides/cli.md lists them for users):

- **Ownership.** tfprune starts a run only in a folder that does not exist or
  is empty, and marks it first (``.tfprune-run.json``); a non-empty folder it
  did not create is refused, naming some of its files.
- **One process per run.** ``RunFolder.lock`` holds an OS file lock on
  ``.tfprune.lock`` for the life of a command; a second process is refused
  with the holder's PID and host. The OS drops the lock when its process dies,
  so a killed run never leaves a stale lock.
- **A checkpoint and its state are one unit.** Each epoch's checkpoint gets a
  new name (``epoch_<e>.keras``); ``state.json`` is then written atomically,
  naming it with its SHA-256, and only then are older checkpoints removed. A
  kill at any point resumes from a checkpoint whose state describes it, and
  a checkpoint that does not match its state is refused.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import threading
import time
from pathlib import Path

from tfprune.atomic import write_json
from tfprune.config import ConfigError
from tfprune.provenance import host, provenance

#: The states a run folder can be in.
STATES = ("new", "interrupted", "finished")


class RunFolderError(ConfigError):
    """A run folder, or one of its files, cannot be used as asked."""


class RunFolder:
    """The paths of one run folder and its state.

    Args:
        path: The run folder (it need not exist yet).

    Example:
        >>> run = RunFolder("runs/quickstart")
        >>> run.state                       # "new", "interrupted" or "finished"
        >>> run.read_summary()["best_test_accuracy"]
    """

    MARKER = ".tfprune-run.json"
    LOCK = ".tfprune.lock"
    CLAIM = ".tfprune-claim.json"
    CONFIG = "config.yaml"
    SUMMARY = "summary.json"
    METRICS_CSV = "metrics.csv"
    METRICS_JSON = "metrics.json"
    CHECKPOINTS = "checkpoints"
    LAST_CHECKPOINT = "last.keras"
    CHECKPOINT_STATE = "state.json"
    INITIAL_WEIGHTS = "initial.weights.h5"
    MODEL = "model.keras"
    TENSORBOARD = "tensorboard"
    PLANS = "plans"
    SCORES = "scores"
    ANALYSIS = "analysis"
    SLIM_MODEL = "slim.keras"
    EXPORT = "export"
    PIPELINE = "pipeline.json"

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    # -- paths ----------------------------------------------------------------------------
    @property
    def config(self) -> Path:
        """The resolved config, ``config.yaml``."""
        return self.path / self.CONFIG

    @property
    def summary(self) -> Path:
        """``summary.json``: written once, when the run finishes."""
        return self.path / self.SUMMARY

    @property
    def metrics_csv(self) -> Path:
        """Per-epoch metrics as CSV."""
        return self.path / self.METRICS_CSV

    @property
    def metrics_json(self) -> Path:
        """Per-epoch metrics as JSON."""
        return self.path / self.METRICS_JSON

    @property
    def checkpoints(self) -> Path:
        """The checkpoint folder."""
        return self.path / self.CHECKPOINTS

    @property
    def marker(self) -> Path:
        """The ownership marker, written when tfprune creates the run."""
        return self.path / self.MARKER

    @property
    def last_checkpoint(self) -> Path:
        """Model and optimizer after the last finished epoch (the file its state names).

        Runs from before checkpoints were named per epoch keep ``last.keras``.
        """
        state = self._checkpoint_state()
        name = state.get("checkpoint") if state else None
        return self.checkpoints / (Path(str(name)).name if name else self.LAST_CHECKPOINT)

    def checkpoint_path(self, epoch: int) -> Path:
        """Where the checkpoint after ``epoch`` finished epochs is written."""
        return self.checkpoints / f"epoch_{epoch:04d}.keras"

    @property
    def checkpoint_state(self) -> Path:
        """``{"epoch": finished epochs}`` of the last checkpoint."""
        return self.checkpoints / self.CHECKPOINT_STATE

    @property
    def initial_weights(self) -> Path:
        """The weights at initialization (for distance-from-init measures)."""
        return self.checkpoints / self.INITIAL_WEIGHTS

    @property
    def model(self) -> Path:
        """The final model."""
        return self.path / self.MODEL

    @property
    def tensorboard(self) -> Path:
        """Keras' TensorBoard logs."""
        return self.path / self.TENSORBOARD

    @property
    def pruning_logs(self) -> Path:
        """TensorBoard logs of the pruning rounds."""
        return self.tensorboard / "pruning"

    @property
    def analysis_logs(self) -> Path:
        """TensorBoard logs of ``tfprune analyze training``."""
        return self.tensorboard / "analysis"

    @property
    def plans(self) -> Path:
        """The plan after each pruning round."""
        return self.path / self.PLANS

    @property
    def scores(self) -> Path:
        """Scores written by ``tfprune score``."""
        return self.path / self.SCORES

    @property
    def analysis(self) -> Path:
        """Files of ``tfprune analyze training``."""
        return self.path / self.ANALYSIS

    @property
    def slim_model(self) -> Path:
        """The slimmed model of a prune run."""
        return self.path / self.SLIM_MODEL

    @property
    def export(self) -> Path:
        """The exported .tflite files and ``export.json``."""
        return self.path / self.EXPORT

    @property
    def pipeline_summary(self) -> Path:
        """``pipeline.json`` of ``tfprune pipeline``."""
        return self.path / self.PIPELINE

    # -- state ------------------------------------------------------------------------------
    @property
    def is_run(self) -> bool:
        """Whether the folder holds a run (its config.yaml)."""
        return self.config.is_file()

    @property
    def is_prune_run(self) -> bool:
        """Whether the run has pruned (a saved plan)."""
        return any(self.plans.glob("epoch_*.npz"))

    @property
    def state(self) -> str:
        """``"new"``, ``"interrupted"`` (resumable) or ``"finished"`` (never rewritten)."""
        if self.summary.exists():
            return "finished"
        return "interrupted" if self.finished_epochs() else "new"

    def _checkpoint_state(self) -> dict | None:
        if not self.checkpoint_state.exists():
            return None
        state = self.read_json(self.checkpoint_state, "the checkpoint state")
        if not isinstance(state, dict) or not isinstance(state.get("epoch"), int) \
                or state["epoch"] < 0:
            raise self._unreadable(self.checkpoint_state, "the checkpoint state",
                                   "no epoch count in it")
        return state

    def finished_epochs(self) -> int:
        """Epochs the last checkpoint holds (0 without one)."""
        state = self._checkpoint_state()
        return state["epoch"] if state else 0

    def commit_checkpoint(self, epoch: int, path: Path) -> None:
        """Records ``path`` (already written) as the checkpoint after ``epoch`` epochs.

        Writes ``state.json`` atomically with the file's name and SHA-256, then
        removes every older checkpoint: a kill before the state is written
        leaves the previous checkpoint and its state as they were.
        """
        write_json(self.checkpoint_state, {"epoch": epoch, "checkpoint": path.name,
                                           "sha256": _sha256(path)})
        for old in [*self.checkpoints.glob("epoch_*.keras"),
                    self.checkpoints / self.LAST_CHECKPOINT]:
            if old.name != path.name:
                with contextlib.suppress(FileNotFoundError):
                    old.unlink()

    def verify_checkpoint(self) -> None:
        """Raises ``RunFolderError`` unless the last checkpoint is the file its state names."""
        state = self._checkpoint_state()
        if not state or "sha256" not in state:
            return  # a run from before checksums: nothing to compare
        path = self.last_checkpoint
        if not path.is_file():
            raise RunFolderError(
                f"{path}: missing; the checkpoint state ({self.checkpoint_state}) names it. "
                f"Delete the run's {self.CHECKPOINTS}/ folder to start it over, or start a new "
                "run.")
        if _sha256(path) != state["sha256"]:
            raise RunFolderError(
                f"{path}: does not match its checkpoint state (SHA-256 differs), so resuming "
                f"from it would not continue the run it belongs to. Delete the run's "
                f"{self.CHECKPOINTS}/ folder to start it over, or start a new run.")

    # -- ownership and locking ----------------------------------------------------------
    def foreign_files(self) -> list[str]:
        """The entries of an existing folder that tfprune's lock and marker do not explain."""
        if not self.path.is_dir():
            return []
        return sorted(entry.name for entry in self.path.iterdir()
                      if entry.name not in (self.LOCK, self.MARKER, self.CLAIM))

    def check_claimable(self) -> None:
        """Raises ``RunFolderError`` unless a new run may start here.

        A new run starts only in a missing or empty folder, or in one tfprune
        created (its marker) that holds no run yet.
        """
        if self.path.exists() and not self.path.is_dir():
            raise RunFolderError(f"{self.path}: a file, not a folder; choose another run.dir.")
        foreign = self.foreign_files()
        if foreign and not self.marker.is_file():
            shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
            raise RunFolderError(
                f"{self.path}: not a tfprune run folder and not empty ({shown}); tfprune starts "
                "a run only in a new or empty folder, so it never overwrites files it did not "
                "write. Choose another run.name / run.dir.")

    def create(self) -> None:
        """Claims the folder for a new run: checks it, then writes the ownership marker."""
        self.check_claimable()
        self.path.mkdir(parents=True, exist_ok=True)
        if not self.marker.is_file():
            write_json(self.marker, {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                     "pid": os.getpid(), **provenance()})

    @contextlib.contextmanager
    def lock(self, action: str = "use"):
        """Holds the run's OS file lock while the block runs (re-entrant in one process).

        Args:
            action: What the process does, shown to a process refused the lock.

        Raises:
            RunFolderError: When another process holds it, naming its PID, host and action.
        """
        key = str(self.path.resolve())
        with _HELD_LOCK:
            held = _HELD.get(key)
            if held is not None:
                _HELD[key] = (held[0], held[1] + 1)
        if held is not None:
            try:
                yield self
            finally:
                _release(key)
            return
        created = not self.path.exists()
        self.path.mkdir(parents=True, exist_ok=True)
        handle = open(self.path / self.LOCK, "a+", encoding="utf-8")  # noqa: SIM115
        try:
            _lock_file(handle)
        except OSError as error:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            if error.errno not in (errno.EACCES, errno.EAGAIN, errno.EWOULDBLOCK):
                raise
            raise RunFolderError(
                f"{self.path}: in use by {holder}; one process at a time per run folder. "
                "Wait for it to finish (or stop it), then run the command again.") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()} on {host()} ({action}, since "
                     f"{time.strftime('%Y-%m-%d %H:%M:%S')})\n")
        handle.flush()
        with _HELD_LOCK:
            _HELD[key] = (handle, 1)
        try:
            yield self
        finally:
            _release(key)
            if created and self.foreign_files() == [] and not self.marker.exists():
                # nothing was written (a refused config): leave no folder behind
                with contextlib.suppress(OSError):
                    (self.path / self.LOCK).unlink()
                    self.path.rmdir()

    def require_run(self, action: str = "resume") -> None:
        """Raises ``RunFolderError`` unless the folder holds a run's config.yaml."""
        if not self.is_run:
            raise RunFolderError(f"{self.path}: not a run folder (no {self.CONFIG}); cannot "
                                 f"{action}.")

    # -- reading ----------------------------------------------------------------------------
    def read_json(self, path: Path, what: str):
        """Reads a JSON file of the run, or raises naming it if it is unreadable."""
        try:
            return json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise RunFolderError(f"{path}: missing; {what} of run {self.path} is not there. "
                                 "Is the run finished?") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise self._unreadable(path, what, str(error)) from None

    def _unreadable(self, path: Path, what: str, why: str) -> RunFolderError:
        advice = {
            self.summary: "the run's results cannot be read; rerun it into a new folder, or "
                          "restore the file from a backup",
            self.checkpoint_state: "the run cannot resume from it; delete the run's "
                                   f"{self.CHECKPOINTS}/ folder to start it over, or start "
                                   "a new run",
        }.get(Path(path), "restore the file, or rerun the command that wrote it")
        return RunFolderError(f"{path}: {what} is corrupted or truncated ({why}); {advice}.")

    def read_summary(self) -> dict:
        """``summary.json`` as a dict (``RunFolderError`` if missing or unreadable)."""
        return self.read_json(self.summary, "the summary")

    def read_metrics(self) -> list[dict]:
        """The per-epoch rows of ``metrics.json`` ([] if none yet)."""
        if not self.metrics_json.exists():
            return []
        return self.read_json(self.metrics_json, "the metrics")

    def load_checkpoint(self):
        """The model of the last checkpoint with its optimizer state, checked against its state."""
        self.verify_checkpoint()
        return self._load(self.last_checkpoint, "the last checkpoint", compile=True)

    def load_model(self, compile: bool = True):
        """The final model."""
        if not self.model.is_file():
            raise RunFolderError(f"{self.path}: no {self.MODEL}; is it a finished tfprune run?")
        return self._load(self.model, "the final model", compile=compile)

    def _load(self, path: Path, what: str, compile: bool):
        from tfprune.model_files import ModelFileError, load_model_file

        if not path.is_file():
            raise RunFolderError(f"{path}: missing; {what} of run {self.path} is not there.")
        try:
            return load_model_file(path, what=what, compile=compile)
        except ModelFileError as error:
            advice = (" Start a new run (or delete the run's checkpoints/ folder to start this "
                      "one over)." if "corrupted" in str(error) else "")
            raise RunFolderError(f"{error}{advice}") from None


#: Locks this process holds: resolved run path -> (open lock file, depth).
_HELD: dict[str, tuple] = {}
_HELD_LOCK = threading.Lock()


def _lock_file(handle) -> None:
    """Takes an exclusive, non-blocking OS lock on ``handle`` (OSError if held elsewhere)."""
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        return
    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)


def _release(key: str) -> None:
    with _HELD_LOCK:
        handle, depth = _HELD[key]
        if depth > 1:
            _HELD[key] = (handle, depth - 1)
            return
        del _HELD[key]
    handle.close()  # closing drops the OS lock


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
