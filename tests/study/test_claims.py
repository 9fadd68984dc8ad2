"""Claim checks on hand-made run records: orderings, partial results, noise, tolerance."""

from pathlib import Path

import pytest

from tfprune.study.claims import CLAIMS, Claim, check_claims, claims_markdown


def record(measure, rounds, seed, best, train=None):
    from tfprune.study.report import RunRecord

    return RunRecord(Path(f"{measure}-{rounds}-{seed}"), "vgg13 x0.25", "CIFAR-10", measure,
                     rounds, 0.75 if measure else 0.0, seed, best, best, train)


def cells(values, train=None):
    """``{(rounds, measure): [accuracy per seed]}`` -> records (plus one base run)."""
    records = [record(None, 0, 0, 0.9)]
    for (rounds, measure), accuracies in values.items():
        for seed, accuracy in enumerate(accuracies):
            mean_train = None if train is None else train[(rounds, measure)][seed]
            records.append(record(measure, rounds, seed, accuracy, mean_train))
    return records


def by_statement(checks, words):
    return [check for check in checks if words in check.claim.statement]


def test_orderings_partial_results_and_noise():
    records = cells({
        (1, "Mag."): [0.50, 0.52], (1, "Loss"): [0.40, 0.42],  # 11 points apart: holds
        (5, "Mag."): [0.50, 0.52], (5, "Loss"): [0.50, 0.54],  # 1 point below, std 1.4/2.8
        (1, "Proposed"): [0.45, 0.45],
    })
    checks = check_claims(records)
    magnitude = by_statement(checks, "Magnitude beats")
    assert [(c.rounds, c.held, c.total, c.within_noise) for c in magnitude] == [
        ("1", 1, 1, 0), ("5", 0, 1, 1)]
    assert magnitude[0].verdict == "holds"
    assert magnitude[1].verdict == "does not hold; 1 of 1 within seed noise"
    assert magnitude[0].evidence == "Mag. 51.0 ± 1.4 vs Loss 41.0 ± 1.4"
    proposed = by_statement(checks, "proposed measure beats loss")
    assert [c.rounds for c in proposed] == ["1"]  # no 5-round proposed cell: not checked
    assert not by_statement(checks, "beats magnitude")  # proposed has no multi-round cell


def test_random_against_every_standard_measure_counts_pairs():
    values = {(1, label): [acc] for label, acc in [
        ("Mag.", 0.5), ("Loss", 0.3), ("Proposed", 0.45), ("GraSP (T=200)", 0.41),
        ("GraSP (T=1)", 0.2), ("|GraSP| (T=1)", 0.44), ("Random", 0.4)]}
    (check,) = by_statement(check_claims(cells(values)), "Random")
    assert (check.held, check.total, check.within_noise) == (4, 6, 0)  # one seed: no noise
    assert check.verdict == "partly (4 of 6)"


def test_temperature_tolerance_and_rounds_trend():
    values = {(1, "GraSP (T=200)"): [0.40], (1, "GraSP (T=1)"): [0.395],
              (5, "GraSP (T=200)"): [0.40], (5, "GraSP (T=1)"): [0.30],
              (25, "GraSP (T=1)"): [0.20]}
    checks = check_claims(cells(values))
    (temperature,) = by_statement(checks, "hardly depends")
    assert temperature.rounds == "1" and temperature.verdict == "holds"
    (trend,) = by_statement(checks, "loses accuracy")
    assert trend.rounds == "1 vs 25" and trend.verdict == "holds"
    assert trend.evidence == "GraSP (T=1) (1 r.) 39.5 vs GraSP (T=1) (25 r.) 20.0"


def test_train_speed_claim_reads_mean_train_accuracy_and_skips_runs_without_it():
    values = {(1, "Mag."): [0.3], (1, "Loss"): [0.5]}
    with_curves = cells(values, train={(1, "Mag."): [0.6], (1, "Loss"): [0.4]})
    (speed,) = by_statement(check_claims(with_curves), "train faster")
    assert speed.verdict == "holds" and speed.evidence == "Mag. 60.0 vs Loss 40.0"
    assert not by_statement(check_claims(cells(values)), "train faster")


def test_markdown_escapes_bars_and_bad_round_kinds_fail():
    values = {(1, "GraSP (T=200)"): [0.3], (1, "GraSP (T=1)"): [0.2], (1, "|GraSP| (T=1)"): [0.4]}
    text = claims_markdown(check_claims(cells(values)))
    assert "\\|GraSP\\| beats GraSP" in text and text.count("\n") == 2 + 2
    assert len(CLAIMS) == 11
    with pytest.raises(ValueError, match="unknown rounds"):
        check_claims(cells(values), [Claim("x", "y", ("Mag.",), ("Loss",), rounds="some")])


def test_early_layer_claim_reads_the_runs_filters_kept(tmp_path):
    import json

    import yaml

    from tfprune.study.report import collect_runs

    def run(name, measure, options, kept):
        folder = tmp_path / name
        folder.mkdir()
        config = {"model": {"name": "vgg13", "width_multiplier": 0.25},
                  "data": {"source": "cifar10"}, "train": {"seed": 0},
                  "prune": {"measure": measure, "measure_options": options, "target": 0.5}}
        summary = {"best_test_accuracy": 0.4, "final_test_accuracy": 0.4, "rounds_done": 5,
                   "measure": {"name": measure},
                   "filters_kept": {f"conv{i}": [k, 10] for i, k in enumerate(kept)}}
        (folder / "config.yaml").write_text(yaml.safe_dump(config))
        (folder / "summary.json").write_text(json.dumps(summary))

    run("t1", "grasp", {"temperature": 1.0}, [1, 3, 9, 7])  # 80% of conv0-1 removed
    run("abs", "grasp_abs", {}, [8, 8, 2, 2])  # 20%
    records = collect_runs([tmp_path])
    assert sorted(r.early_pruned for r in records) == pytest.approx([0.2, 0.8])
    (check,) = by_statement(check_claims(records), "early layers")
    assert check.rounds == "5" and check.verdict == "holds"
    assert check.evidence == "GraSP (T=1) 80.0 vs |GraSP| (T=1) 20.0"
