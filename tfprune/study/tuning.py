"""keras-tuner search over the pruning recipe under a parameter or FLOPs budget.

``PruningHyperModel`` declares the space (measure, rounds, target fraction and,
for ``grasp``, its temperature) from a config's ``tune`` section. Each trial is
an ordinary prune-and-train run (the same ``PruningCallback``, metrics, plans
and checkpoints) in ``RUN_DIR/trials/trial_<id>``; the tuner's own state sits
in ``RUN_DIR/tuner``, so an interrupted search continues where it stopped.
The objective ``score`` is the best test accuracy of a trial whose pruned
model meets the budget, and 0 for one that does not.

keras-tuner's distributed mode runs one search over many processes: start the
same command with ``KERASTUNER_TUNER_ID=chief`` (the oracle) and
``tuner0``, ``tuner1``, ... (workers), all with the same
``KERASTUNER_ORACLE_IP`` / ``KERASTUNER_ORACLE_PORT`` and run folder. Workers
run trials; only the chief writes ``tuning.json`` and the HParams logs, once
every trial has ended. A worker returns (exit code 0) when the oracle stops.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import keras_tuner

from tfprune.atomic import write_json
from tfprune.config import ConfigError, load_config
from tfprune.study.grid import run_config

#: The objective every pruning tuner maximizes.
OBJECTIVE = keras_tuner.Objective("score", direction="max")


class PruningHyperModel(keras_tuner.HyperModel):
    """The pruning recipe of a config as a keras-tuner search space.

    Args:
        config: A validated config with ``prune`` (fixed settings) and ``tune``
            (the space and the budget) sections.
        run_dir: Where the trial run folders go.
    """

    def __init__(self, config: dict, run_dir: str | os.PathLike):
        super().__init__(name="pruning")
        section = config["tune"]
        if section["target_min"] > section["target_max"]:
            raise ConfigError("tune.target_min must not exceed tune.target_max.")
        if max(section["rounds"]) > config["train"]["epochs"]:
            raise ConfigError(f"tune.rounds: {max(section['rounds'])} rounds need as many "
                              f"epochs; train.epochs is {config['train']['epochs']}.")
        from tfprune.importance import available_measures

        unknown = sorted(set(section["measures"]) - set(available_measures()))
        if unknown:
            raise ConfigError(f"tune.measures: unknown {unknown}; valid: {available_measures()}.")
        self.config = config
        self.run_dir = Path(run_dir)

    def declare(self, hp) -> dict:
        """Declares the space on ``hp`` and returns this trial's values."""
        section = self.config["tune"]
        values = {
            "measure": hp.Choice("measure", section["measures"]),
            "rounds": hp.Choice("rounds", section["rounds"]),
            "target": hp.Float("target", section["target_min"], section["target_max"],
                               step=section["target_step"]),
        }
        if "grasp" in section["measures"]:
            with hp.conditional_scope("measure", ["grasp"]):
                temperature = hp.Choice("grasp_temperature", section["grasp_temperatures"])
            if values["measure"] == "grasp":
                values["grasp_temperature"] = temperature
        return values

    def trial_config(self, values: dict, trial_id: str) -> dict:
        """The base config with this trial's choices and run folder."""
        config = copy.deepcopy(self.config)
        prune = config["prune"]
        prune.update(measure=values["measure"], rounds=int(values["rounds"]),
                     target=float(values["target"]))
        if "grasp_temperature" in values:
            prune["measure_options"] = {**prune["measure_options"],
                                        "temperature": float(values["grasp_temperature"])}
        config["run"]["dir"] = str(self.run_dir / "trials" / f"trial_{trial_id}")
        return config

    def build(self, hp):
        """Declares the space; returns the config's built and compiled model."""
        from tfprune.data import load_data
        from tfprune.training import build_model, compile_model, data_spec

        self.declare(hp)
        data = load_data(data_spec(self.config))
        model = build_model(self.config, data)
        compile_model(model, self.config)
        return model

    def fit(self, hp, model=None, *args, trial_id: str = "0", **kwargs) -> dict:
        """Runs (or resumes, or reads) the trial's prune run; returns its metrics."""
        config = self.trial_config(self.declare(hp), trial_id)
        return self.metrics(run_config(config, prune=True))

    def metrics(self, summary: dict) -> dict:
        """``score`` (the objective), test accuracy, params and FLOPs after pruning."""
        section = self.config["tune"]
        within = ((section["max_params"] is None or summary["params_after"]
                   <= section["max_params"]) and
                  (section["max_flops"] is None or summary["flops_after"] <= section["max_flops"]))
        return {"score": summary["best_test_accuracy"] if within else 0.0,
                "best_test_accuracy": summary["best_test_accuracy"],
                "params_after": float(summary["params_after"]),
                "flops_after": float(summary["flops_after"]),
                "within_budget": float(within)}


