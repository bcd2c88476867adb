"""95% bootstrap intervals for every score cosalign reports, and paired differences between models.

One helper, used by metrics.json, report.md, the model cards and the judge-quality report:
`scipy.stats.bootstrap` with the percentile method and 9,999 resamples, seeded.

Stratified by config: CoSA-Score and its rates are macro averages over configs (docs/method.md,
"CoSA-Score"), so each config's items are one sample, resampled on its own, and the statistic is
the mean over configs of each config's mean. Every config keeps its weight in every resample.
A paired difference is the same computation over per-item differences (model - baseline) on the
items both models were judged valid on, so each resample draws pairs, never items apart.

A degenerate sample (every value equal) gives lo = hi = the value, never NaN, with one exception:
a share (`share=True`: values 0 or 1) that is 0% or 100% over every item gets the Wilson score
interval of 0 or n successes in n items, [0, z^2/(n+z^2)] or [n/(n+z^2), 1]. Every bootstrap
resample of such a sample is the same, but 46 answers out of 46 do not show a 100% answer rate:
the zero-width interval would claim that, and any other run's 98% would fall "outside" it.
A stratum that is constant while others vary still enters as a constant (its own sampling
uncertainty is not counted).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.stats import bootstrap

N_RESAMPLES = 9_999
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    """A point estimate with its 95% interval."""
    value: float
    lo: float
    hi: float

    def covers(self, x: float) -> bool:
        return self.lo <= x <= self.hi

    def as_dict(self, digits: int = 6) -> dict:
        return {"value": round(self.value, digits), "lo": round(self.lo, digits), "hi": round(self.hi, digits)}


def wilson_all_or_none(value: float, n: int) -> Interval:
    """The Wilson score interval of a share observed at 0 or 1 over n items (scipy's binomtest)."""
    from scipy.stats import binomtest
    ci = binomtest(int(round(value * n)), n).proportion_ci(confidence_level=CONFIDENCE, method="wilson")
    return Interval(value, float(ci.low) if value else 0.0, float(ci.high) if not value else 1.0)


def stratified_interval(strata: Sequence[Sequence[float]], seed: int, *, share: bool = False) -> Interval:
    """The macro mean over strata of each stratum's mean, with its 95% percentile bootstrap interval.

    Args:
        strata: one sequence of item values per stratum (config); empty strata are ignored.
        seed: the random state (params `evaluate.seed`), so the interval is reproducible.
        share: the values are 0/1 outcomes (a rate); a rate of 0 or 1 over every item then gets
            the Wilson interval instead of a zero-width one (module docstring).
    Returns:
        Interval(value, lo, hi). NaN values are rejected: an invalid item has no value to resample.
    """
    samples = [np.asarray(s, dtype=float) for s in strata if len(s) > 0]
    if not samples:
        raise ValueError("no items to compute an interval from")
    if any(np.isnan(s).any() for s in samples):
        raise ValueError("interval input holds NaN: pass only valid items")
    # The same arithmetic as cosa_score's macro average, so the point matches metrics.json.
    value = math.fsum(math.fsum(s) / len(s) for s in samples) / len(samples)
    # A stratum whose values are all equal (one item included) has the same mean in every
    # resample: it enters the statistic as a constant (scipy needs >= 2 values per sample).
    varying = tuple(s for s in samples if not np.all(s == s[0]))
    constant = math.fsum(float(s[0]) for s in samples if np.all(s == s[0]))
    if not varying:  # no spread anywhere: every resample is the value
        if share and value in (0.0, 1.0):
            return wilson_all_or_none(value, sum(len(s) for s in samples))
        return Interval(value, value, value)
    k = len(samples)

    def macro_mean(*resampled, axis=-1):
        return (np.sum([np.mean(r, axis=axis) for r in resampled], axis=0) + constant) / k

    res = bootstrap(varying, macro_mean, n_resamples=N_RESAMPLES, vectorized=True,
                    paired=False, confidence_level=CONFIDENCE, method="percentile",
                    rng=np.random.default_rng(seed))
    lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    # Floating-point noise can leave the point a hair outside a degenerate-looking interval.
    return Interval(value, min(lo, value), max(hi, value))


def interval(values: Sequence[float], seed: int, *, share: bool = False) -> Interval:
    """The mean of `values` with its 95% bootstrap interval (one stratum)."""
    return stratified_interval([values], seed, share=share)


def paired_difference(model: dict, baseline: dict, seed: int) -> tuple[Interval, int]:
    """The macro-mean difference model - baseline over paired items, and the number of pairs.

    Args:
        model, baseline: {(stratum, item_key): value}; only keys present in both are used.
        seed: the random state.
    Returns:
        (Interval of the difference, n_paired).
    """
    keys = sorted(set(model) & set(baseline))
    if not keys:
        raise ValueError("the two models share no valid items to pair")
    strata: dict = {}
    for key in keys:
        strata.setdefault(key[0], []).append(model[key] - baseline[key])
    return stratified_interval([strata[k] for k in sorted(strata)], seed), len(keys)
