"""The server's own account of a stage's time: the increase over the stage of its request
histograms (queue, prefill, decode, inference, TTFT, ITL, end to end, and tokens per
engine step), with the mean and interpolated percentiles of what the stage added, beside
its preemptions and the peak of its waiting queue.

Columns, per stage: `server_{q}_mean_ms`, `server_{q}_p50_ms`, `_p90_ms`, `_p99_ms` for
each time `q` in `SERVER_TIMES` (`server_step_tokens_*` and `server_request_{out,in}_tokens_*`
in tokens), `server_preemptions`, `server_waiting_peak`, `server_generated_tokens`; from
speculative decoding `spec_acceptance_rate` (accepted over drafted tokens) and
`spec_mean_accepted_len` (tokens per draft step, the bonus token counted, as vLLM reports
it); from llama.cpp's counters `server_prefill_tok_s` and `server_decode_tok_s`; NaN where
the server exports none (the manifest's `server_times` says which histogram each came
from). The names by server and version are the engine's two tables
(`src/telemetry/prom.rs`, `SERVER_TIMES` and `SERVER_COUNTERS`).

`check_tokens` compares the server's mean output tokens per finished request with the
client's (`out_tokens_gap_pct`): they count the same tokens, so a gap means the client's
counts (a tokenizer's estimate) or the stage's window are off.

The mean is exact (the increase of `_sum` over that of `_count`); a percentile is
interpolated linearly inside its bucket, as Prometheus's `histogram_quantile` does, so it
is only as fine as the server's buckets (vLLM's queue histogram starts at 0.3 s).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._settings import ENGINE
from .scrape_window import exact, window

#: What each histogram measures -> its names, newest first (from the engine).
SERVER_TIMES: dict[str, tuple[str, ...]] = {q: tuple(names) for q, names in ENGINE["server_times"]}
QUANTILES = (0.5, 0.9, 0.99)
#: What each counter or gauge counts -> its names, newest first (from the engine).
SERVER_COUNTERS: dict[str, tuple[str, ...]] = {
    q: tuple(names) for q, names in ENGINE["server_counters"]
}
#: The gauges among them: a stage gets their peak, not their increase.
GAUGES = ("waiting", "llamacpp_busy", "llamacpp_deferred")


def _unit(quantity: str) -> tuple[str, float]:
    """A column's suffix and the factor from the histogram's unit to it."""
    return ("", 1.0) if quantity.endswith("_tokens") else ("_ms", 1e3)


def columns() -> list[str]:
    """Every column `stage_columns` gives, in order."""
    out = []
    for q in SERVER_TIMES:
        suffix, _ = _unit(q)
        out += [f"server_{q}_mean{suffix}"] + [
            f"server_{q}_p{round(p * 100)}{suffix}" for p in QUANTILES
        ]
    return [
        *out,
        "server_preemptions",
        "server_waiting_peak",
        "server_generated_tokens",
        "spec_acceptance_rate",
        "spec_mean_accepted_len",
        "server_prefill_tok_s",
        "server_decode_tok_s",
        "server_window_exact",
    ]


def _counter(pts: Any, quantity: str) -> str | None:
    """The series `pts` has for counter `quantity` (the newest name), or None."""
    return next((c for c in SERVER_COUNTERS[quantity] if c in pts), None)


def family(points: Any, quantity: str) -> str | None:
    """The histogram `points` has for `quantity` (the newest name), or None."""
    if points is None:
        return None
    return next((f for f in SERVER_TIMES[quantity] if f"{f}_count" in points), None)


def sources(points: Any) -> dict[str, str]:
    """Per quantity, the histogram it is read from (for the manifest)."""
    return {q: f for q in SERVER_TIMES if (f := family(points, q)) is not None}


def _bucket_columns(points: Any, fam: str) -> tuple[np.ndarray, list[str]]:
    """The bucket bounds of `fam` in `points`, ascending, and their columns."""
    prefix = f"{fam}_bucket:"
    cols = [c for c in points.columns if c.startswith(prefix)]
    bounds = np.array([float(c[len(prefix) :]) for c in cols])
    order = np.argsort(bounds)
    return bounds[order], [cols[i] for i in order]


def quantile(bounds: np.ndarray, cumulative: np.ndarray, q: float) -> float:
    """The `q` quantile of a histogram of cumulative bucket counts (the last bound +Inf),
    interpolated linearly inside its bucket (`histogram_quantile`'s rule: the first
    bucket starts at 0, a rank in the +Inf bucket gives the highest finite bound)."""
    total = cumulative[-1]
    if not total > 0:
        return float("nan")
    rank = q * total
    i = int(np.searchsorted(cumulative, rank, side="left"))
    i = min(i, len(bounds) - 1)
    if not np.isfinite(bounds[i]):
        return float(bounds[i - 1]) if i > 0 else float("nan")
    lo = float(bounds[i - 1]) if i > 0 else 0.0
    below = float(cumulative[i - 1]) if i > 0 else 0.0
    inside = float(cumulative[i]) - below
    if inside <= 0:
        return float(bounds[i])
    return lo + (float(bounds[i]) - lo) * (rank - below) / inside


def stage_columns(
    points: Any,
    t0: int,
    t1: int,
    next_start: int | None = None,
    prev_end: int | None = None,
) -> dict[str, float]:
    """`columns()` for the stage [t0, t1] from one target's scrapes (`points`, a frame with
    `t_ns` and the kept series); every value NaN without scrapes around the stage.
    `server_window_exact` is 1 where the two scrapes bounding the stage fall between it
    and its neighbours (the stage before ended at `prev_end`, the next began at
    `next_start`), 0 where the window takes in part of a neighbour."""
    out = dict.fromkeys(columns(), float("nan"))
    if points is None or not len(points):
        return out
    pts = points.sort_values("t_ns")
    t = pts["t_ns"].to_numpy(np.int64)
    span = window(t, t0, t1, next_start)
    if span is not None:
        out["server_window_exact"] = float(exact(t, span, t0, t1, prev_end, next_start))
    for q in SERVER_TIMES:
        fam = family(pts, q)
        if fam is None or span is None:
            continue
        i0, i1 = span
        suffix, scale = _unit(q)
        count = pts[f"{fam}_count"].to_numpy(float)
        total = pts[f"{fam}_sum"].to_numpy(float)
        added = count[i1] - count[i0]
        if not added > 0:
            continue
        out[f"server_{q}_mean{suffix}"] = scale * (total[i1] - total[i0]) / added
        bounds, cols = _bucket_columns(pts, fam)
        buckets = pts[cols].to_numpy(float)
        cumulative = buckets[i1] - buckets[i0]
        for p in QUANTILES:
            out[f"server_{q}_p{round(p * 100)}{suffix}"] = scale * quantile(bounds, cumulative, p)
    added = {}
    if span is not None:
        for q in SERVER_COUNTERS:
            name = _counter(pts, q)
            if name is not None and q not in GAUGES:
                v = pts[name].to_numpy(float)
                added[q] = float(v[span[1]] - v[span[0]])
    out["server_preemptions"] = added.get("preemptions", float("nan"))
    out["server_generated_tokens"] = added.get("generated_tokens", float("nan"))
    drafts, drafted = added.get("spec_drafts"), added.get("spec_draft_tokens")
    accepted = added.get("spec_accepted_tokens")
    if accepted is not None and drafted:
        out["spec_acceptance_rate"] = accepted / drafted
    if accepted is not None and drafts:
        out["spec_mean_accepted_len"] = 1.0 + accepted / drafts
    for column, tokens, seconds in (
        ("server_prefill_tok_s", "prompt_tokens", "prompt_seconds"),
        ("server_decode_tok_s", "generated_tokens", "predicted_seconds"),
    ):
        if added.get(seconds) and tokens in added:
            out[column] = added[tokens] / added[seconds]
    name = _counter(pts, "waiting")
    if name is not None:
        inside = (t >= t0) & (t <= t1)
        if inside.any():
            out["server_waiting_peak"] = float(np.nanmax(pts[name].to_numpy(float)[inside]))
    return out


class TokenCountWarning(UserWarning):
    """The server's and the client's output tokens per request of a stage disagree: the
    client's counts (a tokenizer's estimate, one token per chunk) or the stage's window
    are off."""


#: How far apart (percent) the server's and the client's mean output tokens may be before
#: `check_tokens` warns: the stage's window can take in or leave out a request at each end
#: (one of a few hundred), never a percent of every request's tokens.
TOKEN_GAP_PCT = 2.0


def check_tokens(summary: Any) -> list[str]:
    """Add `out_tokens_gap_pct` (the server's mean output tokens per finished request less
    the client's, as a percent of the client's; NaN where the server has none) to
    `summary` in place, and return a message for each stage where it is beyond
    `TOKEN_GAP_PCT`."""
    if not len(summary) or "server_request_out_tokens_mean" not in summary:
        return []
    client = summary["n_out_mean"].astype(float)
    gap = 100.0 * (summary["server_request_out_tokens_mean"] - client) / client
    summary["out_tokens_gap_pct"] = gap
    return [
        f"{row['target']} stage {int(row['stage'])}: the server counted "
        f"{row['server_request_out_tokens_mean']:.1f} output tokens per request, the client "
        f"{row['n_out_mean']:.1f} ({row['out_tokens_gap_pct']:+.1f}%): the client's token "
        "counts or the stage's scrape window are off"
        for _, row in summary[gap.abs() > TOKEN_GAP_PCT].iterrows()
    ]


class ScrapeWindowWarning(UserWarning):
    """A stage's server-side columns come from a scrape window that takes in part of a
    neighbouring stage: no scrape of `/metrics` fell between the two."""


def check_window(summary: Any, histogram_targets: list[str], period_ms: float | None) -> list[str]:
    """One message per target in `histogram_targets` (those whose breakdown comes from
    the server's histograms) with stages whose `server_window_exact` is 0."""
    if not len(summary) or "server_window_exact" not in summary:
        return []
    messages = []
    for target in histogram_targets:
        rows = summary[(summary["target"] == target) & (summary["server_window_exact"] == 0)]
        if not len(rows):
            continue
        stages = ", ".join(str(int(s)) for s in rows["stage"])
        period = f"{period_ms:.0f} ms" if period_ms else "one scrape period"
        messages.append(
            f"{target} stages {stages}: no scrape of the server's /metrics fell between "
            "these stages and their neighbours, so their server_* and breakdown columns "
            f"take in up to {period} of the neighbouring stage; set cooldown_s to more "
            "than the scrape period (or scrape more often) for exact windows"
        )
    return messages


class ServerClientGapWarning(UserWarning):
    """The client's and the server's TTFT of a stage disagree by more than the client's
    error and the network explain: the client, the network or the scrape window is off."""


def check_gap(summary: Any, tolerance_ms: float = 1.0) -> list[str]:
    """Add `ttft_gap_ms` (the client's mean TTFT minus the server's, NaN where the server
    has none) to `summary` in place, and return a message for each stage where it cannot
    be trusted: below `-tolerance_ms` (the client saw less than the server's own time, so
    the two windows or clocks disagree), or above the target's least-loaded stage's gap
    (the network and what the server does outside its clock) plus the stage's client task
    lag p99 plus `tolerance_ms` (the client's calibrated error; 1 ms uncalibrated) and
    more than twice that least gap (so a loopback gap of 0.3 ms growing to 1.5 ms, noise
    in a scheduler, is not flagged)."""
    if not len(summary) or "server_ttft_mean_ms" not in summary:
        return []
    gap = summary["ttft_mean_ms"] - summary["server_ttft_mean_ms"]
    summary["ttft_gap_ms"] = gap
    messages = []
    for target in summary["target"].unique():
        rows = summary[(summary["target"] == target) & gap.notna()]
        if not len(rows):
            continue
        base = float(gap[rows.index].min())
        for i, row in rows.iterrows():
            g = float(gap[i])
            lag = row.get("client_task_lag_p99_ms", 0.0)
            lag = float(lag) if lag == lag else 0.0
            where = f"{target} stage {row.get('stage', '?')}"
            if g < -tolerance_ms:
                messages.append(
                    f"{where}: client TTFT {row['ttft_mean_ms']:.1f} ms is {-g:.1f} ms below "
                    "the server's own: the scrape window or a clock is off"
                )
            elif g > max(base, 0.0) + lag + tolerance_ms and g > 2 * max(base, tolerance_ms):
                messages.append(
                    f"{where}: client TTFT exceeds the server's by {g:.1f} ms against "
                    f"{base:.1f} ms at the lightest stage: the client or the network adds "
                    "time under this load"
                )
    return messages
