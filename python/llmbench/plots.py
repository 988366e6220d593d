"""Plots of a sweep's summary against batch size (concurrency), one line per target:
figures of a run (`figures`) and their PNG files (`save_plots`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from . import _deps
from .run_data import RunData

# (figure key, title, y label, [(column, line label suffix, style)])
_SPECS: list[tuple[str, str, str, list[tuple[str, str, str]]]] = [
    (
        "throughput",
        "Output throughput vs batch size",
        "output tokens / s",
        [("output_tok_s", "", "-o")],
    ),
    (
        "ttft",
        "Time to first token vs batch size",
        "TTFT (ms)",
        [("ttft_p50_ms", " p50", "-o"), ("ttft_p99_ms", " p99", "--^")],
    ),
    (
        "itl",
        "Inter-token latency vs batch size",
        "ms per output token",
        [("itl_mean_ms", " ITL mean", "-o"), ("itl_p99_ms", " ITL p99", "--^")],
    ),
    (
        "cost",
        "Cost per million output tokens vs batch size",
        "USD per 1M output tokens",
        [("usd_per_1m_output_tokens", "", "-o")],
    ),
]


def is_input_length_sweep(summary: Any) -> bool:
    """Whether the stages are input lengths at one load (`run_sweep(input_lengths=...)`)."""
    return bool(
        len(summary) and "input_tokens" in summary and summary["input_tokens"].notna().all()
    )


def x_axis(summary: Any) -> tuple[str, str, str]:
    """What the stages vary, as (column, axis label, the words for titles and files):
    input length, achieved request rate (open loop) or batch size."""
    if is_input_length_sweep(summary):
        return "input_tokens", "input length (tokens)", "input length"
    if is_open_loop(summary):
        return "sent_rate_req_s", "achieved request rate (req/s)", "request rate"
    return "batch_size", "batch size (requests in flight)", "batch size"


def is_open_loop(summary: Any) -> bool:
    """Whether the stages are open-loop (request rates) rather than batch sizes."""
    return bool(len(summary) and "target_rate" in summary and summary["target_rate"].notna().all())


def stage_name(row: Any) -> str | None:
    """A stage as people name it: "batch 8" (closed loop) or "2.5 req/s" (open loop), with
    the prompt length in a sweep over input lengths ("batch 8, 1024-token prompts"); None
    when the row has neither."""
    bs, rate = row.get("batch_size"), row.get("target_rate")
    length = row.get("input_tokens")
    # A sweep over input lengths: the length is what tells its stages apart.
    tail = f", {int(length)}-token prompts" if length is not None and length == length else ""
    if bs is not None and bs == bs:
        return f"batch {int(bs)}{tail}"
    if rate is not None and rate == rate:
        return f"{rate:g} req/s{tail}"
    return None


def batch_size_axis(ax: Any, batch_sizes: Any) -> None:
    """A log₂ x axis with ticks at the batch sizes (or input lengths) measured, written as
    people read them (1, 2, 4 … 128), not as powers of two.

    Example:
        >>> fig, ax = plt.subplots()
        >>> ax.plot(res.summary["batch_size"], res.summary["output_tok_s"])
        >>> llmbench.batch_size_axis(ax, res.summary["batch_size"])
    """
    ax.set_xscale("log", base=2)
    sizes = sorted({int(b) for b in batch_sizes if b == b})  # NaN (open loop) dropped
    if sizes:
        ax.set_xticks(sizes, [str(b) for b in sizes])
        ax.xaxis.set_minor_formatter(_deps.require("matplotlib.ticker").NullFormatter())


def summary_figures(summary: Any) -> dict[str, Any]:
    """One figure per metric; x is batch size (or, in a sweep over input lengths, the input
    length) on a log2 axis, or for open-loop stages the achieved request rate. With
    repeats, each line is the mean over repeats inside a band: its 95% interval.

    Example:
        >>> figs = summary_figures(results.summary)
    """
    plt = _deps.pyplot()
    figs = {}
    targets = list(dict.fromkeys(summary["target"])) if len(summary) else []
    x, xlabel, words = x_axis(summary)
    for key, title, ylabel, series in _SPECS:
        fig, ax = plt.subplots(figsize=(6.4, 4.0))
        for target in targets:
            rows = summary[summary["target"] == target].sort_values(x)
            for col, suffix, style in series:
                if col not in rows:
                    continue
                label = f"{target}{suffix}" if len(targets) > 1 or suffix else target
                (line,) = ax.plot(rows[x], rows[col], style, label=label.strip())
                if f"{col}_ci_low" in rows:
                    # Repeats: the 95% interval of the mean as a band around the line.
                    ax.fill_between(
                        rows[x],
                        rows[f"{col}_ci_low"],
                        rows[f"{col}_ci_high"],
                        color=line.get_color(),
                        alpha=0.2,
                        linewidth=0,
                    )
        if x != "sent_rate_req_s":
            batch_size_axis(ax, summary[x])
        ax.set_xlabel(xlabel)
        title = title.replace("batch size", words)
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        if targets:
            ax.legend()
        fig.tight_layout()
        figs[key] = fig
    return figs


def turn_figure(by_turn: Any) -> Any:
    """TTFT p50 (and p99, dashed) against the conversation turn, one line per target and
    stage, from `Results.by_turn()`: how a growing history costs each server.

    Example:
        >>> turn_figure(res.by_turn()).savefig("ttft_by_turn.png")
    """
    plt = _deps.pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    keys = list(dict.fromkeys(zip(by_turn["target"], by_turn["stage"], strict=True)))
    for target, stage in keys:
        rows = by_turn[(by_turn["target"] == target) & (by_turn["stage"] == stage)]
        name = stage_name(rows.iloc[0]) or f"stage {stage}"
        label = f"{target}, {name}" if len(keys) > 1 else target
        (line,) = ax.plot(rows["turn"], rows["ttft_p50_ms"], "-o", label=f"{label} p50")
        ax.plot(rows["turn"], rows["ttft_p99_ms"], "--", color=line.get_color(), alpha=0.6)
    ax.xaxis.set_major_locator(_deps.require("matplotlib.ticker").MaxNLocator(integer=True))
    ax.set_xlabel("turn of the conversation (0 = first)")
    ax.set_ylabel("TTFT (ms); dashed: p99")
    ax.set_title("Time to first token by conversation turn")
    ax.grid(True, alpha=0.3)
    if keys:
        ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def breakdown_figure(summary: Any) -> Any:
    """Where each stage's time goes (`llmbench.columns.breakdown`): the mean TTFT (left)
    and end-to-end latency (right) stacked as the server's queue, prefill (and decode) and
    the rest, one bar per target and stage; None when no stage has the server's times.

    Example:
        >>> fig = breakdown_figure(res.summary)
    """
    from .report.charts import BREAKDOWN_PARTS, time_parts

    parts = {kind: time_parts(summary, kind) for kind in BREAKDOWN_PARTS}
    if parts["ttft"] is None:
        return None
    plt = _deps.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.0))
    _, xlabel, _ = x_axis(summary)
    colors = dict(zip(["queue", "prefill", "decode", "rest"], plt.cm.tab10.colors, strict=False))
    for ax, (kind, rows) in zip(axes, parts.items(), strict=True):
        labels = [
            f"{t}\n{x:g}" if len(set(rows["target"])) > 1 else f"{x:g}"
            for t, x in zip(rows["target"], rows["x"], strict=True)
        ]
        bottom = np.zeros(len(rows))
        for key, label in BREAKDOWN_PARTS[kind]:
            values = rows[key].to_numpy(float)
            ax.bar(range(len(rows)), values, bottom=bottom, label=label, color=colors[key])
            bottom += values
        ax.set_xticks(range(len(rows)), labels)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"mean {'TTFT' if kind == 'ttft' else 'end-to-end latency'} (ms)")
        ax.set_title(
            "Where the time to first token goes"
            if kind == "ttft"
            else "Where a request's latency goes"
        )
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


PLOT_FILES = {
    "throughput": "throughput_vs_batch_size.png",
    "ttft": "ttft_vs_batch_size.png",
    "itl": "itl_vs_batch_size.png",
    "cost": "cost_vs_batch_size.png",
    # Only for runs of conversations.
    "ttft_by_turn": "ttft_by_turn.png",
    # Only where the server says its own times.
    "breakdown": "breakdown_vs_batch_size.png",
}


def figures(results: RunData) -> dict[str, Any]:
    """Throughput, TTFT, ITL and cost vs batch size (or rate, or input length), one
    line per target, and TTFT by turn for conversations: matplotlib figures by key."""
    figs = summary_figures(results.summary)
    by_turn = results.by_turn()
    if len(by_turn):
        figs["ttft_by_turn"] = turn_figure(by_turn)
    breakdown = breakdown_figure(results.summary)
    if breakdown is not None:
        figs["breakdown"] = breakdown
    return figs


def save_plots(results: RunData, out_dir: str | Path, close: bool = True) -> list[Path]:
    """Write `figures(results)` as PNGs into `out_dir` (named by `PLOT_FILES`, with the
    x axis in the name for rates and input lengths); returns the paths."""
    figs = figures(results)
    x = x_axis(results.summary)[0]
    suffix = {"sent_rate_req_s": "_vs_rate.png", "input_tokens": "_vs_input_length.png"}.get(x)
    plt = _deps.pyplot()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for key, fig in figs.items():
        name = PLOT_FILES[key]
        path = out / (name.replace("_vs_batch_size.png", suffix) if suffix else name)
        fig.savefig(path, dpi=120, bbox_inches="tight")
        paths.append(path)
        if close:
            plt.close(fig)
    return paths
