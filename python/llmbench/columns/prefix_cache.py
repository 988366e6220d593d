"""The prefix-cache hit rate of a stage, from the server's own counters
(docs/architecture.md, "Metrics"; names by version in tests/fixtures/README.md).

- vLLM V1: `vllm:prefix_cache_hits_total` / `vllm:prefix_cache_queries_total` (tokens;
  before 0.9 `vllm:gpu_prefix_cache_*`): the increase of hits over the increase of
  queries between the scrapes that bound the stage (`scrape_window.window`: the last
  before it, the first after it before the next stage starts).
- vLLM V0: the `vllm:gpu_prefix_cache_hit_rate` gauge, its last value inside the stage.
- llmbench's baseline has no prefix cache: 0.
- Any other server (TGI exports no hit counter): NaN, with the reason in the manifest.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .scrape_window import window

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


def hit_rate(points: Any, t0: int, t1: int, next_start: int | None = None) -> float:
    """The share of prompt tokens the server found cached in the stage [t0, t1] (the next
    stage, if any, starting at `next_start`)."""
    if points is None or not len(points):
        return float("nan")
    pts = points.sort_values("t_ns")
    t = pts["t_ns"].to_numpy(np.int64)
    for hits, queries in COUNTERS:
        if hits in pts and queries in pts:
            span = window(t, t0, t1, next_start)
            if span is None:
                return float("nan")
            h = pts[hits].to_numpy(float)[list(span)]
            q = pts[queries].to_numpy(float)[list(span)]
            if not (np.isfinite(h).all() and np.isfinite(q).all()) or q[1] - q[0] <= 0:
                return float("nan")
            return float((h[1] - h[0]) / (q[1] - q[0]))
    if V0_GAUGE in pts:
        # Its last value inside the stage (or before it).
        i = int(np.searchsorted(t, t1, side="right")) - 1
        v = pts[V0_GAUGE].to_numpy(float)
        return float(v[i]) if i >= 0 and np.isfinite(v[i]) else float("nan")
    if BASELINE_SERIES in pts:
        return 0.0
    return float("nan")
