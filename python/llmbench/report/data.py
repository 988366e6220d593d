"""What the report's plots draw, bounded in size whatever the run's length.

Every function here takes a `Results` (or its frames) and returns small pandas frames:
quantiles instead of every latency, time bins instead of every request, a seeded sample
instead of every point. `LIMITS` are the bounds, and the page states them beside each plot,
so a 100,000-request run's report is as small as a 100-request one's (docs/report.md).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _deps
from ..columns.kv import GIB
from ..columns.telemetry import server_kv_by_target
from ..plots import stage_name
from ..run_data import turn_table

#: Latency quantiles drawn per stage: 0–99% in 1% steps, 99.1–99.9% in 0.1% steps, then
#: 99.95%, 99.99% and the maximum; the tail is where servers differ, so it is kept dense.
CDF_LEVELS = np.unique(
    np.concatenate([np.arange(0, 100) / 100, 0.99 + np.arange(1, 10) / 1000, [0.9995, 0.9999, 1.0]])
)

#: The bounds on what a plot carries (per target): time bins, sampled points, and points
#: of a telemetry series.
LIMITS = {"time_bins": 300, "sample_points": 2_000, "series_points": 1_500}

#: Runs with more records than this are drawn from a systematic sample of them (every
#: k-th record of each file), so that writing the report of a run of ten million requests
#: reads a bounded number of rows; the page says so, and the tables stay exact.
RECORDS_LIMIT = 250_000

#: Per-request latency distributions drawn as CDFs: (column, label).
CDF_METRICS = (
    ("ttft_ms", "TTFT (ms)"),
    ("tpot_ms", "TPOT (ms per output token)"),
    ("e2e_ms", "end-to-end latency (ms)"),
)

#: The columns the report reads from the records (never the whole record set).
REQUEST_COLUMNS = [
    "stage",
    "repeat",
    "batch_size",
    "ok",
    "error_kind",
    "error",
    "t_sent_ns",
    "t_done_ns",
    "ttft_ms",
    "tpot_ms",
    "e2e_ms",
    "n_out",
]


def stage_label(row: dict[str, Any]) -> str:
    """How a stage is named on the page: its batch size, or its target rate."""
    return stage_name(row) or f"stage {row.get('stage')}"


def stage_columns(frame: Any) -> list[str]:
    """The columns that say where a stage sits: `batch_size` (closed loop) and/or
    `target_rate` (open loop), whichever the run has values in."""
    return [c for c in ("batch_size", "target_rate") if c in frame and frame[c].notna().any()]


def stage_labels(summary: Any) -> dict[tuple[str, int], str]:
    """(target, stage index) -> the stage's name on the page."""
    if not len(summary) or "stage" not in summary:
        return {}
    return {
        (str(r["target"]), int(r["stage"])): stage_label(r)
        for r in summary.to_dict(orient="records")
    }


