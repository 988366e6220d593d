"""Which two scrapes of a server's `/metrics` bound a stage: the counters' increase
between them is the stage's share (docs/architecture.md, "Metrics").

A server counts a request when it schedules or finishes it, so the window is exact when
a scrape falls between stages: the scraper scrapes once more when the run ends, and a
`cooldown_s` of at least one scrape period gives every boundary one; otherwise the
requests of up to one scrape period at a boundary fall in the neighbouring stage."""

from __future__ import annotations

import numpy as np


def window(t: np.ndarray, t0: int, t1: int, next_start: int | None) -> tuple[int, int] | None:
    """Indices into the sorted scrape times `t` of the scrapes that open and close the
    stage [t0, t1] (the next stage, if any, starting at `next_start`): the last scrape at
    or before t0 (none: the first inside), and the first at or after t1 before the next
    stage (none: the last at or before t1). None when the stage has no such pair."""
    i0 = int(np.searchsorted(t, t0, side="right")) - 1
    if i0 < 0:
        inside = np.nonzero((t >= t0) & (t <= t1))[0]
        if not len(inside):
            return None
        i0 = int(inside[0])
    i1 = int(np.searchsorted(t, t1, side="left"))
    if not (i1 < len(t) and (next_start is None or t[i1] < next_start)):
        i1 = int(np.searchsorted(t, t1, side="right")) - 1
    if i1 <= i0:
        return None
    return i0, i1
