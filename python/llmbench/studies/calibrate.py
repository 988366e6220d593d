"""How far this machine's client timestamps are from the truth: the scripted server records
when it really handed each chunk to its connection, on the client's clock, and `calibrate`
compares every client record against it at rising concurrency and token rate.

This is the client's own error on this host (the server's lateness does not count: both
sides are compared at the same chunk), and the highest load it sustains within a tolerance.
The server runs in this process, so at high load the two share the CPU as they would on a
busy benchmark host.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import _deps
from .._core import InvalidArgumentError
from ..cluster import RayCluster, connect, start_workers
from ..columns.client_health import calibrating, default_calibration_path
from ..sim import SimServer
from ..sweep import run_sweep


@dataclass
class Calibration:
    """What `calibrate` measured.

    Attributes:
        table: one row per (token interval, concurrency): achieved output tok/s, the
            client's TTFT error and per-chunk lag against the truth (p50, p99, max, ms),
            its send lag (p50, p99), the health signals a real run reports
            (`client_task_lag_p99_ms`, `client_cpu_share`), and whether both error p99s
            are within the tolerance.
        max_streams_within: per token interval (ms), the highest concurrency within it.
        max_tok_s_within: the highest output token rate measured within it.
        statement: the result in words.

    Example:
        >>> cal = llmbench.calibrate(concurrency=(1, 64))
        >>> cal.table[["concurrency", "output_tok_s", "ttft_err_p99_ms", "within"]]
    """

    table: Any
    tolerance_ms: float
    max_streams_within: dict[float, int | None] = field(default_factory=dict)
    max_tok_s_within: float | None = None
    statement: str = ""
    host: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (what `llmbench calibrate --out` writes)."""
        return {
            "host": self.host,
            "tolerance_ms": self.tolerance_ms,
            "max_streams_within": {str(k): v for k, v in self.max_streams_within.items()},
            "max_tok_s_within": self.max_tok_s_within,
            "statement": self.statement,
            "table": json.loads(self.table.to_json(orient="records")),
        }


