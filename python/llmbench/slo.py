"""Service-level objectives and goodput.

An SLO is a set of latency limits in milliseconds on `ttft`, `tpot`, `itl` and `e2e`
(from send; `ttft_sched` and `e2e_sched` measure from the scheduled time, which counts
client-side queueing too). Two views, both per stage:

- per request: a request is *good* when it succeeded and meets every limit (for `itl`,
  its slowest token). `goodput_req_s` = good requests / stage duration, and
  `good_fraction` = good / (succeeded + failed): failures are in the denominator.
- per stage: the stage *meets* the SLO when, for each limit, the chosen percentile of that
  metric over the stage (censored: a failed request counts as +inf) is within it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._core import InvalidArgumentError

METRICS = ("ttft", "tpot", "itl", "e2e", "ttft_sched", "e2e_sched")


@dataclass
class SLO:
    """Latency limits in ms, checked at a percentile per stage and per request.

    Example:
        >>> slo = llmbench.SLO(ttft_ms=500, tpot_ms=50, percentile=99)
    """

    ttft_ms: float | None = None
    tpot_ms: float | None = None
    itl_ms: float | None = None
    e2e_ms: float | None = None
    ttft_sched_ms: float | None = None
    e2e_sched_ms: float | None = None
    percentile: float = 99.0
    limits: dict[str, float] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.limits = {m: float(v) for m in METRICS if (v := getattr(self, f"{m}_ms")) is not None}
        if not self.limits:
            raise InvalidArgumentError("an SLO needs at least one limit (ttft_ms, tpot_ms, ...)")
        if any(not np.isfinite(v) or v <= 0 for v in self.limits.values()):
            raise InvalidArgumentError("SLO limits must be positive numbers of ms")
        if not 0 < self.percentile <= 100:
            raise InvalidArgumentError("the SLO percentile must be in (0, 100]")

    @classmethod
    def of(cls, value: SLO | Mapping[str, float]) -> SLO:
        """An SLO from itself or a dict like {"ttft_ms": 500, "percentile": 90}."""
        if isinstance(value, SLO):
            return value
        unknown = set(value) - {f"{m}_ms" for m in METRICS} - {"percentile"}
        if unknown:
            raise InvalidArgumentError(f"unknown SLO keys: {sorted(unknown)}")
        return cls(**value)  # type: ignore[arg-type]

    def describe(self) -> dict[str, Any]:
        return {"limits_ms": self.limits, "percentile": self.percentile}


def _max_itl_ms(requests: Any, chunks: dict[str, np.ndarray]) -> np.ndarray:
    """Each request's slowest per-token inter-token latency (NaN with < 2 tokens)."""
    offsets = chunks["offsets"].astype(np.int64)
    t = chunks["t_ns"].astype(np.int64)
    k = chunks["tokens"].astype(np.int64)
    out = np.full(len(requests), np.nan)
    for i in range(len(requests)):
        a, b = offsets[i], offsets[i + 1]
        if b - a >= 2:
            per_token = np.diff(t[a:b]) / np.maximum(k[a + 1 : b], 1) / 1e6
            out[i] = per_token.max()
        elif b - a == 1 and k[a] > 1:
            out[i] = 0.0
    return out


def request_metrics(
    requests: Any, chunks: dict[str, np.ndarray], metrics: Any = METRICS
) -> dict[str, np.ndarray]:
    """The per-request values the limits apply to, aligned with `requests`' rows."""
    cols = {m: requests[f"{m}_ms"].to_numpy(np.float64) for m in metrics if m != "itl"}
    if "itl" in metrics:
        cols["itl"] = _max_itl_ms(requests, chunks)
    return cols


def _censored_percentile(values: np.ndarray, n_failed: int, q: float) -> float:
    data = np.concatenate([values[np.isfinite(values)], np.full(n_failed, np.inf)])
    if not len(data):
        return float("nan")
    with np.errstate(invalid="ignore"):
        return float(np.percentile(data, q))


def stage_slo(
    requests: Any,
    vals: dict[str, np.ndarray],
    rows: np.ndarray,
    slo: SLO,
    duration_s: float,
) -> dict[str, Any]:
    """SLO columns for the stage made of `rows` (indices into `requests`), given each
    request's limited metrics (`request_metrics`)."""
    ok = requests["ok"].to_numpy(bool)[rows]
    kinds = requests["error_kind"].to_numpy(object)[rows]
    counted = ok | (kinds != "cancelled")
    good = ok.copy()
    out: dict[str, Any] = {}
    n_failed = int((~ok & counted).sum())
    met = True
    for metric, limit in slo.limits.items():
        v = vals[metric][rows]
        # A request without the value (e.g. one token: no TPOT) is not held to that limit.
        good &= ~(v > limit)
        p = _censored_percentile(v[ok], n_failed, slo.percentile)
        out[f"slo_{metric}_p{slo.percentile:g}_ms"] = p
        met &= bool(p <= limit)
    n_good = int(good.sum())
    denom = int(counted.sum())
    out["slo_met"] = met
    out["n_good"] = n_good
    out["good_fraction"] = n_good / denom if denom else float("nan")
    out["goodput_req_s"] = n_good / duration_s if duration_s > 0 else float("nan")
    return out


def add_slo_columns(results: Any, slo: SLO) -> None:
    """Add the SLO columns to every stage of `results.summary`, in place."""
    import pandas as pd

    req = results._all
    vals = request_metrics(req, results._chunks, list(slo.limits))
    extra = []
    for _, row in results.summary.iterrows():
        mask = (
            (req["target"] == row["target"]).to_numpy()
            & (req["stage"] == row["stage"]).to_numpy()
            & ~req["warmup"].to_numpy(bool)
        )
        extra.append(stage_slo(req, vals, mask.nonzero()[0], slo, float(row["duration_s"])))
    cols = pd.DataFrame(extra, index=results.summary.index)
    results.summary = pd.concat([results.summary, cols], axis=1)
    results.manifest["slo"] = slo.describe()
