"""Service-level objectives and goodput.

An SLO is a set of latency limits in milliseconds on `ttft`, `tpot`, `itl` and `e2e`
(from send; `ttft_sched` and `e2e_sched` measure from the scheduled time, which counts
client-side queueing too). Two views, both per stage:

- per request: a request is *good* when it succeeded and meets every limit (for `itl`,
  its slowest token). `goodput_req_s` = good requests / stage duration, and
  `good_fraction` = good / (succeeded + failed): failures are in the denominator.
- per stage: the stage *meets* the SLO when, for each limit, the chosen percentile of that
  metric over the stage (censored: a failed request counts as +inf) is within it.

The engine computes the columns as each stage ends (`src/metrics/slo.rs`), and checks
the limits; this class is how Python states them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import _core
from ._core import InvalidArgumentError
from ._settings import SLO_DEFAULTS

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
    percentile: float = SLO_DEFAULTS["percentile"]
    limits: dict[str, float] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.limits = {m: float(v) for m in METRICS if (v := getattr(self, f"{m}_ms")) is not None}
        _core.check_slo(self.to_engine())

    def to_engine(self) -> dict[str, float]:
        """The engine's `Slo`: the limits given and the percentile."""
        return {**{f"{m}_ms": v for m, v in self.limits.items()}, "percentile": self.percentile}

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
