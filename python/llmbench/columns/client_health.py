"""Is the client, not the server, setting the numbers? Every stage of a run carries the
client's own health, measured by the engine while the stage ran:

- `client_task_lag_p50_ms` / `_p99_ms` / `_max_ms`: how long a ready task waited before
  the client's runtime polled it, the delay every chunk timestamp suffers when the
  client is saturated;
- `client_cpu_s`, `client_cpu_share` (of `client_cores`): CPU the whole process used;
- `send_lag_*` (open loop): how late requests left against their schedule;
- `client_trustworthy` (1 or 0) and `client_health` (why not, in words).

When `llmbench calibrate` has measured this host, the stage's load is also compared with
the highest load the client sustained there within the tolerance
(`client_load_vs_calibration`: 1.0 is the calibrated limit). Stages that are not
trustworthy, or at ≥ 80% of the calibrated limit, raise a `ClientLimitWarning` and are
listed in the manifest's warnings.
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import warn

NEAR_LIMIT = 0.8
CALIBRATION_ENV = "LLMBENCH_CALIBRATION"
_suspended = threading.local()


class ClientLimitWarning(UserWarning):
    """A stage's load was near or beyond what the client measures faithfully on this host."""


def default_calibration_path() -> Path:
    """Where `llmbench calibrate` leaves this host's calibration for later runs
    (`$LLMBENCH_CALIBRATION`, else `$XDG_CACHE_HOME/llmbench/calibration.json`)."""
    if os.environ.get(CALIBRATION_ENV):
        return Path(os.environ[CALIBRATION_ENV])
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "llmbench" / "calibration.json"


@contextmanager
def calibrating() -> Iterator[None]:
    """While `calibrate` measures, runs are not compared with the old calibration."""
    _suspended.on = True
    try:
        yield
    finally:
        _suspended.on = False


def load_calibration(path: str | Path | None = None) -> dict[str, Any] | None:
    """The saved calibration of this host, or None when there is none (or it is unreadable,
    or a calibration is being measured)."""
    if getattr(_suspended, "on", False):
        return None
    p = Path(path) if path is not None else default_calibration_path()
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "max_streams_within" in data else None


def load_ratio(stage: Any, calibration: dict[str, Any]) -> float:
    """The stage's load against the calibrated limit (1.0 = at it; NaN if unknown): the larger
    of streams in flight over the most streams calibrated within tolerance at the nearest
    token interval, and output tokens/s over the highest calibrated token rate."""
    ratios = []
    limits = {
        float(k): v for k, v in calibration.get("max_streams_within", {}).items() if v is not None
    }
    streams = _num(stage.get("achieved_concurrency"))
    itl = _num(stage.get("itl_p50_ms"))
    if limits and math.isfinite(streams):
        # Shorter token intervals are harder: use the nearest calibrated one not longer
        # than the stage's (10% slack: a 5 ms server measures 4.98 ms), else the shortest.
        shorter = [k for k in limits if not math.isfinite(itl) or k <= itl * 1.1]
        key = max(shorter) if shorter else min(limits)
        ratios.append(streams / limits[key])
    max_tok = _num(calibration.get("max_tok_s_within"))
    tok = _num(stage.get("output_tok_s"))
    if math.isfinite(max_tok) and max_tok > 0 and math.isfinite(tok):
        ratios.append(tok / max_tok)
    return max(ratios) if ratios else math.nan


def _num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def check(summary: Any, calibration: dict[str, Any] | None) -> tuple[list[str], list[str]]:
    """Add `client_load_vs_calibration` to `summary` (in place) and give each stage one
    verdict: a stage whose load is beyond the calibrated limit is not trustworthy
    (`client_trustworthy` 0, the reason added to `client_health`), as is one the engine
    found so. Returns the messages of the stages the engine flagged, and those of the
    stages near or beyond the calibrated limit."""
    untrusted: list[str] = []
    by_calibration: list[str] = []
    ratios = []
    for i, stage in summary.iterrows():
        where = f"{stage.get('target', '')} stage {stage.get('stage', '?')}".strip()
        ratio = load_ratio(stage, calibration) if calibration else math.nan
        ratios.append(ratio)
        tolerance = calibration.get("tolerance_ms", 1) if calibration else 1
        load = f"load is {ratio:.0%} of what the client measured within {tolerance} ms on this host"
        reasons = []
        if _num(stage.get("client_trustworthy")) == 0.0:
            reasons.append(str(stage["client_health"]))
        if ratio > 1:
            # Beyond the limit: the same verdict in the columns as in the warning.
            reasons.append(load)
            summary.loc[i, "client_trustworthy"] = 0.0
            summary.loc[i, "client_health"] = "; ".join(r for r in reasons if r)
        if reasons:
            message = f"{where}: measurements not trustworthy: {'; '.join(reasons)}"
            if ratio > 1:
                by_calibration.append(
                    f"{message} (beyond the calibrated limit; see `llmbench calibrate`)"
                )
            else:
                untrusted.append(message)
        elif ratio >= NEAR_LIMIT:
            by_calibration.append(
                f"{where}: {load} (near the calibrated limit; see `llmbench calibrate`)"
            )
    if len(summary):
        summary["client_load_vs_calibration"] = ratios
    return untrusted, by_calibration


def warn_all(messages: list[str]) -> None:
    for m in messages:
        warn(m, ClientLimitWarning)