def sample_step(n_records: int) -> int:
    """1 for runs of up to `RECORDS_LIMIT` records, else the k of "every k-th record"."""
    return max(1, -(-n_records // RECORDS_LIMIT))


def requests_frame(results: Any, every: int = 1) -> Any:
    """The measured requests' columns the report needs (every `every`-th of them), read
    from the record files (or the frame already in memory), with the `turn` column when
    the run had conversations."""
    pd = _deps.pandas()
    for columns in ([*REQUEST_COLUMNS, "turn", "n_in"], REQUEST_COLUMNS):
        try:
            return results.read_requests(columns, every=every)
        except (KeyError, ValueError):
            continue
    # A run with no record (interrupted before its first request): empty columns.
    return pd.DataFrame({c: [] for c in ["target", *REQUEST_COLUMNS]})


def latency_cdfs(requests: Any, labels: dict[tuple[str, int], str]) -> Any:
    """Per target, stage and metric: the quantiles `CDF_LEVELS` of the successful
    requests (repeats pooled), long format: `target`, `stage`, `stage_label`, `metric`,
    `q` (0..1), `value`, `n`."""
    pd = _deps.pandas()
    parts = []
    ok = requests[requests["ok"].astype(bool)] if len(requests) else requests
    for (target, stage), g in ok.groupby(["target", "stage"], sort=True) if len(ok) else []:
        for col, _ in CDF_METRICS:
            v = pd.to_numeric(g[col], errors="coerce").to_numpy(float)
            v = v[np.isfinite(v)]
            if not len(v):
                continue
            parts.append(
                pd.DataFrame(
                    {
                        "target": target,
                        "stage": int(stage),
                        "stage_label": labels.get((str(target), int(stage)), f"stage {stage}"),
                        "metric": col,
                        "q": CDF_LEVELS,
                        "value": np.quantile(v, CDF_LEVELS),
                        "n": len(v),
                    }
                )
            )
    return pd.concat(parts, ignore_index=True) if parts else None


def requests_over_time(requests: Any, t0: int, every: int = 1) -> Any:
    """Per target, the run cut into at most `LIMITS["time_bins"]` equal bins: requests
    completed and failed per second, output tokens per second (by completion time), and
    requests in flight at each bin's end. Columns `target`, `t_s` (bin end), `done_per_s`,
    `failed_per_s`, `out_tok_s`, `in_flight`. From a sample of every `every`-th request,
    each counts `every` times."""
    pd = _deps.pandas()
    parts = []
    for target, g in requests.groupby("target", sort=False) if len(requests) else []:
        sent = (g["t_sent_ns"].to_numpy(np.int64) - t0) / 1e9
        done = (g["t_done_ns"].to_numpy(np.int64) - t0) / 1e9
        lo, hi = float(sent.min()), float(max(done.max(), sent.max()))
        # Enough requests per bin (about five) for a rate to mean something.
        n_bins = int(min(LIMITS["time_bins"], max(1, len(g) // 5)))
        edges = np.linspace(lo, hi if hi > lo else lo + 1e-3, n_bins + 1)
        width = float(edges[1] - edges[0])
        ok = g["ok"].to_numpy(bool)
        n_out = pd.to_numeric(g["n_out"], errors="coerce").fillna(0).to_numpy(float)
        done_n, _ = np.histogram(done[ok], edges)
        fail_n, _ = np.histogram(done[~ok], edges)
        tok, _ = np.histogram(done, edges, weights=n_out)
        ends = edges[1:]
        in_flight = np.searchsorted(np.sort(sent), ends, "right") - np.searchsorted(
            np.sort(done), ends, "right"
        )
        parts.append(
            pd.DataFrame(
                {
                    "target": target,
                    "t_s": ends,
                    "done_per_s": every * done_n / width,
                    "failed_per_s": every * fail_n / width,
                    "out_tok_s": every * tok / width,
                    "in_flight": every * in_flight,
                }
            )
        )
    return pd.concat(parts, ignore_index=True) if parts else None


def ttft_sample(requests: Any, t0: int, labels: dict[tuple[str, int], str], seed: int = 0) -> Any:
    """Per target, at most `LIMITS["sample_points"]` successful requests drawn at random
    (seeded): send time `t_s`, `ttft_ms`, `stage_label`; for the TTFT-over-time scatter."""
    pd = _deps.pandas()
    rng = np.random.default_rng(seed)
    parts = []
    ok = requests[requests["ok"].astype(bool)] if len(requests) else requests
    for target, g in ok.groupby("target", sort=False) if len(ok) else []:
        if len(g) > LIMITS["sample_points"]:
            g = g.iloc[np.sort(rng.choice(len(g), LIMITS["sample_points"], replace=False))]
        parts.append(
            pd.DataFrame(
                {
                    "target": target,
                    "t_s": (g["t_sent_ns"].to_numpy(np.int64) - t0) / 1e9,
                    "ttft_ms": pd.to_numeric(g["ttft_ms"], errors="coerce").to_numpy(float),
                    "stage_label": [
                        labels.get((str(target), int(s)), f"stage {s}") for s in g["stage"]
                    ],
                }
            )
        )
    return pd.concat(parts, ignore_index=True) if parts else None


def by_turn(requests: Any) -> Any:
    """TTFT and context length per conversation turn and target (`results.turn_table`);
    None for runs without turns."""

    return turn_table(requests, ["target", "turn"])


def _bucket(t: np.ndarray, y: np.ndarray, how: str) -> tuple[np.ndarray, np.ndarray]:
    """At most `LIMITS["series_points"]` points of a time series: per equal-width time
    bucket, its `how` ("max" or "mean") at the bucket's last time. Memory and KV use are
    bucketed by their maximum, so a peak is never averaged away."""
    n = LIMITS["series_points"]
    if len(t) <= n:
        return t, y
    edges = np.linspace(t.min(), t.max(), n + 1)
    idx = np.clip(np.searchsorted(edges, t, "right") - 1, 0, n - 1)
    pd = _deps.pandas()
    frame = pd.DataFrame({"b": idx, "t": t, "y": y}).groupby("b")
    agg = frame["y"].max() if how == "max" else frame["y"].mean()
    return frame["t"].max().to_numpy(), agg.to_numpy()


def gpu_series(results: Any, t0: int) -> Any:
    """Per GPU, memory used (GiB, bucket maximum), utilisation (%) and power (W) (bucket
    means), bounded to `LIMITS["series_points"]`; None when no GPU was sampled."""
    gpu = results.gpu
    if gpu is None or not len(gpu) or "mem_used_bytes" not in gpu:
        return None
    pd = _deps.pandas()
    parts = []
    for index, g in gpu.groupby("gpu", sort=True):
        t = (g["t_ns"].to_numpy(np.int64) - t0) / 1e9
        frame = {"gpu": int(index)}
        tm, mem = _bucket(t, g["mem_used_bytes"].to_numpy(float) / GIB, "max")
        frame["t_s"] = tm
        frame["mem_used_gib"] = mem
        for col in ("util_gpu_pct", "power_w"):
            if col in g:
                frame[col] = _bucket(t, pd.to_numeric(g[col]).to_numpy(float), "mean")[1]
        total = g["mem_total_bytes"].dropna() if "mem_total_bytes" in g else []
        frame["mem_total_gib"] = float(total.iloc[0]) / GIB if len(total) else np.nan
        parts.append(pd.DataFrame(frame))
    return pd.concat(parts, ignore_index=True)


def kv_series(results: Any, t0: int, client_estimate: bool = True) -> Any:
    """KV-cache use over time per target, long format `target`, `source`
    ("server" from its `/metrics`, "client estimate" from the requests in flight and
    their chunks: only with `client_estimate`, as it reads every chunk), `t_s`, `value`,
    `unit` (GiB with a model architecture, else tokens); None when there is neither."""
    pd = _deps.pandas()
    arch = results.manifest.get("model_arch")
    scale, unit = (arch["bytes_per_token"] / GIB, "GiB") if arch else (1.0, "tokens")
    parts = []
    scrape = (results.manifest.get("telemetry") or {}).get("scrape", {})
    servers = results.manifest.get("servers", {})
    for target, kv in server_kv_by_target(results.server_metrics, scrape, servers).items():
        t = (kv["t_ns"].to_numpy(np.int64) - t0) / 1e9
        if "kv_tokens" in kv:
            y, u = kv["kv_tokens"].to_numpy(float) * scale, unit
        elif "kv_bytes" in kv:
            y, u = kv["kv_bytes"].to_numpy(float) / GIB, "GiB"
        else:
            continue
        t, y = _bucket(t, y, "max")
        parts.append(pd.DataFrame({"target": target, "source": "server", "t_s": t, "value": y}))
        parts[-1]["unit"] = u
    try:
        targets = list(dict.fromkeys(results.summary["target"])) if len(results.summary) else []
        for target in targets if client_estimate else []:
            grid, tokens = client_kv_on_grid(results.records, target, t0)
            if grid is None:
                continue
            t, y = _bucket((grid - t0) / 1e9, tokens * scale, "max")
            frame = pd.DataFrame(
                {"target": target, "source": "client estimate", "t_s": t, "value": y}
            )
            frame["unit"] = unit
            parts.append(frame)
    except (KeyError, ValueError):
        pass
    return pd.concat(parts, ignore_index=True) if parts else None


#: Instants per target at which the client's KV estimate is evaluated for the report
#: (then reduced to `LIMITS["series_points"]` by the maximum of each bucket).
KV_GRID_POINTS = 6_000


def client_kv_on_grid(records: Any, target: str, t0: int) -> tuple[Any, Any]:
    """The client's estimate of the KV tokens `target`'s requests hold (prompt from send
    to end, each output chunk from its arrival: `columns.kv.inflight_timeline`'s rule),
    evaluated at `KV_GRID_POINTS` evenly spaced instants, from the records read a piece
    at a time (`RecordSource.pieces`): memory bounded by a piece and the grid, whatever
    the run's length. Returns (instants in ns, tokens), or (None, None) without records."""
    cols = ["t_sent_ns", "t_done_ns", "n_in"]
    lo = hi = None
    for frame, _ in records.pieces(cols, [target], warmup=None, chunks=False):
        if len(frame):
            sent, done = (
                frame["t_sent_ns"].to_numpy(np.int64),
                frame["t_done_ns"].to_numpy(np.int64),
            )
            lo = int(sent.min()) if lo is None else min(lo, int(sent.min()))
            hi = int(done.max()) if hi is None else max(hi, int(done.max()))
    if lo is None or hi is None or hi <= lo:
        return None, None
    grid = np.linspace(lo, hi, KV_GRID_POINTS).astype(np.int64)
    # A difference array over the grid: what a request adds from the first instant at or
    # after an event, and takes back at its end; the running sum is the estimate.
    delta = np.zeros(len(grid) + 1, dtype=np.float64)

    def at(t: Any) -> Any:
        return np.searchsorted(grid, t, side="left")

    pd = _deps.pandas()
    for frame, chunks in records.pieces(cols, [target], warmup=None):
        if not len(frame):
            continue
        sent, done = frame["t_sent_ns"].to_numpy(np.int64), frame["t_done_ns"].to_numpy(np.int64)
        n_in = pd.to_numeric(frame["n_in"], errors="coerce").fillna(0).to_numpy(np.float64)
        offsets = chunks["offsets"].astype(np.int64)
        tokens = chunks["tokens"].astype(np.float64)
        owner = np.repeat(np.arange(len(frame)), np.diff(offsets))
        held = np.bincount(owner, weights=tokens, minlength=len(frame))
        np.add.at(delta, at(sent), n_in)
        np.add.at(delta, at(chunks["t_ns"].astype(np.int64)), tokens)
        np.add.at(delta, at(done), -(n_in + held))
    return grid, np.cumsum(delta)[: len(grid)]


def failures(summary: Any, requests: Any, examples: int = 3) -> tuple[Any, dict[str, list[str]]]:
    """Failed requests by kind per stage (`errors_<kind>` columns of the summary that are
    not all zero; None when nothing failed), and up to `examples` distinct messages per
    kind from the records."""
    cols = [c for c in summary.columns if c.startswith("errors_")] if len(summary) else []
    nonzero = [c for c in cols if summary[c].fillna(0).sum() > 0]
    table = None
    if nonzero:
        table = summary[["target", *stage_columns(summary), "n_failed", *nonzero]].rename(
            columns={c: c.removeprefix("errors_") for c in nonzero}
        )
    messages: dict[str, list[str]] = {}
    if len(requests):
        failed = requests[~requests["ok"].astype(bool)]
        for kind, g in failed.groupby("error_kind", sort=True):
            msgs = [str(m) for m in dict.fromkeys(g["error"].dropna()) if str(m)]
            messages[str(kind)] = msgs[:examples]
    return table, messages
