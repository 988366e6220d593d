"""Capacity search: the highest batch size, or request rate, at which a target meets an SLO.

Bracketing then bisection. Every probed point runs `trials` repeated stages; a point
passes when at least `pass_fraction` of its trials meet the SLO (`slo_met`, see
`llmbench.slo`). The search doubles from `start` until a point fails (or `limit`), then
bisects between the highest passing and the lowest failing point until they are adjacent
(batch sizes) or within `tolerance` of each other (rates). The report keeps every trial.

Confidence: at each probed point, each limited metric's stage percentile (e.g. TTFT p99)
is averaged over the trials, and `p_slo_holds` is the probability that its mean over runs
is within the limit (Student's t over trials: the posterior under a flat prior), taken for
the limit nearest to failing. The capacity's 95% interval runs from the highest point
where the SLO holds with probability >= 97.5% to the lowest where it holds with <= 2.5%.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from .. import _core, _deps
from .._core import InvalidArgumentError
from ..slo import SLO
from ..stats import LEVEL
from ..sweep import run_sweep
from ..sweep_options import default
from ..targets import Target


@dataclass
class CapacityResult:
    """What a capacity search found.

    Attributes:
        capacity: the highest passing batch size or rate (None if even `start` failed).
        first_failing: the lowest failing point above it (None if `limit` passed).
        p_slo_holds: the probability the SLO holds at `capacity` (NaN with one trial).
        capacity_ci_low, capacity_ci_high: the 95% interval: the highest probed point
            where the SLO holds with probability >= 97.5%, and the lowest where it holds
            with probability <= 2.5% (None where no probed point is that clear).
        mode: "batch_size" or "rate".
        steps: one dict per probed point, in order: value, trials passed, passed.
        trials: every trial's summary row (with the SLO columns), as a DataFrame.
        statement: the result in words, with the evidence.

    Example:
        >>> cap = llmbench.find_capacity(target, {"ttft_ms": 500}, mode="batch_size")
        >>> cap.capacity, cap.statement
    """

    capacity: float | None
    first_failing: float | None
    mode: str
    slo: dict[str, Any]
    steps: list[dict[str, Any]] = field(default_factory=list)
    trials: Any = None
    statement: str = ""
    p_slo_holds: float = math.nan
    capacity_ci_low: float | None = None
    capacity_ci_high: float | None = None


def find_capacity(
    target: Target,
    slo: SLO | dict[str, float],
    *,
    mode: Literal["batch_size", "rate"] = "rate",
    start: float = 1,
    limit: float | None = None,
    trials: int = 3,
    pass_fraction: float = 2 / 3,
    tolerance: float = 0.05,
    requests_per_trial: int | None = None,
    trial_duration_s: float | None = None,
    **sweep_kwargs: Any,
) -> CapacityResult:
    """Search the highest batch size (`mode="batch_size"`) or request rate (`"rate"`,
    Poisson arrivals unless `arrival=` says otherwise) meeting `slo`.

    Takes `run_sweep`'s settings (`llmbench.SweepOptions`: `max_tokens`, `prompts`,
    `warmup_requests`, ...) with their defaults; each trial is one stage, so
    `requests_per_trial` and `trial_duration_s` stand for `requests_per_stage` and
    `stage_duration_s`.

    Example:
        >>> res = llmbench.find_capacity(target, {"ttft_ms": 500, "percentile": 90},
        ...                              mode="rate", start=1, limit=64)
        >>> res.capacity, res.statement
    """
    spec = SLO.of(slo)
    if mode not in ("batch_size", "rate"):
        raise InvalidArgumentError("mode must be 'batch_size' or 'rate'")
    if trials < 1 or not 0 < pass_fraction <= 1 or start <= 0:
        raise InvalidArgumentError("trials >= 1, 0 < pass_fraction <= 1 and start > 0")
    if mode == "batch_size":
        start = int(start)
        if start < 1:
            raise InvalidArgumentError("batch sizes start at 1")
    if sweep_kwargs.get("input_lengths") is not None:
        # Each trial is one stage at one load; a sweep over input lengths is several.
        raise InvalidArgumentError("capacity searches at one input length")
    needed = math.ceil(trials * pass_fraction)
    rows: list[Any] = []
    steps: list[dict[str, Any]] = []
    passes: dict[float, bool] = {}
    warm = [True]

    def probe(x: float) -> bool:
        if x in passes:
            return passes[x]
        kwargs = dict(sweep_kwargs)
        kwargs.setdefault("progress", False)
        # Warm up before the first trial only (with the sweep's default unless given).
        kwargs["warmup_requests"] = (
            kwargs.get("warmup_requests", default("warmup_requests")) if warm[0] else 0
        )
        warm[0] = False
        if mode == "batch_size":
            n = requests_per_trial or _core.default_requests_for(int(x))
            res = run_sweep(
                target,
                batch_sizes=[int(x)] * trials,
                requests_per_stage=n,
                stage_duration_s=trial_duration_s,
                slo=spec,
                **kwargs,
            )
        else:
            n = requests_per_trial or max(int(x * 5), 16)
            res = run_sweep(
                target,
                rates=[float(x)] * trials,
                requests_per_stage=n,
                stage_duration_s=trial_duration_s,
                slo=spec,
                **kwargs,
            )
        summary = res.summary.assign(probe=x, trial=range(len(res.summary)))
        rows.append(summary)
        n_pass = int(summary["slo_met"].sum())
        ok = n_pass >= needed
        steps.append(
            {
                "value": x,
                "trials_passed": n_pass,
                "trials": trials,
                "passed": ok,
                "p_slo_holds": p_slo_holds(summary, spec),
            }
        )
        passes[x] = ok
        return ok

    good: float | None = None
    bad: float | None = None
    x: float = start
    # Bracket: double until a point fails or the limit passes.
    while True:
        if limit is not None and x > limit:
            x = limit
        if probe(x):
            good = x
            if limit is not None and x >= limit:
                break
            x = x * 2
        else:
            bad = x
            break
    # Bisect between the highest pass and the lowest fail.
    if good is not None and bad is not None:
        while True:
            if mode == "batch_size":
                if bad - good <= 1:
                    break
                mid: float = (int(good) + int(bad)) // 2
            else:
                if (bad - good) <= tolerance * good:
                    break
                mid = (good + bad) / 2
            if probe(mid):
                good = mid
            else:
                bad = mid
    pd = _deps.pandas()
    trials_df = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
    unit = "requests in flight" if mode == "batch_size" else "req/s"
    low, high = _interval(steps, good)
    p_at = next((s["p_slo_holds"] for s in steps if s["value"] == good), math.nan)
    if good is None:
        statement = (
            f"no capacity found: {start:g} {unit} already failed the SLO "
            f"({steps[0]['trials_passed']}/{trials} trials passed)"
        )
    else:
        g = next(s for s in steps if s["value"] == good)
        statement = f"capacity {good:g} {unit}: it passed {g['trials_passed']}/{trials} trials"
        if bad is not None:
            b = next(s for s in steps if s["value"] == bad)
            statement += (
                f"; {bad:g} {unit} passed only {b['trials_passed']}/{trials} "
                f"(a point passes with at least {needed}/{trials})"
            )
        else:
            statement += f"; the limit {limit:g} {unit} was reached"
        statement += "; " + _confidence_text(p_at, low, high, unit)
    return CapacityResult(
        capacity=good,
        first_failing=bad,
        mode=mode,
        slo=spec.describe(),
        steps=steps,
        trials=trials_df,
        statement=statement,
        p_slo_holds=p_at,
        capacity_ci_low=low,
        capacity_ci_high=high,
    )


def p_slo_holds(trials: Any, slo: SLO) -> float:
    """The probability that the SLO holds at a point, from its trials' summary rows: per
    limit, P(mean over runs of the stage percentile <= limit) under Student's t over the
    trials; the smallest over the limits (the one nearest to failing). NaN with one trial.

    Example:
        >>> p_slo_holds(cap.trials[cap.trials.probe == 16], llmbench.SLO(ttft_ms=500))
    """
    from scipy import stats

    worst = math.inf
    for metric, limit in slo.limits.items():
        cols = [c for c in trials.columns if c.startswith(f"slo_{metric}_p") and c.endswith("_ms")]
        if not cols:
            return math.nan
        x = trials[cols[0]].to_numpy(dtype=float)
        if len(x) < 2:
            return math.nan
        if not np.isfinite(x).all():
            # A censored percentile (failures beyond it) is infinite: the limit is missed.
            p = 0.0
        else:
            mean, se = float(x.mean()), float(x.std(ddof=1)) / math.sqrt(len(x))
            if se == 0:
                p = 1.0 if mean <= limit else 0.0
            else:
                p = float(stats.t.cdf((limit - mean) / se, len(x) - 1))
        worst = min(worst, p)
    return worst if math.isfinite(worst) else math.nan


def _interval(steps: list[dict[str, Any]], good: float | None) -> tuple[float | None, float | None]:
    """The capacity's interval from the probed points (see the module's docstring)."""
    tail = (1 - LEVEL) / 2
    ordered = sorted(steps, key=lambda s: s["value"])
    low = None
    for s in ordered:
        if good is not None and s["value"] > good:
            break
        if s["p_slo_holds"] >= 1 - tail:
            low = s["value"]
        else:
            break
    high = next(
        (
            s["value"]
            for s in ordered
            if (good is None or s["value"] > good) and s["p_slo_holds"] <= tail
        ),
        None,
    )
    return low, high


def _confidence_text(p: float, low: float | None, high: float | None, unit: str) -> str:
    if not math.isfinite(p):
        return "no interval (needs 2 trials or more per point)"
    lo = f"{low:g}" if low is not None else "below the lowest point probed"
    hi = f"below {high:g}" if high is not None else "above the highest point probed"
    return f"the SLO holds there with probability {p:.2f}; {LEVEL:.0%} interval {lo} … {hi} {unit}"
