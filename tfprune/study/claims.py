"""Which of the paper's Table 1-3, Fig. 1 and Section G.2 claims hold in a set of runs.

Each ``Claim`` says that some cells (round count, measure label) score above
others. ``check_claims`` compares the cells' means for every network and
pruned fraction, and for every round count the claim applies to, and says
whether every, some or none of the claimed orderings hold. A difference
smaller than the seeds' spread (``sqrt(std_a^2 + std_b^2)``, both cells with at
least two seeds) is flagged as within noise: such a difference may flip with
other seeds.
"""

from __future__ import annotations

import dataclasses
import math

from tfprune.study.report import RunRecord, table_rows

#: The measures of Tables 1 and 2, against which random and uniform pruning are compared.
STANDARD_MEASURES = ("Mag.", "Loss", "Proposed", "GraSP (T=200)", "GraSP (T=1)",
                     "|GraSP| (T=1)")


@dataclasses.dataclass(frozen=True)
class Claim:
    """A claimed ordering of measures.

    Attributes:
        source: Where the paper makes it (``Table 1``, ``Fig. 1``, ...).
        statement: The claim in words.
        higher: Measure labels claimed to score higher.
        lower: Measure labels claimed to score lower.
        rounds: ``"each"`` (every round count), ``"multi"`` (round counts above 1),
            ``"single"`` (1 round) or ``"fewest_vs_most"`` (``higher`` at the fewest
            rounds against ``lower`` at the most).
        metric: A ``tfprune.study.report.METRICS`` key.
        tolerance: If set, the claim is that the cells lie within this many points
            of each other rather than in order.
    """

    source: str
    statement: str
    higher: tuple
    lower: tuple
    rounds: str = "each"
    metric: str = "best"
    tolerance: float | None = None


#: The paper's claims about its tables, as orderings of the study's cells.
CLAIMS = (
    Claim("Table 1", "Magnitude beats loss preservation", ("Mag.",), ("Loss",)),
    Claim("Table 1", "The proposed measure beats loss preservation", ("Proposed",), ("Loss",)),
    Claim("Table 1", "With more rounds, the proposed measure beats magnitude", ("Proposed",),
          ("Mag.",), rounds="multi"),
    Claim("Fig. 1", "Magnitude-pruned models train faster than loss-preservation-pruned ones "
          "(mean train accuracy over epochs)", ("Mag.",), ("Loss",), metric="mean_train"),
    Claim("Fig. 1", "Models pruned by the proposed measure train faster than "
          "loss-preservation-pruned ones (mean train accuracy over epochs)", ("Proposed",),
          ("Loss",), metric="mean_train"),
    Claim("Table 2", "|GraSP| beats GraSP at T=200 and at T=1", ("|GraSP| (T=1)",),
          ("GraSP (T=200)", "GraSP (T=1)")),
    Claim("Table 2", "With one round, GraSP's accuracy hardly depends on the temperature "
          "(within 1 point)", ("GraSP (T=200)",), ("GraSP (T=1)",), rounds="single",
          tolerance=1.0),
    Claim("Table 2", "GraSP at T=1 loses accuracy as rounds increase", ("GraSP (T=1)",),
          ("GraSP (T=1)",), rounds="fewest_vs_most"),
    Claim("Sec. G.2", "With more rounds, GraSP at T=1 prunes the early layers hardest "
          "(% of filters removed from the first half of the layers)", ("GraSP (T=1)",),
          ("|GraSP| (T=1)", "GraSP (T=200)", "Mag.", "Loss", "Proposed"), rounds="multi",
          metric="early_pruned"),
    Claim("Table 3", "Random pruning is worse than every measure of Tables 1-2",
          STANDARD_MEASURES, ("Random",)),
    Claim("Table 3", "Uniform pruning is worse than every measure of Tables 1-2",
          STANDARD_MEASURES, ("Uniform",)),
)


@dataclasses.dataclass
class ClaimCheck:
    """One claim checked on one table row at one round count.

    Attributes:
        claim: The ``Claim``.
        row: ``dataset network, pruned %``.
        rounds: The round count(s) compared, e.g. ``"5"`` or ``"1 vs 5"``.
        held: How many of the claimed orderings hold.
        total: How many orderings were compared.
        within_noise: How many differences are smaller than the seeds' spread.
        evidence: The compared means, e.g. ``"Mag. 40.4 ± 0.3 vs Loss 34.1 ± 1.2"``.
    """

    claim: Claim
    row: str
    rounds: str
    held: int
    total: int
    within_noise: int
    evidence: str

    @property
    def verdict(self) -> str:
        """``holds``, ``does not hold`` or ``partly (k of n)``, with a noise note."""
        if self.held == self.total:
            verdict = "holds"
        elif self.held == 0:
            verdict = "does not hold"
        else:
            verdict = f"partly ({self.held} of {self.total})"
        if self.within_noise:
            verdict += f"; {self.within_noise} of {self.total} within seed noise"
        return verdict


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
    raise ValueError(f"claim {claim.statement!r}: unknown rounds {claim.rounds!r}.")


def _check(claim: Claim, cells: dict, high_rounds: int, low_rounds: int, row: str):
    high = [(label, cells[(high_rounds, label)]) for label in claim.higher
            if (high_rounds, label) in cells]
    low = [(label, cells[(low_rounds, label)]) for label in claim.lower
           if (low_rounds, label) in cells]
    if not high or not low:
        return None
    held = within_noise = total = 0
    for _, (high_mean, high_std, high_n) in high:
        for _, (low_mean, low_std, low_n) in low:
            difference = high_mean - low_mean
            total += 1
            if claim.tolerance is not None:
                held += abs(difference) <= claim.tolerance
            else:
                held += difference > 0
                seeds_known = min(high_n, low_n) > 1  # one seed: the spread is unknown
                within_noise += seeds_known and abs(difference) <= math.hypot(high_std, low_std)
    show = high_rounds != low_rounds
    evidence = (", ".join(_format(label, high_rounds, stat, show) for label, stat in high)
                + " vs "
                + ", ".join(_format(label, low_rounds, stat, show) for label, stat in low))
    rounds = str(high_rounds) if not show else f"{high_rounds} vs {low_rounds}"
    return ClaimCheck(claim, row, rounds, held, total, within_noise, evidence)


def check_claims(records: list[RunRecord], claims=CLAIMS) -> list[ClaimCheck]:
    """Checks every claim on every table row and applicable round count.

    Args:
        records: Run records (``tfprune.study.report.collect_runs``).
        claims: The claims to check (default ``CLAIMS``).

    Returns:
        One ``ClaimCheck`` per claim, row and round count whose cells exist.
    """
    tables = {metric: table_rows(records, metric) for metric in {c.metric for c in claims}}
    checks = []
    for claim in claims:
        rows, rounds = tables[claim.metric]
        for row in rows:
            name = f"{row.dataset} {row.network}, {row.target:.0%} pruned"
            for high_rounds, low_rounds in _round_pairs(claim, rounds):
                check = _check(claim, row.cells, high_rounds, low_rounds, name)
                if check is not None:
                    checks.append(check)
    return checks


def claims_markdown(checks: list[ClaimCheck]) -> str:
    """The checks as a Markdown table (source, claim, run set, rounds, verdict, evidence)."""
    lines = ["| source | claim | runs | rounds | verdict | measured (% accuracy unless said) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for check in checks:
        cells = [check.claim.source, check.claim.statement, check.row, check.rounds,
                 check.verdict, check.evidence]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines) + "\n"
