"""``run_grid``: configs x seeds, one after another, resumable, finished runs skipped.

Each (config, seed) goes to ``RUNS_DIR/<run.name>-s<seed>``. A folder with a
``summary.json`` is finished and skipped; one with a checkpoint is resumed from
its last finished epoch, with the config.yaml it started with; anything else
starts fresh. Configs with a ``prune``
section run prune-and-train, the others plain training (the base models).
Every config is loaded and checked before the first run starts.

Many grid processes may share one grid: ``shard_items`` gives each process of
a job array a fixed share of the runs, and every run is claimed
(``tfprune.study.run_claims.RunClaim``) before it starts or resumes, so a run
another live process holds is skipped ("running elsewhere") and none is ever
trained twice.
"""

from __future__ import annotations

import dataclasses
import os
import time
import traceback
from pathlib import Path

from tfprune.config import ConfigError, load_config
from tfprune.config.loader import read_yaml
from tfprune.run_folder import RunFolder
from tfprune.study.run_claims import STALE_SECONDS, RunClaim


@dataclasses.dataclass
class GridItem:
    """One run of a grid.

    Attributes:
        source: The config file.
        seed: ``train.seed`` of this run.
        config: The validated config, ``run.dir`` set.
        prune: Whether it is a prune-and-train run.
    """

    source: Path
    seed: int
    config: dict
    prune: bool

    @property
    def run_dir(self) -> Path:
        """Where the run's folder is."""
        return Path(self.config["run"]["dir"])

    @property
    def state(self) -> str:
        """``done``, ``resume`` (interrupted) or ``new``."""
        return run_state(self.run_dir)


def run_state(run_dir: str | os.PathLike) -> str:
    """``done`` (summary.json written), ``resume`` (a checkpoint, no summary) or ``new``."""
    return {"finished": "done", "interrupted": "resume", "new": "new"}[RunFolder(run_dir).state]


