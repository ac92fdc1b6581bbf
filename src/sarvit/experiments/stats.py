"""Statistics of a grid: mean ± std per cell, and the seed-paired difference to the baseline with a t interval.

Seeds pair runs: seed ``s`` of an arm and seed ``s`` of its baseline see the same data order and the same
initialisation draw, so the per-seed differences cancel much of the seed-to-seed spread.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Mapping, Optional, Sequence

__all__ = ["Summary", "PairedDifference", "summarize", "paired_difference", "MIN_PAIRS_FOR_VERDICT"]

MIN_PAIRS_FOR_VERDICT = 3


@dataclass(frozen=True)
class Summary:
    n: int
    mean: float
    std: Optional[float]       # sample standard deviation (n - 1); None with one value

    def to_dict(self) -> dict:
        return {"n": self.n, "mean": self.mean if self.n else None, "std": self.std}

    def text(self, digits: int = 2) -> str:
        if self.n == 0:
            return "—"
        spread = f" ± {self.std:.{digits}f}" if self.std is not None else ""
        return f"{self.mean:.{digits}f}{spread}"


@dataclass(frozen=True)
class PairedDifference:
    """``arm - baseline`` over the seeds both have: mean, std of the differences and a two-sided CI."""

    n: int
    mean: float
    std: Optional[float]
    ci_low: Optional[float]
    ci_high: Optional[float]
    level: float

    @property
    def within_noise(self) -> Optional[bool]:
        """True when the interval contains 0; None below MIN_PAIRS_FOR_VERDICT pairs, where two seeds that
        happen to agree (accuracies are multiples of 1/N) would give a zero-width interval and a false verdict."""
        if self.n < MIN_PAIRS_FOR_VERDICT or self.ci_low is None or self.ci_high is None:
            return None
        return self.ci_low <= 0.0 <= self.ci_high

    def verdict(self, than: str = "the baseline") -> str:
        if self.within_noise is None:
            return f"cannot tell ({self.n} paired seed{'s' if self.n != 1 else ''}; {MIN_PAIRS_FOR_VERDICT} needed)"
        if self.within_noise:
            return "within noise (the interval contains 0)"
        return f"higher than {than}" if self.mean > 0 else f"lower than {than}"

    def text(self, digits: int = 2) -> str:
        if self.ci_low is None:
            return f"{self.mean:+.{digits}f}"
        return f"{self.mean:+.{digits}f} [{self.ci_low:+.{digits}f}, {self.ci_high:+.{digits}f}]"

    def to_dict(self) -> dict:
        return {**asdict(self), "within_noise": self.within_noise}


def summarize(values: Sequence[float]) -> Summary:
    """Mean and sample standard deviation of the finite values."""
    values = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    n = len(values)
    if n == 0:
        return Summary(0, float("nan"), None)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
    return Summary(n, mean, std)


def paired_difference(arm: Mapping[int, float], baseline: Mapping[int, float],
                      level: float = 0.95) -> Optional[PairedDifference]:
    """Mean of ``arm[s] - baseline[s]`` over the common seeds ``s``, with Student's t interval at ``level``.

    ``CI = mean ± t_{(1+level)/2, n-1} · std / sqrt(n)``; None when no seed is shared.
    """
    from scipy import stats

    seeds = sorted(s for s in arm if s in baseline and arm[s] is not None and baseline[s] is not None)
    differences = [float(arm[s]) - float(baseline[s]) for s in seeds]
    summary = summarize(differences)
    if summary.n == 0:
        return None
    if summary.std is None:
        return PairedDifference(1, summary.mean, None, None, None, level)
    half = float(stats.t.ppf((1 + level) / 2, summary.n - 1)) * summary.std / math.sqrt(summary.n)
    return PairedDifference(summary.n, summary.mean, summary.std, summary.mean - half, summary.mean + half, level)
