"""Confidence intervals and tests for repeated runs and A/B comparisons.

The methods (docs/comparisons.md says why each fits its metric):

- **Across repeats** (`t_interval`): each repeat gives one value of a stage metric; the
  95% interval is Student's t over those values. Requests inside one run are not
  independent (they share the server's state, its batch and the machine's noise at that
  moment), so the spread that decides whether a rerun agrees is the spread between runs.
- **A percentile of per-request values** (`quantile_log_se`): the Maritz-Jarrett standard
  error of a sample quantile (Maritz & Jarrett 1978), on the log scale by the delta
  method. Distribution-free: latency distributions are skewed and often multi-modal. A
  percentile gets no interval until two order statistics bracket it with binomial
  probability 95% (about 380 requests for p99).
- **B against A per block** (`combine_blocks`): each repeat is a block in which A and B ran
  back to back on the same schedule; the per-block log ratios are combined by a
  DerSimonian-Laird random-effects model, so a spread between blocks larger than their own
  sampling error (drift, a noisy neighbour) widens the interval instead of passing for a
  difference.
- **Stage-level aggregates** (throughput, cost; `paired_log_ratio`): a paired t interval
  over the blocks' log ratios.

Every difference is a ratio B / A (a log difference), reported in percent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

#: The confidence level of every interval llmbench reports.
LEVEL = 0.95


def _scipy_stats() -> Any:
    from scipy import stats

    return stats


def _finite(values: Any) -> np.ndarray:
    a = np.asarray(values, dtype=float)
    return a[np.isfinite(a)]


@dataclass(frozen=True)
class Interval:
    """A mean over repeats with its interval and coefficient of variation (NaN where
    there are too few values: an interval needs two)."""

    mean: float
    low: float
    high: float
    cv: float
    n: int


def t_interval(values: Any, level: float = LEVEL) -> Interval:
    """Student's t interval of the mean of `values` (non-finite ones dropped).

    Example:
        >>> t_interval([10.0, 11.0, 12.0]).low
        7.51...
    """
    x = _finite(values)
    n = len(x)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, math.nan, 0)
    mean = float(x.mean())
    if n < 2:
        return Interval(mean, math.nan, math.nan, math.nan, n)
    sd = float(x.std(ddof=1))
    half = float(_scipy_stats().t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    cv = sd / abs(mean) if mean != 0 else math.nan
    return Interval(mean, mean - half, mean + half, cv, n)


def quantile_log_se(values: Any, q: float, level: float = LEVEL) -> tuple[float, float]:
    """The sample `q` quantile of `values` (> 0) and the standard error of its log: the
    Maritz-Jarrett estimate (the spread of the order statistics around the quantile,
    weighted by the beta distribution of its rank). (quantile, NaN) when there are too
    few values for the quantile: no two order statistics bracket it with binomial
    probability `level` (e.g. fewer than about 380 for p99).

    Example:
        >>> quantile_log_se(np.random.default_rng(0).lognormal(0, 0.2, 1000), 0.5)
        (1.00..., 0.007...)
    """
    x = np.sort(_finite(values))
    n = len(x)
    if n == 0:
        return math.nan, math.nan
    est = float(np.quantile(x, q))
    st = _scipy_stats()
    # Order statistics j < k (1-based) with P(X_(j) <= xi_q <= X_(k)) >= level.
    j = int(st.binom.ppf((1 - level) / 2, n, q))
    k = int(st.binom.ppf(0.5 + level / 2, n, q)) + 1
    m = int(q * n + 0.5)
    if j < 1 or k > n or not 1 <= m <= n - 1 or est <= 0:
        return est, math.nan
    edges = st.beta.cdf(np.arange(n + 1) / n, m, n - m)
    w = np.diff(edges)
    c1 = float((w * x).sum())
    c2 = float((w * x * x).sum())
    return est, math.sqrt(max(c2 - c1 * c1, 0.0)) / est


def mean_log_se(values: Any) -> tuple[float, float]:
    """The mean of `values` (> 0) and the standard error of its log (delta method)."""
    x = _finite(values)
    if len(x) < 2:
        return (float(x.mean()) if len(x) else math.nan), math.nan
    mean = float(x.mean())
    if mean <= 0:
        return mean, math.nan
    return mean, float(x.std(ddof=1)) / math.sqrt(len(x)) / mean


@dataclass(frozen=True)
class Difference:
    """B against A: `ratio` = B / A, its interval, the p-value of "no difference", and
    `se_log` (standard error of log B/A) for the power side."""

    ratio: float
    low: float
    high: float
    p_value: float
    se_log: float
    method: str

    @property
    def pct(self) -> tuple[float, float, float]:
        """The difference and its interval in percent of A."""
        return tuple(100 * (v - 1) for v in (self.ratio, self.low, self.high))  # type: ignore[return-value]


NO_DIFFERENCE = Difference(math.nan, math.nan, math.nan, math.nan, math.nan, "")


def _difference(d: float, se: float, df: float | None, level: float, method: str) -> Difference:
    """A log difference `d` with standard error `se` as a ratio, its interval and a
    two-sided p-value (normal, or Student's t with `df` degrees of freedom)."""
    if not (math.isfinite(d) and math.isfinite(se)):
        return Difference(math.exp(d) if math.isfinite(d) else math.nan, *[math.nan] * 4, method)
    st = _scipy_stats()
    dist = st.norm if df is None else st.t(df)
    crit = float(dist.ppf(0.5 + level / 2))
    if se == 0:
        p = 1.0 if d == 0 else 0.0
    else:
        p = float(2 * dist.sf(abs(d) / se))
    return Difference(math.exp(d), math.exp(d - crit * se), math.exp(d + crit * se), p, se, method)


def combine_blocks(estimates: list[tuple[float, float]]) -> tuple[float, float, float]:
    """Per block, (log ratio, its standard error); combined by DerSimonian-Laird random
    effects: (estimate, standard error, tau²: the spread between blocks beyond their
    sampling error, which widens the standard error)."""
    d = np.array([e for e, _ in estimates], dtype=float)
    v = np.array([s * s for _, s in estimates], dtype=float)
    if len(d) == 1:
        return float(d[0]), math.sqrt(v[0]), 0.0
    w = 1 / v
    fixed = float((w * d).sum() / w.sum())
    q = float((w * (d - fixed) ** 2).sum())
    c = float(w.sum() - (w * w).sum() / w.sum())
    tau2 = max(0.0, (q - (len(d) - 1)) / c) if c > 0 else 0.0
    w_re = 1 / (v + tau2)
    est = float((w_re * d).sum() / w_re.sum())
    se = math.sqrt(1 / float(w_re.sum()))
    return est, se, tau2


def per_request_difference(
    a_blocks: list[np.ndarray],
    b_blocks: list[np.ndarray],
    statistic: str,
    level: float = LEVEL,
) -> Difference:
    """B / A of a per-request statistic ("p50", "p99", "mean"), block by block (block `i`
    of A against block `i` of B); blocks too small for the statistic's bracket are pooled
    into one."""

    def log_se(x: np.ndarray) -> tuple[float, float]:
        if statistic == "mean":
            return mean_log_se(x)
        return quantile_log_se(x, int(statistic[1:]) / 100, level)

    def block_estimate(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
        (qa, sa), (qb, sb) = log_se(a), log_se(b)
        if not (qa > 0 and qb > 0):
            return math.nan, math.nan
        return math.log(qb) - math.log(qa), math.hypot(sa, sb)

    blocks = _pool_within(
        [block_estimate(a, b) for a, b in zip(a_blocks, b_blocks, strict=True)],
        [
            len(a) * len(b) / max(len(a) + len(b), 1)
            for a, b in zip(a_blocks, b_blocks, strict=True)
        ],
    )
    method = f"{statistic} per request, DerSimonian-Laird over blocks"
    if not blocks:
        return NO_DIFFERENCE
    if not all(math.isfinite(e) and math.isfinite(s) and s > 0 for e, s in blocks):
        # Too few requests in a block for the statistic, or no spread at all (ties: a
        # static batch answers all its requests at once). Pooling the blocks would hide
        # the blocks' own spread, so there is no interval; the point estimate stays.
        d = [e for e, _ in blocks if math.isfinite(e)]
        ratio = math.exp(float(np.mean(d))) if d else math.nan
        return Difference(ratio, *[math.nan] * 4, method)
    est, se, tau2 = combine_blocks(blocks)
    # Satterthwaite: the between-block part of the variance is estimated from k blocks
    # (k - 1 degrees of freedom); with no spread between blocks the reference is normal.
    k = len(blocks)
    between = tau2 / k
    df = se**4 / (between**2 / (k - 1)) if tau2 > 0 and k > 1 else None
    return _difference(est, se, df, level, method)


def _pool_within(
    blocks: list[tuple[float, float]], sizes: list[float]
) -> list[tuple[float, float]]:
    """Each block's standard error from the within-block spread pooled over all blocks
    (scaled by the block's effective size): one block's own estimate from a few dozen
    requests is noisy, and an underestimated one would pass for a difference."""
    ok = [(s, n) for (_, s), n in zip(blocks, sizes, strict=True) if math.isfinite(s) and n > 0]
    if len(ok) < 2:
        return blocks
    spread = float(np.mean([s * s * n for s, n in ok]))
    return [
        (d, math.sqrt(spread / n) if math.isfinite(s) and n > 0 else s)
        for (d, s), n in zip(blocks, sizes, strict=True)
    ]


def paired_log_ratio(a: Any, b: Any, level: float = LEVEL) -> Difference:
    """B / A of a stage-level value measured once per block (throughput, cost): Student's
    t over the blocks' log ratios (needs two blocks for an interval)."""
    a_arr, b_arr = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    ok = np.isfinite(a_arr) & np.isfinite(b_arr) & (a_arr > 0) & (b_arr > 0)
    d = np.log(b_arr[ok]) - np.log(a_arr[ok])
    method = "paired t over blocks"
    if len(d) == 0:
        return NO_DIFFERENCE
    if len(d) < 2:
        return Difference(math.exp(float(d[0])), *[math.nan] * 4, method)
    se = float(d.std(ddof=1)) / math.sqrt(len(d))
    return _difference(float(d.mean()), se, len(d) - 1, level, method)


def units_needed(
    units: float, se_log: float, diff_pct: float, power: float = 0.95, level: float = LEVEL
) -> float:
    """How many units (requests per target, or blocks) would resolve a true difference of
    `diff_pct` percent with probability `power`, from the standard error `se_log` observed
    with `units`: the standard error shrinks as 1 / sqrt(units).

    Example:
        >>> units_needed(100, 0.02, 4.0)
        316.5...
    """
    if not (math.isfinite(se_log) and se_log > 0 and units > 0 and diff_pct != 0):
        return math.nan
    st = _scipy_stats()
    z = float(st.norm.ppf(0.5 + level / 2) + st.norm.ppf(power))
    effect = abs(math.log1p(diff_pct / 100))
    return units * (z * se_log / effect) ** 2
