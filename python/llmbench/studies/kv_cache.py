"""The KV-cache / GPU-memory study (the seed workflow's `kv_cache.py`): run concurrent load
while sampling GPU memory through NVML and the server's `/metrics`, then write
`gpu_memory_data.json` and `gpu_memory_timeline.png`, with memory, KV use, requests in
flight and the tokens they hold on one time axis, stages marked.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .. import _deps
from ..columns.kv import GIB
from ..columns.telemetry import server_kv_by_target
from ..results import Results, _finite_or_none, _frame_to_columns
from ..sweep import run_sweep
from ..targets import Target

DEFAULT_KV_BATCH_SIZES = (1, 4, 16, 64)
#: How often the study scrapes `/metrics` (ms): faster than a sweep's default, to see
#: the KV cache fill within a stage.
KV_METRICS_PERIOD_MS = 250.0
DATA_FILE = "gpu_memory_data.json"
PLOT_FILE = "gpu_memory_timeline.png"


def kv_cache_study(
    targets: Target | Iterable[Target],
    batch_sizes: Sequence[int] = DEFAULT_KV_BATCH_SIZES,
    out_dir: str | Path | None = "results/kv_cache_study",
    *,
    gpu: bool | float = True,
    server_metrics: bool | float = KV_METRICS_PERIOD_MS,
    report: bool = True,
    gpu_period_ms: float | None = None,
    metrics_period_ms: float | None = None,
    **sweep_kwargs: Any,
) -> Results:
    """Sweep batch sizes while sampling GPU memory and the server's KV metrics.

    Takes `run_sweep`'s settings (`llmbench.SweepOptions`: `requests_per_stage`,
    `max_tokens`, `prompts`, `model_arch`, ...) with two defaults of its own: GPUs sampled
    (`gpu=True`, the engine's period) and `/metrics` scraped every
    `KV_METRICS_PERIOD_MS`. `report` writes `report.html` beside the study's files.
    Without an NVIDIA driver the study still runs and shows the server's and the
    client's KV figures. `gpu_period_ms` and `metrics_period_ms` are the deprecated
    names of `gpu` and `server_metrics`.

    Example:
        >>> res = llmbench.kv_cache_study(llmbench.TGI("http://localhost:8080"),
        ...                               model_arch="llama-2-7b")
        >>> res.gpu.groupby("gpu")["mem_used_gib"].max()
    """
    for old, new, value in (
        ("gpu_period_ms", "gpu", gpu_period_ms),
        ("metrics_period_ms", "server_metrics", metrics_period_ms),
    ):
        if value is not None:
            warnings.warn(
                f"kv_cache_study({old}=...) is deprecated: use {new}=...",
                DeprecationWarning,
                stacklevel=2,
            )
    res = run_sweep(
        targets,
        batch_sizes=batch_sizes,
        gpu=gpu if gpu_period_ms is None else gpu_period_ms,
        server_metrics=server_metrics if metrics_period_ms is None else metrics_period_ms,
        report=False,
        **sweep_kwargs,
    )
    if out_dir is not None:
        write_study(res, out_dir, report=report)
    return res


def _server_kv_frames(res: Results) -> dict[str, Any]:
    scrape = (res.manifest.get("telemetry") or {}).get("scrape", {})
    return server_kv_by_target(res.server_metrics, scrape, res.manifest.get("servers", {}))


def study_data(res: Results) -> dict[str, Any]:
    """Everything the study file holds, JSON-able, all times on the run clock (ns)."""
    pd = _deps.pandas()
    arch = res.manifest.get("model_arch")
    timelines = {}
    for target in dict.fromkeys(res.summary["target"]) if len(res.summary) else []:
        tl = res.kv_timeline(target)
        if arch:
            tl["kv_bytes"] = tl["tokens"] * arch["bytes_per_token"]
        timelines[target] = _frame_to_columns(tl)
    stages = (
        res.summary[["target", "batch_size", "t_start_ns", "t_end_ns"]]
        if len(res.summary)
        else pd.DataFrame()
    )
    keep = [c for c in res.summary.columns if c.startswith(("gpu_", "kv_", "j_per", "n_ok"))]
    return {
        "manifest": res.manifest,
        "kv": {
            "model_arch": arch,
            "formula": arch["formula"] if arch else None,
        },
        "stages": stages.to_dict(orient="records"),
        "summary": [
            {k: _finite_or_none(v) for k, v in row.items()}
            for row in res.summary[["target", "batch_size", *keep]].to_dict(orient="records")
        ]
        if len(res.summary)
        else [],
        "nvml": {
            "gpus": (res.manifest.get("telemetry") or {}).get("gpus", []),
            "samples": _frame_to_columns(res.gpu) if res.gpu is not None else None,
            "processes": _frame_to_columns(res.gpu_processes)
            if res.gpu_processes is not None
            else None,
        },
        "server_metrics": _frame_to_columns(res.server_metrics)
        if res.server_metrics is not None
        else None,
        "server_kv": {t: _frame_to_columns(f) for t, f in _server_kv_frames(res).items()},
        "inflight_estimate": timelines,
    }


def write_study(res: Results, out_dir: str | Path, report: bool = True) -> list[Path]:
    """Write `gpu_memory_data.json` and `gpu_memory_timeline.png` into `out_dir`, and
    `report.html` unless `report=False`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data_path = out / DATA_FILE
    tmp = data_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(study_data(res), allow_nan=False), encoding="utf-8")
    tmp.replace(data_path)
    plt = _deps.pyplot()
    fig = timeline_figure(res)
    plot_path = out / PLOT_FILE
    fig.savefig(plot_path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    written = [data_path, plot_path]
    if report:
        written += res.save_report(out)
    return written


def timeline_figure(res: Results) -> Any:
    """GPU memory, KV use, requests in flight and tokens held on one time axis."""
    plt = _deps.pyplot()
    fig, (ax_mem, ax_kv, ax_req) = plt.subplots(3, 1, figsize=(10, 8), sharex=True)
    t0 = res.run_start_ns()

    def secs(t: Any) -> Any:
        # Samples taken before the first request are earlier than t0: unsigned
        # nanoseconds would wrap, so subtract in signed integers.
        return (t.astype("int64") - t0) / 1e9 if hasattr(t, "astype") else (int(t) - t0) / 1e9

    if res.gpu is not None and len(res.gpu):
        for gpu, g in res.gpu.groupby("gpu"):
            ax_mem.plot(secs(g["t_ns"]), g["mem_used_bytes"] / GIB, label=f"GPU {gpu} used")
            total = g["mem_total_bytes"].dropna()
            if len(total):
                ax_mem.axhline(total.iloc[0] / GIB, ls=":", color="grey", label=f"GPU {gpu} total")
        ax_mem.legend(loc="upper left", fontsize=8)
    else:
        ax_mem.text(
            0.5,
            0.5,
            "no GPU telemetry (NVML unavailable on this machine)",
            ha="center",
            va="center",
            transform=ax_mem.transAxes,
        )
    ax_mem.set_ylabel("GPU memory (GiB)")

    arch = res.manifest.get("model_arch")
    unit, scale = ("GiB", arch["bytes_per_token"] / GIB) if arch else ("tokens", 1.0)
    for target, kv in _server_kv_frames(res).items():
        if "kv_tokens" in kv:
            ax_kv.plot(secs(kv["t_ns"]), kv["kv_tokens"] * scale, label=f"{target}: server")
        if "kv_capacity_tokens" in kv:
            ax_kv.plot(
                secs(kv["t_ns"]),
                kv["kv_capacity_tokens"] * scale,
                ls=":",
                label=f"{target}: server capacity",
            )
    targets = list(dict.fromkeys(res.summary["target"])) if len(res.summary) else []
    for target in targets:
        tl = res.kv_timeline(target)
        ax_kv.step(
            secs(tl["t_ns"]), tl["tokens"] * scale, where="post", label=f"{target}: client estimate"
        )
        ax_req.step(secs(tl["t_ns"]), tl["in_flight"], where="post", label=target)
    ax_kv.set_ylabel(f"KV cache ({unit})")
    if arch:
        ax_kv.set_title(f"KV bytes/token: {arch['formula']}", fontsize=9)
    ax_kv.legend(loc="upper left", fontsize=8)
    ax_req.set_ylabel("requests in flight")
    ax_req.set_xlabel("time since start (s)")
    warm = res.read_requests(["t_sched_ns", "t_done_ns"], warmup=True)
    if len(warm) and len(res.summary):
        a = secs(int(warm["t_sched_ns"].min()))
        b = secs(int(warm["t_done_ns"].max()))
        for ax in (ax_mem, ax_kv, ax_req):
            ax.axvspan(a, b, color="grey", alpha=0.08)
        ax_req.text(
            (a + b) / 2,
            1.0,
            "warm-up",
            transform=ax_req.get_xaxis_transform(),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    for i, row in enumerate(res.summary.itertuples()) if len(res.summary) else []:
        a, b = secs(row.t_start_ns), secs(row.t_end_ns)
        for ax in (ax_mem, ax_kv, ax_req):
            ax.axvspan(a, b, color="C0" if i % 2 else "C1", alpha=0.06)
        ax_req.text(
            (a + b) / 2,
            1.0,
            f"bs {row.batch_size}",
            transform=ax_req.get_xaxis_transform(),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    for ax in (ax_mem, ax_kv, ax_req):
        ax.grid(True, alpha=0.3)
    fig.suptitle("GPU memory and KV cache under load")
    fig.tight_layout()
    return fig
