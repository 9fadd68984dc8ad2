"""Claim checks on hand-made run records: paired verdicts, tolerance, rounds, the G.2 metric."""

from pathlib import Path

import numpy as np
import pytest

from tfprune.study.claims import CLAIMS, TABLE3_MEASURES, Claim, check_claims, claims_markdown


def record(measure, rounds, seed, best, train=None, final=None):
    from tfprune.study.records import RunRecord

    return RunRecord(Path(f"{measure}-{rounds}-{seed}"), "vgg13 x0.25", "CIFAR-10", measure,
                     rounds, 0.75 if measure else 0.0, seed, best,
                     best if final is None else final, train)


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


def test_paired_verdicts_hold_contradict_or_stay_unresolved():
    records = cells({
        # differences 10, 10, 12 points: interval far above zero
        (1, "Mag."): [0.50, 0.52, 0.55], (1, "Loss"): [0.40, 0.42, 0.43],
        # differences -4, -3, -5: below zero
        (5, "Mag."): [0.50, 0.52, 0.50], (5, "Loss"): [0.54, 0.55, 0.55],
        # Proposed vs Loss at 1 round: +5, -5, +1: interval spans zero
        (1, "Proposed"): [0.45, 0.37, 0.44],
    })
    checks = check_claims(records)
    magnitude = by_statement(checks, "Magnitude beats loss preservation")
    assert [(c.rounds, c.verdict) for c in magnitude] == [("1", "holds"),
                                                          ("5", "contradicted")]
    assert magnitude[0].evidence == "Mag. 52.3 ± 2.5 vs Loss 41.7 ± 1.5"
    assert magnitude[0].difference.format() == "+10.7 [+7.8, +13.5], n=3"
    (proposed,) = by_statement(checks, "proposed measure beats loss preservation")
    assert proposed.verdict == "not resolved at this scale"
    assert not by_statement(checks, "beats magnitude")  # proposed has no multi-round cell


def test_pairing_uses_the_seed_not_the_order():
    # Same values, seeds swapped between cells: unpaired means are equal, paired they are not.
    records = [record("Mag.", 1, s, a) for s, a in [(0, 0.50), (1, 0.60), (2, 0.70)]]
    records += [record("Loss", 1, s, a) for s, a in [(0, 0.49), (1, 0.59), (2, 0.69)]]
    (check,) = by_statement(check_claims(records), "Magnitude beats loss preservation")
    assert check.difference.mean == pytest.approx(1.0)
    assert check.difference.low == pytest.approx(1.0) and check.verdict == "holds"


def test_one_seed_resolves_nothing_and_table3_pairs_the_papers_measures():
    values = {(1, label): [acc] for label, acc in [
        ("Mag.", 0.5), ("Loss", 0.3), ("Proposed", 0.45), ("GraSP (T=200)", 0.41),
        ("GraSP (T=1)", 0.2), ("|GraSP| (T=1)", 0.44), ("Random", 0.4)]}
    checks = by_statement(check_claims(cells(values)), "Random pruning")
    assert [c.higher for c in checks] == list(TABLE3_MEASURES)  # no GraSP T=200 / T=1
    assert {c.verdict for c in checks} == {"not resolved at this scale"}


def test_tolerance_claim_needs_the_interval_inside_the_band():
    close = {(1, "GraSP (T=200)"): [0.400, 0.410, 0.405], (1, "GraSP (T=1)"): [0.398, 0.407,
                                                                                0.404]}
    (check,) = by_statement(check_claims(cells(close)), "hardly depends")
    assert check.verdict == "holds"
    noisy = {(1, "GraSP (T=200)"): [0.30, 0.41, 0.36], (1, "GraSP (T=1)"): [0.36, 0.30, 0.37]}
    (check,) = by_statement(check_claims(cells(noisy)), "hardly depends")
    assert check.verdict == "not resolved at this scale"  # mean gap 1.3, interval wide
    apart = {(1, "GraSP (T=200)"): [0.40, 0.41, 0.42], (1, "GraSP (T=1)"): [0.30, 0.30, 0.31]}
    (check,) = by_statement(check_claims(cells(apart)), "hardly depends")
    assert check.verdict == "contradicted"


def test_rounds_trend_and_train_speed_and_final_metric():
    values = {(1, "GraSP (T=1)"): [0.40, 0.41], (25, "GraSP (T=1)"): [0.20, 0.22]}
    (trend,) = by_statement(check_claims(cells(values)), "loses accuracy")
    assert trend.rounds == "1 vs 25" and trend.verdict == "holds"
    assert trend.evidence == "GraSP (T=1) (1 r.) 40.5 ± 0.7 vs GraSP (T=1) (25 r.) 21.0 ± 1.4"
    speed_values = {(1, "Mag."): [0.3], (1, "Loss"): [0.5]}
    with_curves = cells(speed_values, train={(1, "Mag."): [0.6], (1, "Loss"): [0.4]})
    (speed,) = by_statement(check_claims(with_curves), "train faster")
    assert speed.evidence == "Mag. 60.0 vs Loss 40.0"
    assert not by_statement(check_claims(cells(speed_values)), "train faster")
    records = [record("Mag.", 1, s, 0.5, final=0.3) for s in range(3)]
    records += [record("Loss", 1, s, 0.4 + s / 1000, final=0.45) for s in range(3)]
    # (no per-epoch logs: best after the last round is unknown when best != final)
    assert not by_statement(check_claims(records), "Magnitude beats loss preservation")
    (best,) = by_statement(check_claims(records, accuracy_metric="best"),
                           "Magnitude beats loss preservation")
    (final,) = by_statement(check_claims(records, accuracy_metric="final"),
                            "Magnitude beats loss preservation")
    assert (best.verdict, final.verdict) == ("holds", "contradicted")


