"""KV-cache estimates (docs/architecture.md, "Metrics") and the per-stage telemetry columns.

- Bytes per token = 2 x layers x kv_heads x head_dim x dtype bytes (`model_arch`).
- vLLM: `kv_cache_usage_perc` (V0: `gpu_cache_usage_perc`) x num_gpu_blocks x block_size
  (from `vllm:cache_config_info`) tokens.
- TGI pre-allocates its cache, so GPU memory stays flat: capacity from
  `tgi_batch_max_total_tokens` (or `/info`'s `max_batch_total_tokens` before 2.3), use from
  `tgi_batch_current_max_tokens`.
- Any server: the client-side estimate, the sum over requests in flight of prompt tokens
  plus tokens received so far.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .. import _core, _deps

GIB = 2**30


def model_arch(arch: str | Path | None, dtype_bytes: int | None = None) -> dict[str, Any] | None:
    """A model's KV architecture from a preset name ("llama-2-7b", "llama-2-13b",
    "llama-3-8b", "mistral-7b", ...), a `config.json` path, or a model folder holding one.

    Example:
        >>> model_arch("llama-2-7b")["bytes_per_token"]
        524288
    """
    if arch is None:
        return None
    p = Path(arch)
    if p.is_dir():
        p = p / "config.json"
    if p.suffix == ".json" or p.is_file():
        return dict(_core.model_arch(config_path=str(p), dtype_bytes=dtype_bytes))
    return dict(_core.model_arch(preset=str(arch), dtype_bytes=dtype_bytes or 2))


def inflight_timeline(
    requests: Any, chunks: dict[str, np.ndarray], rows: np.ndarray | None = None
) -> Any:
    """Requests in flight and the KV tokens they hold, as a step function of time.

    Each request holds its prompt tokens from send to end, plus each output chunk's tokens
    from the chunk's arrival. Returns a DataFrame with `t_ns`, `in_flight` and `tokens`
    (the value from that time until the next row). Requests without a known prompt size
    count their output only (`n_in` missing).
    """
    pd = _deps.pandas()
    idx = np.arange(len(requests)) if rows is None else np.asarray(rows)
    if len(idx) == 0:
        return pd.DataFrame({"t_ns": [], "in_flight": [], "tokens": []})
    sent = requests["t_sent_ns"].to_numpy(np.int64)[idx]
    done = requests["t_done_ns"].to_numpy(np.int64)[idx]
    n_in = pd.to_numeric(requests["n_in"], errors="coerce").fillna(0).to_numpy(np.int64)[idx]
    offsets = chunks["offsets"].astype(np.int64)
    starts, lengths = offsets[idx], offsets[idx + 1] - offsets[idx]
    # The chunk positions of the chosen rows, in row order.
    pos = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    pos = pos + np.arange(int(lengths.sum()))
    k = chunks["tokens"][pos].astype(np.int64)
    owner = np.repeat(np.arange(len(idx)), lengths)
    out_held = np.bincount(owner, weights=k, minlength=len(idx)).astype(np.int64)
    times = [sent, done, chunks["t_ns"][pos].astype(np.int64)]
    deltas_tok = [n_in, np.zeros_like(done), k]
    # At the end a request releases its prompt and everything it received.
    deltas_tok[1] = -(n_in + out_held)
    deltas_req = [np.ones_like(sent), -np.ones_like(done), np.zeros_like(times[2])]
    t = np.concatenate(times)
    dt = np.concatenate(deltas_tok)
    dr = np.concatenate(deltas_req)
    order = np.argsort(t, kind="stable")
    t, dt, dr = t[order], dt[order], dr[order]
    # One row per distinct time: the state after every event at that instant (the last
    # of the sorted events at each time; cheaper than a group-by on long runs).
    last = np.append(t[1:] != t[:-1], True)
    return pd.DataFrame(
        {"t_ns": t[last], "in_flight": np.cumsum(dr)[last], "tokens": np.cumsum(dt)[last]}
    )


def server_kv(points: Any, info: dict[str, Any], server_info: dict[str, Any] | None) -> Any:
    """The server's own KV figures per scrape: `kv_usage_frac`, `kv_tokens`,
    `kv_capacity_tokens`, and `kv_bytes` from a server that reports its cache in bytes
    (llmbench's baseline), where the server exposes them."""
    pd = _deps.pandas()
    if points is None or not len(points):
        return pd.DataFrame({"t_ns": []})
    df = pd.DataFrame({"t_ns": points["t_ns"]})
    cache = (info or {}).get("vllm:cache_config_info") or {}
    usage_col = next(
        (c for c in ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc") if c in points), None
    )
    if usage_col is not None:
        df["kv_usage_frac"] = points[usage_col].to_numpy(float)
        try:
            capacity = int(cache["num_gpu_blocks"]) * int(cache["block_size"])
        except (KeyError, TypeError, ValueError):
            capacity = None
        if capacity:
            df["kv_capacity_tokens"] = float(capacity)
            df["kv_tokens"] = df["kv_usage_frac"] * capacity
    elif "tgi_batch_current_max_tokens" in points:
        df["kv_tokens"] = points["tgi_batch_current_max_tokens"].to_numpy(float)
        cap = None
        if "tgi_batch_max_total_tokens" in points:
            cap = points["tgi_batch_max_total_tokens"].to_numpy(float)
        elif server_info and isinstance(server_info.get("info"), dict):
            mbt = server_info["info"].get("max_batch_total_tokens")
            cap = float(mbt) if mbt else None
        if cap is not None:
            df["kv_capacity_tokens"] = cap
            df["kv_usage_frac"] = df["kv_tokens"] / df["kv_capacity_tokens"]
    elif "llmbench_baseline_kv_cache_bytes" in points:
        df["kv_bytes"] = points["llmbench_baseline_kv_cache_bytes"].to_numpy(float)
    return df


def _window(df: Any, t0: int, t1: int) -> Any:
    return df[(df["t_ns"] >= t0) & (df["t_ns"] <= t1)]


def _energy_j(gpu: Any, t0: int, t1: int) -> float:
    """Energy over [t0, t1], summed over GPUs: from each GPU's cumulative counter,
    interpolated inside the window; where the counter's readings (taken about once a
    second, the query being slow) cover less than 90% of the window, from the power
    readings integrated over time instead; NaN where neither covers it."""
    total, found = 0.0, False
    for _, g in gpu.groupby("gpu"):
        e = g.dropna(subset=["energy_j"]).sort_values("t_ns")
        t = e["t_ns"].to_numpy(np.float64)
        if len(e) >= 2:
            a, b = max(t0, t[0]), min(t1, t[-1])
            if b > a and (b - a) >= 0.9 * (t1 - t0):
                ea, eb = np.interp([a, b], t, e["energy_j"].to_numpy(np.float64))
                total += (eb - ea) * (t1 - t0) / (b - a)  # scale up the few missing ms
                found = True
                continue
        p = g.dropna(subset=["power_w"]).sort_values("t_ns")
        p = p[(p["t_ns"] >= t0) & (p["t_ns"] <= t1)]
        if len(p) >= 2:
            tp = p["t_ns"].to_numpy(np.float64)
            span = tp[-1] - tp[0]
            if span >= 0.5 * (t1 - t0):
                w = p["power_w"].to_numpy(np.float64)
                joules = float(np.sum((w[1:] + w[:-1]) / 2 * np.diff(tp)) / 1e9)
                total += joules * (t1 - t0) / span
                found = True
    return total if found else float("nan")


def stage_telemetry(
    summary_row: dict[str, Any],
    gpu: Any | None,
    kv_server: Any | None,
    bytes_per_token: int | None,
) -> dict[str, float]:
    """Memory, power, energy and KV columns for one stage (its t_start_ns..t_end_ns)."""
    t0, t1 = int(summary_row["t_start_ns"]), int(summary_row["t_end_ns"])
    out: dict[str, float] = {}
    if gpu is not None and len(gpu):
        w = _window(gpu, t0, t1)
        per_t = w.groupby("t_ns")
        mem = per_t["mem_used_bytes"].sum()
        out["gpu_mem_used_max_gib"] = float(mem.max()) / GIB if len(mem) else float("nan")
        out["gpu_mem_used_mean_gib"] = float(mem.mean()) / GIB if len(mem) else float("nan")
        out["gpu_util_mean_pct"] = float(w["util_gpu_pct"].mean())
        # Power is read on its own cadence: sum over GPUs only at times that have it.
        power = w.dropna(subset=["power_w"]).groupby("t_ns")["power_w"].sum()
        out["gpu_power_mean_w"] = float(power.mean()) if len(power) else float("nan")
        energy = _energy_j(gpu, t0, t1)
        out["gpu_energy_j"] = energy
        n_out = float(summary_row.get("n_out_total") or 0)
        n_ok = float(summary_row.get("n_ok") or 0)
        out["j_per_output_token"] = energy / n_out if n_out else float("nan")
        out["j_per_request"] = energy / n_ok if n_ok else float("nan")
    if kv_server is not None and "kv_tokens" in kv_server:
        w = _window(kv_server, t0, t1)
        out["kv_server_tokens_max"] = float(w["kv_tokens"].max())
        if "kv_usage_frac" in w:
            out["kv_server_usage_max_pct"] = float(w["kv_usage_frac"].max()) * 100
        if bytes_per_token:
            out["kv_server_gib_max"] = out["kv_server_tokens_max"] * bytes_per_token / GIB
    elif kv_server is not None and "kv_bytes" in kv_server:
        # Exact bytes of the cache tensors (the baseline): no architecture needed.
        w = _window(kv_server, t0, t1)
        out["kv_server_gib_max"] = float(w["kv_bytes"].max()) / GIB
        if bytes_per_token:
            out["kv_server_tokens_max"] = float(w["kv_bytes"].max()) / bytes_per_token
    held = summary_row.get("kv_client_est_tokens_max")
    if bytes_per_token and held is not None:
        # The engine's estimate of the tokens the stage's requests held at once.
        out["kv_client_est_gib_max"] = float(held) * bytes_per_token / GIB
    if bytes_per_token:
        out["kv_bytes_per_token"] = float(bytes_per_token)
    return out