def grid_items(paths, seeds: int = 1, runs_dir: str | os.PathLike = "runs/grid",
               overrides=(), first_seed: int = 0) -> list[GridItem]:
    """Loads and checks every config, one item per (config, seed).

    Raises:
        ConfigError: For a missing or invalid config, a bad prune section or
            two items that would share a run folder, before anything runs.
    """
    from tfprune.training.strategy import refuse_multi_worker
    from tfprune.workflows.prune_run import PruneExtension

    if seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {seeds}.")
    items, folders = [], {}
    for path in map(Path, paths):
        if not path.is_file():
            raise ConfigError(f"{path}: no such config file.")
        prune = "prune" in (read_yaml(path) or {})
        for seed in range(first_seed, first_seed + seeds):
            config = load_config(path, [*overrides, f"train.seed={seed}"])
            refuse_multi_worker(config, str(path), "Share a grid between processes with "
                                "claims or --shard (each run on one machine, mirrored over its "
                                "devices if you like).")
            run_dir = Path(runs_dir) / f"{config['run']['name']}-s{seed}"
            config["run"]["dir"] = str(run_dir)
            if prune:
                try:
                    PruneExtension(config)
                except ConfigError as error:
                    raise ConfigError(f"{path}: {error}") from None
            if run_dir in folders:
                raise ConfigError(f"{path} and {folders[run_dir]} both write {run_dir}: give "
                                  "them different run.name values.")
            _check_existing_run(path, config)
            folders[run_dir] = path
            items.append(GridItem(path, seed, config, prune))
    return items


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> ``(I, N)``: share I (from 0) of N.

    Raises:
        ConfigError: Unless N >= 1 and 0 <= I < N.
    """
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ConfigError(f"--shard {text!r}: expected I/N, e.g. 0/4 (share I of N, counted "
                          "from 0).") from None
    if count < 1 or not 0 <= index < count:
        raise ConfigError(f"--shard {text}: I must be in 0..N-1 and N >= 1 (e.g. "
                          "$SLURM_ARRAY_TASK_ID/4 with --array=0-3).")
    return index, count


def shard_items(items: list[GridItem], index: int, count: int) -> list[GridItem]:
    """Share ``index`` of ``count``: every count-th item from the index-th, in grid order.

    The shares of 0..count-1 are disjoint and cover the grid, whatever order
    the processes start in, as long as they are given the same configs, seeds
    and overrides.
    """
    return items[index::count]


#: Config keys a run may be resumed or skipped with other values of: they change no result.
UNCOMPARED_KEYS = frozenset({"run.dir", "run.name", "run.strategy", "run.devices", "run.tpu",
                             "train.verbose"})


def _flatten(config: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_differences(saved: dict, requested: dict) -> list[str]:
    """Dotted keys whose values differ in two resolved configs, ``UNCOMPARED_KEYS`` aside."""
    saved, requested = _flatten(saved), _flatten(requested)
    return sorted(key for key in saved.keys() | requested.keys()
                  if key not in UNCOMPARED_KEYS and saved.get(key) != requested.get(key))


def _check_existing_run(source: Path, config: dict) -> None:
    """Refuses a grid item whose run folder holds a run of another config, naming the keys."""
    run = RunFolder(config["run"]["dir"])
    if not run.is_run:
        return
    try:
        saved = load_config(run.config)
    except ConfigError as error:
        raise ConfigError(f"{run.config}: the saved config of this run cannot be read "
                          f"({error}); move the run away to rerun it.") from None
    differing = config_differences(saved, config)
    if differing:
        shown = "; ".join(f"{key}: {_get(saved, key)!r} in the run, {_get(config, key)!r} "
                          "requested" for key in differing[:6])
        raise ConfigError(
            f"{run.path}: this run was started with another config than {source} asks for "
            f"({shown}{'; ...' if len(differing) > 6 else ''}); the grid neither resumes nor "
            "skips it. Restore the config it ran with, or move the run folder away (or use "
            "another --runs-dir) to run the new config.")


def _get(config: dict, dotted: str):
    value = config
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def run_config(config: dict, prune: bool) -> dict:
    """Brings one run folder to its end and returns its summary.

    A finished folder's summary.json is read back; an interrupted one is
    resumed with the config.yaml it started with; anything else starts from
    ``config``.

    Args:
        config: A validated config naming the run folder.
        prune: Prune-and-train (else plain training).
    """
    from tfprune.training import read_run_config, run_folder, train
    from tfprune.workflows.prune_run import prune as prune_run

    run_dir = run_folder(config)
    state = run_state(run_dir)
    if state == "done":
        return RunFolder(run_dir).read_summary()
    runner = prune_run if prune else train
    if state == "resume":
        return runner(read_run_config(run_dir), resume=True).summary
    return runner(config).summary


def run_grid(items: list[GridItem], progress=print,
             stale_after: float = STALE_SECONDS) -> dict[str, list[Path]]:
    """Runs every unfinished, unclaimed item in order; a failed run is reported, the grid goes on.

    Each run is claimed first; a run another live process holds is skipped as
    ``elsewhere`` (run the grid again later to pick up what such a process left).

    Args:
        items: From ``grid_items`` (or ``shard_items``).
        progress: Called with a line of text per step (None: silent).
        stale_after: Seconds without a heartbeat after which another process's
            claim is taken over.

    Returns:
        ``{"done": [...], "ran": [...], "failed": [...], "elsewhere": [...]}`` run folders.
    """
    progress = progress or (lambda line: None)
    outcome = {"done": [], "ran": [], "failed": [], "elsewhere": []}
    heartbeat = min(30.0, stale_after / 4)
    for index, item in enumerate(items, 1):
        head = f"[{index}/{len(items)}] {item.run_dir.name}"
        if item.state == "done":
            progress(f"{head}: finished earlier, skipped")
            outcome["done"].append(item.run_dir)
            continue
        claim = RunClaim(item.run_dir, heartbeat=heartbeat, stale_after=stale_after)
        try:
            claimed = claim.acquire()
        except OSError as error:  # the run's path is a file, or its folder is not writable
            progress(f"{head}: FAILED: cannot claim {item.run_dir}: {error}")
            outcome["failed"].append(item.run_dir)
            continue
        if not claimed:
            progress(f"{head}: running elsewhere ({claim.describe_holder()}), skipped")
            outcome["elsewhere"].append(item.run_dir)
            continue
        with claim.held():
            state = item.state  # read again under the claim: another process may have ended it
            if state == "done":
                progress(f"{head}: finished elsewhere, skipped")
                outcome["done"].append(item.run_dir)
                continue
            outcome[_run_item(item, state, head, progress)].append(item.run_dir)
        if claim.lost:
            progress(f"{head}: WARNING: this process's claim was taken over while it ran "
                     f"(it sent no heartbeat for {stale_after:.0f} s); check the run")
    return outcome


def _run_item(item: GridItem, state: str, head: str, progress) -> str:
    """Runs one claimed item; ``"ran"`` or ``"failed"``."""
    progress(f"{head}: {'resuming' if state == 'resume' else 'starting'} "
             f"({'prune' if item.prune else 'train'} {item.source})")
    started = time.perf_counter()
    try:
        run_config(item.config, item.prune)
    except KeyboardInterrupt:
        progress(f"{head}: interrupted; run the same grid again to resume it")
        raise
    except Exception as error:  # one bad run must not lose the rest of the grid
        progress(f"{head}: FAILED: {error}\n{traceback.format_exc(limit=3)}")
        return "failed"
    progress(f"{head}: finished in {time.perf_counter() - started:.0f} s")
    return "ran"