def test_markdown_escapes_bars_and_bad_round_kinds_fail():
    values = {(1, "GraSP (T=200)"): [0.3], (1, "GraSP (T=1)"): [0.2], (1, "|GraSP| (T=1)"): [0.4]}
    text = claims_markdown(check_claims(cells(values)))
    assert "\\|GraSP\\| beats GraSP" in text and "paired difference [95% CI]" in text
    # two pairs of |GraSP| + one tolerance check; the 11 claims without runs listed as untested
    assert text.count("\n") == 2 + 3 + 11
    assert text.count("untested: its cells have no runs yet") == 11
    assert len(CLAIMS) == 13
    with pytest.raises(ValueError, match="unknown rounds"):
        check_claims(cells(values), [Claim("x", "y", ("Mag.",), ("Loss",), rounds="some")])


def test_early_layer_claim_reads_the_runs_filters_kept(tmp_path):
    import json

    import yaml

    from tfprune.study.report import collect_runs

    def run(name, measure, options, kept, seed):
        folder = tmp_path / name
        folder.mkdir()
        config = {"model": {"name": "vgg13", "width_multiplier": 0.25},
                  "data": {"source": "cifar10"}, "train": {"seed": seed},
                  "prune": {"measure": measure, "measure_options": options, "target": 0.5}}
        summary = {"best_test_accuracy": 0.4, "final_test_accuracy": 0.4, "rounds_done": 5,
                   "measure": {"name": measure},
                   "filters_kept": {f"conv{i}": [k, 10] for i, k in enumerate(kept)}}
        (folder / "config.yaml").write_text(yaml.safe_dump(config))
        (folder / "summary.json").write_text(json.dumps(summary))

    run("t1-s0", "grasp", {"temperature": 1.0}, [1, 3, 9, 7], 0)  # 80% of conv0-1 removed
    run("t1-s1", "grasp", {"temperature": 1.0}, [2, 2, 9, 7], 1)  # 80%
    run("abs-s0", "grasp_abs", {}, [8, 8, 2, 2], 0)  # 20%
    run("abs-s1", "grasp_abs", {}, [7, 8, 2, 2], 1)  # 25%
    records = collect_runs([tmp_path])
    assert sorted(r.early_pruned for r in records) == pytest.approx([0.2, 0.25, 0.8, 0.8])
    (check,) = by_statement(check_claims(records), "early layers")
    assert check.rounds == "5" and check.verdict == "holds"
    assert check.evidence == "GraSP (T=1) 80.0 ± 0.0 vs |GraSP| (T=1) 22.5 ± 3.5"


def test_a_claim_made_at_one_round_count_is_checked_there_only():
    values = {(5, "Mag."): [0.50, 0.52, 0.55], (5, "Proposed"): [0.49, 0.50, 0.53]}
    assert not by_statement(check_claims(cells(values)), "With many rounds (25)")
    values.update({(25, "Mag."): [0.50, 0.52, 0.55], (25, "Proposed"): [0.53, 0.56, 0.58]})
    (check,) = by_statement(check_claims(cells(values)), "With many rounds (25)")
    assert check.rounds == "25" and check.verdict == "holds"


def test_the_detectable_gap_matches_a_simulated_paired_t_test():
    from scipy import stats

    from tfprune.study.paired import detectable_gap, paired_difference, power_of

    rng = np.random.default_rng(0)
    for n, sd in ((3, 0.65), (10, 0.65)):
        gap = detectable_gap(n, sd)
        draws = rng.normal(gap, sd, size=(40_000, n))
        t = draws.mean(1) / (draws.std(1, ddof=1) / np.sqrt(n))
        simulated = np.mean(np.abs(t) > stats.t.ppf(0.975, n - 1))
        assert simulated == pytest.approx(0.8, abs=0.01), (n, gap, simulated)
    # where SciPy's noncentral t is stable, it agrees
    shift = 0.65 * np.sqrt(10) / 0.65
    critical = stats.t.ppf(0.975, 9)
    assert power_of(10, 0.65, 0.65) == pytest.approx(
        stats.nct.sf(critical, 9, shift) + stats.nct.cdf(-critical, 9, shift), abs=1e-6)
    # the audit's figures: 1.9-2.4 points at n=3, 0.6-0.7 at n=10 (sd 0.57-0.73)
    assert [round(detectable_gap(n, sd), 1) for n in (3, 10) for sd in (0.57, 0.73)] == [
        1.9, 2.4, 0.6, 0.7]
    difference = paired_difference({0: 1.0, 1: 2.0, 2: 1.5}, {0: 0.0, 1: 0.5, 2: 1.0})
    assert difference.sd == pytest.approx(np.std([1.0, 1.5, 0.5], ddof=1))
    assert difference.detectable_gap() == pytest.approx(detectable_gap(3, difference.sd))
