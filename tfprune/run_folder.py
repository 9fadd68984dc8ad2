"""``RunFolder``: the layout of a run folder and its state, in one place.

Every command that writes or reads a run folder (train, prune, pipeline,
grid, report, export, slim, score, analyze) goes through this class, so the
file names live here and nowhere else:

```
RUN_DIR/
  config.yaml            the resolved config
  checkpoints/           last.keras + state.json (after each finished epoch),
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
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tfprune.config import ConfigError

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
    def last_checkpoint(self) -> Path:
        """Model and optimizer after the last finished epoch."""
        return self.checkpoints / self.LAST_CHECKPOINT

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

    def finished_epochs(self) -> int:
        """Epochs the last checkpoint holds (0 without one)."""
        if not self.checkpoint_state.exists():
            return 0
        state = self.read_json(self.checkpoint_state, "the checkpoint state")
        if not isinstance(state.get("epoch"), int) or state["epoch"] < 0:
            raise self._unreadable(self.checkpoint_state, "the checkpoint state",
                                   "no epoch count in it")
        return state["epoch"]

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
        """The model of the last checkpoint, with its optimizer state."""
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
