"""Which of the paper's Table 1-3, Fig. 1 and Section G.2 claims hold in a set of runs.

Each ``Claim`` says that some cells (round count, measure label) score above
others, or lie within a tolerance of each other. ``check_claims`` compares,
for every network and pruned fraction and every round count the claim applies
to, each claimed pair of cells by their paired difference over the seeds both
have (same seed: same initialization and data order), with a 95% paired-t
interval (``tfprune.study.paired``):

- an ordering **holds** when the interval lies above zero, is **contradicted**
  when it lies below, and is **not resolved at this scale** otherwise;
- a tolerance claim ("within t points") **holds** when the interval lies
  inside [-t, t], is **contradicted** when it lies wholly outside, and is not
  resolved otherwise.

With a single seed there is no interval, and nothing is resolved.
"""

from __future__ import annotations

import dataclasses
import math

from tfprune.study.paired import PairedDifference, paired_difference
from tfprune.study.records import RunRecord
from tfprune.study.tables import table_rows

#: What Table 3 compares random and uniform pruning with: the measures the paper says beat
#: them (GraSP at T=200 and T=1 are not among them: in the paper random beats GraSP at T=1).
TABLE3_MEASURES = ("Mag.", "Loss", "Proposed", "|GraSP| (T=1)")


@dataclasses.dataclass(frozen=True)
class Claim:
    """A claimed ordering of measures.

    Attributes:
        source: Where the paper makes it (``Table 1``, ``Fig. 1``, ...).
        statement: The claim in words.
        higher: Measure labels claimed to score higher.
        lower: Measure labels claimed to score lower.
        rounds: ``"each"`` (every round count), ``"multi"`` (round counts above 1),
            ``"single"`` (1 round), ``"fewest_vs_most"`` (``higher`` at the fewest
            rounds against ``lower`` at the most), ``"consecutive"`` (``higher`` at
            each round count against ``lower`` at the next), or a round count (that
            one only: where the paper makes the claim).
        metric: A ``tfprune.study.tables.METRICS`` key; ``"best"`` stands for the
            accuracy metric the report is made for (``check_claims(accuracy_metric=)``).
        tolerance: If set, the claim is that the cells lie within this many points
            of each other rather than in order.
    """

    source: str
    statement: str
    higher: tuple
    lower: tuple
    rounds: str | int = "each"
    metric: str = "best"
    tolerance: float | None = None


#: The paper's claims about its tables, as orderings of the study's cells.
CLAIMS = (
    Claim("Table 1", "Magnitude beats loss preservation", ("Mag.",), ("Loss",)),
    Claim("Table 1", "The proposed measure beats loss preservation", ("Proposed",), ("Loss",)),
    Claim("ours (Eq. 3; no published number)", "Magnitude beats loss preservation as Eq. 3 "
          "defines it", ("Mag.",), ("Loss (Eq. 3)",)),
    Claim("ours (Eq. 3; no published number)", "The proposed measure beats loss preservation "
          "as Eq. 3 defines it", ("Proposed",), ("Loss (Eq. 3)",)),
    Claim("Table 1 (VGG-13, CIFAR-10, 25 rounds: 92.45 vs 92.06; at 5 rounds magnitude is "
          "ahead, 92.32 vs 92.29)", "With many rounds (25), the proposed measure beats "
          "magnitude", ("Proposed",), ("Mag.",), rounds=25),
    Claim("Fig. 1 (ResNet-56, 25 rounds in the paper: transfer)", "Magnitude-pruned models "
          "train faster than loss-preservation-pruned ones (mean train accuracy over epochs)",
          ("Mag.",), ("Loss",), metric="mean_train"),
    Claim("Fig. 1 (ResNet-56, 25 rounds in the paper: transfer)", "Models pruned by the "
          "proposed measure train faster than loss-preservation-pruned ones (mean train "
          "accuracy over epochs)", ("Proposed",), ("Loss",), metric="mean_train"),
    Claim("Table 2", "|GraSP| beats GraSP at T=200 and at T=1", ("|GraSP| (T=1)",),
          ("GraSP (T=200)", "GraSP (T=1)")),
    Claim("Table 2", "With one round, GraSP's accuracy hardly depends on the temperature "
          "(within 1 point)", ("GraSP (T=200)",), ("GraSP (T=1)",), rounds="single",
          tolerance=1.0),
    Claim("Table 2", "GraSP at T=1 loses accuracy as rounds increase", ("GraSP (T=1)",),
          ("GraSP (T=1)",), rounds="consecutive"),
    Claim("Sec. G.2 (VGG-13 at 65% on CIFAR-100 in the paper: transfer)",
          "With more rounds, GraSP at T=1 prunes the early layers hardest "
          "(% of filters removed from the first half of the layers)", ("GraSP (T=1)",),
          ("|GraSP| (T=1)", "GraSP (T=200)", "Mag.", "Loss", "Proposed"), rounds="multi",
          metric="early_pruned"),
    Claim("Table 3 (CIFAR-100 in the paper: transfer)", "Random pruning is worse than "
          "magnitude, loss, proposed and |GraSP|", TABLE3_MEASURES, ("Random",)),
    Claim("Table 3 (CIFAR-100 in the paper: transfer)", "Uniform pruning is worse than "
          "magnitude, loss, proposed and |GraSP|", TABLE3_MEASURES, ("Uniform",)),
)


