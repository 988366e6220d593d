"""Where each stage's time goes: its mean TTFT as the server's queue, the server's prefill
and the rest (the network, the server's front end and the client), and its mean end-to-end
latency as queue, prefill, decode and the rest (docs/breakdown.md).

Per request where the server said its times (vLLM's per-request `metrics`, llama.cpp's
`timings`, the built-in servers: the requests' `server_*_ms` columns), else from the
server's histograms over the stage (`server_queue_mean_ms`, ...; those count every
request the server finished in the stage's window, this client's or not). A part the
server does not report (llama.cpp has no queue time) is NaN and falls into the rest.

Columns, per stage (ms, means over the stage's successful measured requests):
`breakdown_queue_ms`, `breakdown_prefill_ms`, `breakdown_ttft_rest_ms`,
`breakdown_decode_ms`, `breakdown_e2e_rest_ms`; the manifest's `breakdown` says, per
target, whether they came from its requests or its histograms.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _deps

COLUMNS = (
    "breakdown_queue_ms",
    "breakdown_prefill_ms",
    "breakdown_ttft_rest_ms",
    "breakdown_decode_ms",
    "breakdown_e2e_rest_ms",
)
#: The request columns the per-request breakdown reads.
REQUEST_COLUMNS = (
    "stage",
    "repeat",
    "ok",
    "ttft_ms",
    "e2e_ms",
    "server_queue_ms",
    "server_prefill_ms",
    "server_decode_ms",
    "ttft_rest_ms",
)
PER_REQUEST = "per request (the server's own times of each)"
HISTOGRAMS = "the server's histograms over each stage"


def _parts(ttft: Any, e2e: Any, queue: Any, prefill: Any, decode: Any) -> dict[str, float]:
    """The breakdown of one stage from its means (NaN parts fall into the rest)."""
    q, p, d = (np.nan_to_num(x) for x in (queue, prefill, decode))
    return {
        "breakdown_queue_ms": float(queue),
        "breakdown_prefill_ms": float(prefill),
        "breakdown_ttft_rest_ms": float(ttft - q - p),
        "breakdown_decode_ms": float(decode),
        "breakdown_e2e_rest_ms": float(e2e - q - p - d),
    }


def _from_requests(requests: Any) -> dict[tuple[str, int, int], dict[str, float]]:
    """Per (target, stage, repeat), the breakdown of the requests whose server said its
    prefill time: each request's parts, then their means."""
    ok = requests[requests["ok"].astype(bool) & requests["server_prefill_ms"].notna()]
    if not len(ok):
        return {}
    # A request's TTFT rest is its record's `ttft_rest_ms` (one formula, a missing queue
    # kept in the rest); its E2E rest adds what follows the first token, less the decode.
    ok = ok.assign(
        e2e_rest=ok["e2e_ms"]
        - ok["ttft_ms"]
        + ok["ttft_rest_ms"]
        - ok["server_decode_ms"].fillna(0)
    )
    means = ok.groupby(["target", "stage", "repeat"], sort=False).agg(
        queue=("server_queue_ms", "mean"),
        prefill=("server_prefill_ms", "mean"),
        decode=("server_decode_ms", "mean"),
        ttft_rest=("ttft_rest_ms", "mean"),
        e2e_rest=("e2e_rest", "mean"),
    )
    return {
        (str(t), int(s), int(r)): {
            "breakdown_queue_ms": float(m.queue),
            "breakdown_prefill_ms": float(m.prefill),
            "breakdown_ttft_rest_ms": float(m.ttft_rest),
            "breakdown_decode_ms": float(m.decode),
            "breakdown_e2e_rest_ms": float(m.e2e_rest),
        }
        for (t, s, r), m in means.iterrows()
    }


def add(summary: Any, requests: Any) -> tuple[Any, dict[str, str]]:
    """The summary (one row per stage and repeat) with the `COLUMNS`, from `requests`
    (`REQUEST_COLUMNS` and `target`, measured requests) where their server said its
    times, else from the summary's histogram columns; and per target, which it was."""
    pd = _deps.pandas()
    if not len(summary):
        return summary, {}
    per_request = _from_requests(requests) if requests is not None and len(requests) else {}
    rows, sources = [], {}
    for _, row in summary.iterrows():
        repeat = int(row["repeat"]) if "repeat" in row and pd.notna(row["repeat"]) else 0
        key = (str(row["target"]), int(row["stage"]), repeat)
        parts = per_request.get(key)
        if parts is not None:
            sources[key[0]] = PER_REQUEST
        elif pd.notna(row.get("server_prefill_mean_ms", np.nan)):
            parts = _parts(
                row["ttft_mean_ms"],
                row.get("e2e_mean_ms", np.nan),
                row.get("server_queue_mean_ms", np.nan),
                row["server_prefill_mean_ms"],
                row.get("server_decode_mean_ms", np.nan),
            )
            sources.setdefault(key[0], HISTOGRAMS)
        rows.append(parts or dict.fromkeys(COLUMNS, float("nan")))
    return pd.concat([summary, pd.DataFrame(rows, index=summary.index)], axis=1), sources


def check(summary: Any, tolerance_ms: float = 1.0) -> list[str]:
    """A message for each stage whose client saw its first token sooner than the server
    says it produced it (mean `breakdown_ttft_rest_ms` below `-tolerance_ms`): the two
    clocks or windows disagree, so the breakdown cannot be trusted there."""
    if "breakdown_ttft_rest_ms" not in summary:
        return []
    bad = summary[summary["breakdown_ttft_rest_ms"] < -tolerance_ms]
    return [
        f"{row['target']} stage {int(row['stage'])}: the server's queue and prefill "
        f"({row['breakdown_queue_ms']:.1f} + {row['breakdown_prefill_ms']:.1f} ms) exceed "
        f"the client's TTFT by {-row['breakdown_ttft_rest_ms']:.1f} ms: the server's and "
        "the client's clocks or windows disagree"
        for _, row in bad.iterrows()
    ]