def client_errors(res: Any, truth: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per request TTFT error and per chunk lag (client arrival − server send), in ms, for
    the successful measured requests of `res` matched to the scripted server's `truth`
    (`SimServer.take_truth()`).

    Example:
        >>> ttft_err, lags = client_errors(res, sim.take_truth())
    """
    by_id = truth.set_index("request_id")
    offsets, times = res.chunk_arrays["offsets"], res.chunk_arrays["t_ns"]
    ttft, lags = [], []
    for i, row in res.all_requests.reset_index(drop=True).iterrows():
        if row["warmup"] or not row["ok"] or row["id"] not in by_id.index:
            continue
        sent = by_id.loc[row["id"], "chunk_t_ns"].astype(np.int64)
        got = times[int(offsets[i]) : int(offsets[i + 1])].astype(np.int64)
        if len(sent) != len(got) or not len(got):
            continue
        lag = (got - sent) / 1e6
        ttft.append(lag[0])
        lags.append(lag)
    if not ttft:
        return np.zeros(0), np.zeros(0)
    return np.asarray(ttft), np.concatenate(lags)


def calibrate(
    concurrency: Sequence[int] = (1, 16, 64, 256),
    itl_ms: Sequence[float] = (10.0, 2.0),
    *,
    ttft_ms: float = 50.0,
    tokens: int = 64,
    requests_per_point: int | None = None,
    tolerance_ms: float = 1.0,
) -> Calibration:
    """Measure the client's own timing error on this host against the scripted server's
    truth, for each token interval × concurrency (`max(4 × concurrency, 32)` requests of
    `tokens` tokens per point unless `requests_per_point`).

    Example:
        >>> cal = llmbench.calibrate(concurrency=(1, 16, 64), itl_ms=(10,))
        >>> cal.statement
    """
    if not concurrency or min(concurrency) < 1 or not itl_ms or min(itl_ms) <= 0:
        raise InvalidArgumentError("concurrency must be ≥ 1 and itl_ms > 0")
    pd = _deps.pandas()
    rows = []
    for itl in itl_ms:
        for c in sorted(int(x) for x in concurrency):
            n = requests_per_point or max(4 * c, 32)
            with (
                SimServer(
                    ttft_ms=ttft_ms, itl_ms=itl, max_batch=max(c, 1) * 2, record_truth=True
                ) as sim,
                calibrating(),
            ):
                res = run_sweep(
                    sim.target("completions", name="calibration"),
                    batch_sizes=[c],
                    requests_per_stage=n,
                    max_tokens=tokens,
                    progress=False,
                    server_metrics=False,
                )
                ttft_err, lags = client_errors(res, sim.take_truth())
            s = res.summary.iloc[0]

            def pct(a: np.ndarray, q: float) -> float:
                return float(np.percentile(a, q)) if len(a) else float("nan")

            row = {
                "itl_ms": float(itl),
                "concurrency": c,
                "requests_ok": int(s["n_ok"]),
                "output_tok_s": float(s["output_tok_s"]),
                "ttft_err_p50_ms": pct(ttft_err, 50),
                "ttft_err_p99_ms": pct(ttft_err, 99),
                "ttft_err_max_ms": float(ttft_err.max()) if len(ttft_err) else float("nan"),
                "chunk_lag_p50_ms": pct(lags, 50),
                "chunk_lag_p99_ms": pct(lags, 99),
                "chunk_lag_max_ms": float(lags.max()) if len(lags) else float("nan"),
                "checked_requests": len(ttft_err),
                # The client's own health signals at this load, as a real run reports them.
                "send_lag_p50_ms": float(s["send_lag_p50_ms"]),
                "send_lag_p99_ms": float(s["send_lag_p99_ms"]),
                "client_task_lag_p99_ms": float(s["client_task_lag_p99_ms"]),
                "client_cpu_share": float(s["client_cpu_share"]),
            }
            row["within"] = bool(
                row["checked_requests"] > 0
                and row["ttft_err_p99_ms"] <= tolerance_ms
                and row["chunk_lag_p99_ms"] <= tolerance_ms
            )
            rows.append(row)
    table = pd.DataFrame(rows)
    best: dict[float, int | None] = {}
    for itl, g in table.groupby("itl_ms"):
        ok = g[g["within"]]
        best[float(itl)] = int(ok["concurrency"].max()) if len(ok) else None
    within = table[table["within"]]
    max_tok = float(within["output_tok_s"].max()) if len(within) else None
    parts = [
        f"{best[k]} streams at {k:g} ms/token" if best[k] else f"no point at {k:g} ms/token"
        for k in best
    ]
    statement = (
        f"within {tolerance_ms:g} ms (p99 TTFT error and chunk lag): "
        + ", ".join(parts)
        + (f"; up to {max_tok:,.0f} output tokens/s" if max_tok else "")
    )
    host = {"hostname": platform.node(), "platform": platform.platform()}
    return Calibration(table, tolerance_ms, best, max_tok, statement, host)


def _write(cal: Calibration, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(cal.to_dict(), indent=1))
    return path


def save_default(cal: Calibration) -> Path:
    """Keep `cal` where later runs on this host look for it (see `client_health`)."""
    return _write(cal, default_calibration_path())


def save(cal: Calibration, out_dir: str | Path) -> Path:
    """Write `calibration.json` into `out_dir`."""
    return _write(cal, Path(out_dir) / "calibration.json")


def _calibration_here(**kwargs: Any) -> dict[str, Any]:
    return calibrate(**kwargs).to_dict()


def calibrate_workers(cluster: RayCluster, **kwargs: Any) -> list[dict[str, Any]]:
    """`calibrate(**kwargs)` on every worker's host, one worker at a time (so workers
    sharing a host do not disturb each other's measurement): each calibration's dict with
    `worker` and `hostname`."""
    ray = connect(cluster)
    workers = start_workers(ray, cluster)
    try:
        out = []
        for w in workers:
            ran = ray.get(w.call.remote(_calibration_here, kwargs))
            out.append({**ran["value"], "worker": ran["worker"], "hostname": ran["hostname"]})
        return out
    finally:
        for w in workers:
            ray.kill(w)