@dataclasses.dataclass
class ClaimCheck:
    """One claimed pair of cells checked on one table row.

    Attributes:
        claim: The ``Claim``.
        row: ``dataset network, pruned %``.
        rounds: The round count(s) compared, e.g. ``"5"`` or ``"1 vs 5"``.
        higher: The cell claimed higher (or, for a tolerance claim, the first cell).
        lower: The cell claimed lower (or the second cell).
        difference: ``higher - lower``, paired by seed, in points.
        evidence: The compared means, e.g. ``"Mag. 40.4 ± 0.3 vs Loss 34.1 ± 1.2"``.
    """

    claim: Claim
    row: str
    rounds: str
    higher: str
    lower: str
    difference: PairedDifference
    evidence: str

    @property
    def verdict(self) -> str:
        """``holds``, ``contradicted`` or ``not resolved at this scale``."""
        direction = self.difference.direction(self.claim.tolerance)
        if self.claim.tolerance is not None:
            verdict = {"within": "holds", "above": "contradicted", "below": "contradicted"}
        else:
            verdict = {"above": "holds", "below": "contradicted"}
        return verdict.get(direction, "not resolved at this scale")


def _format(label: str, rounds: int, stat, show_rounds: bool) -> str:
    mean, std, n = stat
    name = f"{label} ({rounds} r.)" if show_rounds else label
    return f"{name} {mean:.1f}" + (f" ± {std:.1f}" if n > 1 else "")


def _round_pairs(claim: Claim, rounds: list[int]) -> list[tuple[int, int]]:
    """(rounds of the higher cells, rounds of the lower cells) for each comparison."""
    if claim.rounds == "each":
        return [(r, r) for r in rounds]
    if claim.rounds == "multi":
        return [(r, r) for r in rounds if r > 1]
    if claim.rounds == "single":
        return [(1, 1)] if 1 in rounds else []
    if claim.rounds == "fewest_vs_most":
        return [(rounds[0], rounds[-1])] if len(rounds) > 1 else []
    if claim.rounds == "consecutive":
        return list(zip(rounds, rounds[1:], strict=False))
    if isinstance(claim.rounds, int):
        return [(claim.rounds, claim.rounds)] if claim.rounds in rounds else []
    raise ValueError(f"claim {claim.statement!r}: unknown rounds {claim.rounds!r}.")


def _checks(claim: Claim, row, high_rounds: int, low_rounds: int, name: str) -> list:
    """One ``ClaimCheck`` per (higher, lower) pair of cells present in ``row``."""
    show = high_rounds != low_rounds
    rounds = str(high_rounds) if not show else f"{high_rounds} vs {low_rounds}"
    cells, checks = row.cells, []
    for high in claim.higher:
        for low in claim.lower:
            a, b = (high_rounds, high), (low_rounds, low)
            if a not in row.values or b not in row.values:
                continue
            evidence = (f"{_format(high, high_rounds, cells[a], show)} vs "
                        f"{_format(low, low_rounds, cells[b], show)}")
            checks.append(ClaimCheck(claim, name, rounds, high, low,
                                     paired_difference(row.values[a], row.values[b]), evidence))
    return checks


def check_claims(records: list[RunRecord], claims=CLAIMS,
                 accuracy_metric: str = "best_after_pruning") -> list[ClaimCheck]:
    """Checks every claim on every table row and applicable round count.

    Args:
        records: Run records (``tfprune.study.report.collect_runs``).
        claims: The claims to check (default ``CLAIMS``).
        accuracy_metric: The test accuracy the accuracy claims read: a key of
            ``tfprune.study.report.ACCURACY_METRICS`` (default: the best after the last
            pruning round).

    Returns:
        One ``ClaimCheck`` per claim, row, round count and pair of cells that exist.
    """
    def metric(claim):
        return accuracy_metric if claim.metric == "best" else claim.metric

    tables = {name: table_rows(records, name) for name in {metric(c) for c in claims}}
    checks = []
    for claim in claims:
        rows, rounds = tables[metric(claim)]
        for row in rows:
            name = f"{row.dataset} {row.network}, {row.target:.0%} pruned"
            for high_rounds, low_rounds in _round_pairs(claim, rounds):
                checks += _checks(claim, row, high_rounds, low_rounds, name)
    return checks


def claims_markdown(checks: list[ClaimCheck], claims=CLAIMS) -> str:
    """The checks as a Markdown table, one line per compared pair of cells.

    Columns: source, claim, runs, rounds, compared cells (mean ± std), the
    paired difference with its 95% interval and the seeds paired, the smallest
    gap the test detects with 80% power at the measured spread, verdict. A
    claim of ``claims`` with no check (its cells were not run) gets one line
    saying so, so no claim drops out silently.
    """
    lines = ["| source | claim | runs | rounds | measured (% unless said) | "
             "paired difference [95% CI], seeds | detectable at 80% power | verdict |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for check in checks:
        gap = check.difference.detectable_gap()
        cells = [check.claim.source, check.claim.statement, check.row, check.rounds,
                 check.evidence, check.difference.format(),
                 "-" if math.isnan(gap) else f"{gap:.1f}", check.verdict]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    checked = {id(check.claim) for check in checks}
    for claim in claims:
        if id(claim) not in checked:
            cells = [claim.source, claim.statement, "-", str(claim.rounds), "-", "-", "-",
                     "untested: its cells have no runs yet"]
            lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines) + "\n"
