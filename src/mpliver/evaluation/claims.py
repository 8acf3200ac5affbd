"""Judging a paper claim "B scores a higher DPC than A" on repeated runs (training seeds) over the same cases.

Rule (stated once, used by every table):
- d_s = mean over cases of DPC_B − DPC_A for seed s, over the cases both rows evaluated with a defined DPC in
  every seed; d = mean of d_s over seeds.
- The case-level test is a paired test (Wilcoxon signed-rank; the paired t-test where Wilcoxon is undefined)
  on each case's DPC averaged over the seeds, so the seed noise of one case does not count as evidence.
- "holds beyond the spread": d > 0, every d_s > 0 (the sign agrees across seeds) and p < alpha.
- "holds within the spread": d > 0 otherwise (also d == 0: no ordering either way).
- "reversed": d < 0; the figures say whether the reversal itself agrees across seeds and passes the test.
One seed measures no seed spread, so its sign cannot agree across seeds: a claim holds at most within the
spread there, however small p is.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from mpliver.evaluation.aggregate import mean_sd, paired_comparison

HOLDS_BEYOND = "holds beyond the spread"
HOLDS_WITHIN = "holds within the spread"
REVERSED = "reversed"


@dataclass(frozen=True)
class Judgement:
    """The figures behind a verdict on "higher > lower"."""

    seed_diffs: dict[int, float]  # d_s per seed
    mean_diff: float  # d
    seed_sd: float | None  # SD of d_s over seeds (None with one seed)
    case_sd: float | None  # SD over cases of the seed-averaged per-case differences
    n_cases: int
    p_value: float | None
    test: str
    signs_agree: bool
    significant: bool
    verdict: str

    @property
    def counts(self) -> bool:
        """A paired comparison counts when its sign agrees across seeds and the case-level test holds."""
        return self.signs_agree and self.significant


def judge(
    lower: Mapping[int, Mapping[str, float]],
    higher: Mapping[int, Mapping[str, float]],
    alpha: float = 0.05,
) -> Judgement:
    """Judge "`higher` > `lower`" from {seed: {case: DPC}} of each row (the seeds both rows ran)."""
    seeds = sorted(set(lower) & set(higher))
    if not seeds:
        raise ValueError("no seed that both rows ran")

    def defined(v: float | None) -> bool:
        return v is not None and math.isfinite(v)

    cases = sorted(
        c
        for c in set.intersection(*(set(lower[s]) & set(higher[s]) for s in seeds))
        if all(defined(lower[s][c]) and defined(higher[s][c]) for s in seeds)
    )
    if not cases:
        raise ValueError("no case with a defined DPC in both rows and every seed")
    seed_diffs = {s: sum(higher[s][c] - lower[s][c] for c in cases) / len(cases) for s in seeds}
    diffs = list(seed_diffs.values())
    mean_diff = sum(diffs) / len(diffs)
    seed_sd = mean_sd(diffs)[1]
    avg_low = [{"case": c, "dice": sum(lower[s][c] for s in seeds) / len(seeds)} for c in cases]
    avg_high = [{"case": c, "dice": sum(higher[s][c] for s in seeds) / len(seeds)} for c in cases]
    test = paired_comparison(avg_low, avg_high, key="dice")
    p = test["p_value"]
    significant = p is not None and p < alpha
    several = len(diffs) > 1
    if mean_diff > 0:
        signs_agree = several and all(d > 0 for d in diffs)
        verdict = HOLDS_BEYOND if signs_agree and significant else HOLDS_WITHIN
    elif mean_diff < 0:
        signs_agree = several and all(d < 0 for d in diffs)
        verdict = REVERSED
    else:
        signs_agree, verdict = False, HOLDS_WITHIN
    return Judgement(
        seed_diffs=seed_diffs,
        mean_diff=mean_diff,
        seed_sd=seed_sd,
        case_sd=test["sd_diff"],
        n_cases=len(cases),
        p_value=p,
        test=test["test"],
        signs_agree=signs_agree,
        significant=significant,
        verdict=verdict,
    )


def describe(label: str, j: Judgement, paper_diff: float | None = None) -> str:
    """One line: the claim, its verdict and its figures (per-seed differences, spreads, p, the paper's)."""
    seeds = ", ".join(f"{d:+.2f}" for d in j.seed_diffs.values())
    parts = [
        f"**{label}**: {j.verdict}",
        f"DPC difference {j.mean_diff:+.2f} (per seed {seeds}; SD over seeds {_fmt(j.seed_sd)}, "
        f"SD over cases {_fmt(j.case_sd)}, {j.n_cases} cases)",
        f"{j.test} p = {_fmt(j.p_value, 3)}",
        "one seed: no seed spread" if len(j.seed_diffs) < 2
        else "sign agrees across seeds" if j.signs_agree else "sign differs across seeds",
    ]
    if paper_diff is not None:
        parts.append(f"paper {paper_diff:+.2f}")
    return "; ".join(parts)


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}g}" if digits == 3 else f"{value:.{digits}f}"

