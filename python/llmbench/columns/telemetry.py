"""Telemetry around a sweep: the GPU sampler for the whole run, a `/metrics` scraper per
target, and the columns they add to each stage of the summary."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .. import _deps
from .._core import NvmlUnavailableError
from .._settings import GPU_SAMPLER
from ..errors import warn
from ..targets import Target
from ..telemetry import GpuSampler, MetricsScraper
from . import prefix_cache, server_times
from .kv import server_kv, stage_telemetry

# The engine's sampling period for `gpu=True`.
DEFAULT_GPU_PERIOD_MS = float(GPU_SAMPLER["period_ms"])
DEFAULT_METRICS_PERIOD_MS = 1000.0


def _period(value: bool | float | None, default: float) -> float | None:
    if value is None or value is False:
        return None
    if value is True:
        return default
    return float(value)


class RunTelemetry:
    """Starts and stops the samplers of one run and keeps what they collected."""

    def __init__(self, gpu: bool | float | None, server_metrics: bool | float | None) -> None:
        self.gpu_period = _period(gpu, DEFAULT_GPU_PERIOD_MS)
        self.metrics_period = _period(server_metrics, DEFAULT_METRICS_PERIOD_MS)
        self.warnings: list[str] = []
        self.sampler: GpuSampler | None = None
        self.scrapes: dict[str, dict[str, Any]] = {}

    def start(self) -> None:
        if self.gpu_period is None:
            return
        try:
            self.sampler = GpuSampler(period_ms=self.gpu_period)
        except NvmlUnavailableError as e:
            # The sweep is still worth running: it just has no GPU columns.
            msg = f"GPU telemetry off: {e}"
            self.warnings.append(msg)
            warn(msg, RuntimeWarning)

    @contextmanager
    def scraping(self, target: Target) -> Iterator[None]:
        if self.metrics_period is None:
            yield
            return
        scraper = MetricsScraper(target.root_path("/metrics"), self.metrics_period)
        try:
            yield
        finally:
            self.scrapes[target.name] = scraper.stop().output

    def stop(self) -> None:
        if self.sampler is not None:
            self.sampler.stop()

    def to_frames(self) -> dict[str, Any]:
        """GPU samples, per-process memory and server metrics as DataFrames (or None)."""
        pd = _deps.pandas()
        out: dict[str, Any] = {"gpu": None, "gpu_processes": None, "server_metrics": None}
        if self.sampler is not None:
            out["gpu"] = self.sampler.samples
            out["gpu_processes"] = self.sampler.processes
        frames = []
        for name, scrape in self.scrapes.items():
            rows = [{"t_ns": p["t_ns"], **p["values"]} for p in scrape["points"]]
            if rows:
                df = pd.DataFrame(rows)
                df.insert(0, "target", name)
                frames.append(df)
        if frames:
            out["server_metrics"] = pd.concat(frames, ignore_index=True)
        return out

    def describe(self) -> dict[str, Any]:
        """What the manifest records about telemetry."""
        info: dict[str, Any] = {
            "gpu_period_ms": self.gpu_period,
            "metrics_period_ms": self.metrics_period,
            "warnings": self.warnings,
        }
        if self.sampler is not None:
            info["gpus"] = self.sampler.gpus
            info["sampler"] = self.sampler.stats()
        info["scrape"] = {
            name: {
                "url": s["url"],
                "attempts": s["attempts"],
                "ok": len(s["points"]),
                "errors": s["errors"][:10],
                "info": s["info"],
            }
            for name, s in self.scrapes.items()
        }
        return info


def server_kv_by_target(
    server_metrics: Any, scrape_info: dict[str, Any], server_infos: dict[str, Any]
) -> dict[str, Any]:
    """Each target's own KV figures (`kv.server_kv`) from the scraped `/metrics`."""
    return _server_kv(_points_by_target(server_metrics), scrape_info, server_infos)


def _server_kv(
    points: dict[str, Any], scrape_info: dict[str, Any], server_infos: dict[str, Any]
) -> dict[str, Any]:
    """`server_kv_by_target` of scrapes already split by target."""
    return {
        target: server_kv(
            pts, (scrape_info.get(target) or {}).get("info") or {}, server_infos.get(target)
        )
        for target, pts in points.items()
    }


def _points_by_target(server_metrics: Any) -> dict[str, Any]:
    """Each target's scrapes, only the series it has."""
    if server_metrics is None or not len(server_metrics):
        return {}
    return {
        str(target): points.drop(columns=["target"]).dropna(axis=1, how="all")
        for target, points in server_metrics.groupby("target")
    }


def _neighbours(summary: Any, row: Any) -> tuple[int | None, int | None]:
    """When the stage run before `row`'s on the same target ended and when the one after
    it began (None where there is none)."""
    mine = summary[summary["target"] == row["target"]]
    starts = mine["t_start_ns"].astype("int64")
    t0 = int(row["t_start_ns"])
    before, after = mine.loc[starts < t0, "t_end_ns"], starts[starts > t0]
    return (
        int(before.astype("int64").max()) if len(before) else None,
        int(after.min()) if len(after) else None,
    )


def server_time_sources(server_metrics: Any, targets: list[str]) -> dict[str, dict[str, str]]:
    """Per target, the histogram each `server_*` column is read from (none: NaN)."""
    points = _points_by_target(server_metrics)
    return {t: server_times.sources(points.get(t)) for t in targets}


def prefix_cache_sources(server_metrics: Any, targets: list[str]) -> dict[str, str]:
    """Per target, where `prefix_cache_hit_rate` comes from or why it is NaN."""
    points = _points_by_target(server_metrics)
    return {t: prefix_cache.source(points.get(t)) for t in targets}


def add_stage_columns(
    summary: Any,
    frames: dict[str, Any],
    scrape_info: dict[str, Any],
    server_infos: dict[str, Any],
    bytes_per_token: int | None,
) -> Any:
    """The summary with memory, power, energy, KV, prefix-cache and server-time columns
    joined per stage."""
    pd = _deps.pandas()
    if not len(summary):
        return summary
    points = _points_by_target(frames.get("server_metrics"))
    kv_server = _server_kv(points, scrape_info, server_infos)
    extra = []
    for _, row in summary.iterrows():
        # The scrapes of the stage's target, and the window they bound it by.
        pts = points.get(row["target"])
        t0, t1 = int(row["t_start_ns"]), int(row["t_end_ns"])
        before, after = _neighbours(summary, row)
        extra.append(
            {
                **stage_telemetry(
                    row.to_dict(),
                    frames.get("gpu"),
                    kv_server.get(row["target"]),
                    bytes_per_token,
                ),
                "prefix_cache_hit_rate": prefix_cache.hit_rate(pts, t0, t1, after),
                **server_times.stage_columns(pts, t0, t1, after, before),
            }
        )
    cols = pd.DataFrame(extra, index=summary.index)
    return pd.concat([summary, cols], axis=1)
