"""Which two scrapes of a server's `/metrics` bound a stage: the counters' increase
between them is the stage's share (docs/architecture.md, "Metrics").

A server counts a request when it schedules or finishes it, so the window is exact when
a scrape falls between stages: the scraper scrapes once more when the run ends, and a
`cooldown_s` of at least one scrape period gives every boundary one; otherwise the
requests of up to one scrape period at a boundary fall in the neighbouring stage, and
`exact` says so (the `server_window_exact` column)."""

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


def exact(
    t: np.ndarray,
    span: tuple[int, int],
    t0: int,
    t1: int,
    prev_end: int | None,
    next_start: int | None,
) -> bool:
    """Whether the scrapes `span` bounds the stage [t0, t1] take in nothing of another
    stage: the opening one after the previous stage ended (`prev_end`, None for the
    first) and at or before t0, the closing one at or after t1 and before the next stage
    began."""
    a, b = int(t[span[0]]), int(t[span[1]])
    opens = a <= t0 and (prev_end is None or a >= prev_end)
    closes = b >= t1 and (next_start is None or b < next_start)
    return opens and closes