class _RunFolderTrials:
    """Runs each trial as a run folder instead of keras-tuner's model.fit loop."""

    def run_trial(self, trial, *args, **kwargs):
        """One trial: ``PruningHyperModel.fit`` with the trial's id."""
        return self.hypermodel.fit(trial.hyperparameters, trial_id=trial.trial_id)


class PruningRandomSearch(_RunFolderTrials, keras_tuner.RandomSearch):
    """Random search over the pruning recipe."""


class PruningBayesianOptimization(_RunFolderTrials, keras_tuner.BayesianOptimization):
    """Bayesian optimization over the pruning recipe."""


#: ``tune.algorithm`` -> tuner class.
TUNERS = {"random": PruningRandomSearch, "bayesian": PruningBayesianOptimization}


def tuner_role() -> str:
    """``"single"``, or in keras-tuner's distributed mode ``"chief"`` or ``"worker"``.

    Read from the variables keras-tuner itself reads: ``KERASTUNER_ORACLE_IP``
    (distributed mode), ``KERASTUNER_TUNER_ID`` (``chief`` for the oracle).
    """
    if "KERASTUNER_ORACLE_IP" not in os.environ:
        return "single"
    missing = [name for name in ("KERASTUNER_ORACLE_PORT", "KERASTUNER_TUNER_ID")
               if not os.environ.get(name)]
    if missing:
        raise ConfigError(f"KERASTUNER_ORACLE_IP is set, so this is a distributed search, but "
                          f"{' and '.join(missing)} is not: set it for every process (the "
                          "chief's KERASTUNER_TUNER_ID is 'chief', the workers' tuner0, "
                          "tuner1, ...).")
    return "chief" if "chief" in os.environ["KERASTUNER_TUNER_ID"] else "worker"


def tune(config: dict) -> dict:
    """Searches the config's ``tune`` space; returns and saves ``RUN_DIR/tuning.json``.

    Every finished trial also becomes a TensorBoard HParams trial in ``RUN_DIR/hparams``.
    In keras-tuner's distributed mode a worker runs trials, writes nothing
    else, and returns ``{"role": "worker", ...}`` once the oracle stops.

    Returns:
        ``{"best": {hyperparameters, metrics, run_dir}, "trials": [...], "role": ...}``,
        the completed trials ordered by score.
    """
    from tfprune.training import run_folder
    from tfprune.training.strategy import refuse_multi_worker

    refuse_multi_worker(config, "tune", "Spread trials over processes with keras-tuner's "
                        "distributed mode (KERASTUNER_TUNER_ID, docs/guides/distributed.md).")
    role = tuner_role()
    run_dir = run_folder(config)
    hypermodel = PruningHyperModel(config, run_dir)
    section = config["tune"]
    tuner = TUNERS[section["algorithm"]](
        hypermodel=hypermodel, objective=OBJECTIVE, max_trials=section["max_trials"],
        seed=config["train"]["seed"], directory=str(run_dir), project_name="tuner",
        overwrite=False,
    )
    tuner.search()  # the chief serves the oracle until every trial has ended
    if role == "worker":
        return {"role": "worker", "tuner_id": os.environ["KERASTUNER_TUNER_ID"],
                "best": None, "trials": []}
    trials = []
    for trial in tuner.oracle.get_best_trials(num_trials=section["max_trials"]):
        if trial.status != keras_tuner.engine.trial.TrialStatus.COMPLETED or \
                not trial.metrics.exists(OBJECTIVE.name):
            continue  # failed or invalid: no score to report
        trials.append({
            "trial": trial.trial_id,
            "hyperparameters": trial.hyperparameters.values,
            "metrics": {name: history.get_best_value()
                        for name, history in trial.metrics.metrics.items()},
            "run_dir": str(run_dir / "trials" / f"trial_{trial.trial_id}"),
        })
    result = {"role": role, "best": trials[0] if trials else None, "trials": trials}
    write_json(run_dir / "tuning.json", result, indent=2)
    if (run_dir / "trials").is_dir():
        from tfprune.study.hparams import write_hparams
        from tfprune.study.report import collect_runs

        write_hparams(collect_runs([run_dir / "trials"]), run_dir / "hparams")
    return result


def tune_from_file(path, overrides=None) -> dict:
    """Loads a YAML config with overrides and runs ``tune``."""
    return tune(load_config(path, overrides))
