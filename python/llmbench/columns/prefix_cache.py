"""The prefix-cache hit rate of a stage, from the server's own counters
(docs/architecture.md, "Metrics"; names by version in tests/fixtures/README.md).

- vLLM V1: `vllm:prefix_cache_hits_total` / `vllm:prefix_cache_queries_total` (tokens;
  before 0.9 `vllm:gpu_prefix_cache_*`): the increase of hits over the increase of
  queries from the last scrape before the stage to the first scrape after it (before the
  next stage starts; else the last scrape inside it). A server counts a request when it
  schedules it, so the window is exact when a scrape falls between stages: the scraper
  scrapes once more when the run ends, and a `cooldown_s` of at least one scrape period
  gives every boundary one; otherwise the requests of up to one scrape period at a
  boundary fall in the neighbouring stage.
- vLLM V0: the `vllm:gpu_prefix_cache_hit_rate` gauge, its last value inside the stage.
- llmbench's baseline has no prefix cache: 0.
- Any other server (TGI exports no hit counter): NaN, with the reason in the manifest.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Counter pairs (hits, queries), newest names first.
COUNTERS = (
    ("vllm:prefix_cache_hits_total", "vllm:prefix_cache_queries_total"),
    ("vllm:gpu_prefix_cache_hits_total", "vllm:gpu_prefix_cache_queries_total"),
)
V0_GAUGE = "vllm:gpu_prefix_cache_hit_rate"
BASELINE_SERIES = "llmbench_baseline_served_total"


def source(points: Any) -> str:
    """Where a target's hit rate comes from, or why it has none (for the manifest)."""
    if points is None or not len(points):
        return "none: no reading of the server's /metrics (not scraped, or it has none)"
    for hits, queries in COUNTERS:
        if hits in points and queries in points:
            return f"{hits} / {queries}"
    if V0_GAUGE in points:
        return V0_GAUGE
    if BASELINE_SERIES in points:
        return "0: llmbench's baseline has no prefix cache"
    return "none: the server exports no prefix-cache counter"


def _at(t: np.ndarray, v: np.ndarray, when: int) -> float | None:
    """The value of the last scrape at or before `when` (None if there is none)."""
    i = int(np.searchsorted(t, when, side="right")) - 1
    return float(v[i]) if i >= 0 and np.isfinite(v[i]) else None


def _after(t: np.ndarray, v: np.ndarray, when: int, before: int | None) -> float | None:
    """The value of the first scrape at or after `when` and before `before` (None if
    there is none)."""
    i = int(np.searchsorted(t, when, side="left"))
    if i < len(t) and (before is None or t[i] < before) and np.isfinite(v[i]):
        return float(v[i])
    return None


def hit_rate(points: Any, t0: int, t1: int, next_start: int | None = None) -> float:
    """The share of prompt tokens the server found cached in the stage [t0, t1] (the next
    stage, if any, starting at `next_start`)."""
    if points is None or not len(points):
        return float("nan")
    pts = points.sort_values("t_ns")
    t = pts["t_ns"].to_numpy(np.int64)
    for hits, queries in COUNTERS:
        if hits in pts and queries in pts:
            h = pts[hits].to_numpy(float)
            q = pts[queries].to_numpy(float)
            # Before the stage: the last scrape before it, or (none) the first inside it.
            start = _at(t, q, t0)
            h0 = _at(t, h, t0) if start is not None else None
            if start is None:
                inside = np.nonzero((t >= t0) & (t <= t1))[0]
                if not len(inside):
                    return float("nan")
                start, h0 = float(q[inside[0]]), float(h[inside[0]])
            end, h1 = _after(t, q, t1, next_start), _after(t, h, t1, next_start)
            if end is None or h1 is None:
                end, h1 = _at(t, q, t1), _at(t, h, t1)
            if end is None or h1 is None or h0 is None or end - start <= 0:
                return float("nan")
            return (h1 - h0) / (end - start)
    if V0_GAUGE in pts:
        v = _at(t, pts[V0_GAUGE].to_numpy(float), t1)
        return v if v is not None else float("nan")
    if BASELINE_SERIES in pts:
        return 0.0
    return float("nan")
