"""Plots of a sweep's summary against batch size (concurrency), one line per target."""

from __future__ import annotations

from typing import Any

from . import _deps

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


def is_open_loop(summary: Any) -> bool:
    """Whether the stages are open-loop (request rates) rather than batch sizes."""
    return bool(len(summary) and "target_rate" in summary and summary["target_rate"].notna().all())


def stage_name(row: Any) -> str | None:
    """A stage as people name it: "batch 8" (closed loop) or "2.5 req/s" (open loop);
    None when the row has neither."""
    bs, rate = row.get("batch_size"), row.get("target_rate")
    if bs is not None and bs == bs:
        return f"batch {int(bs)}"
    if rate is not None and rate == rate:
        return f"{rate:g} req/s"
    return None


def batch_size_axis(ax: Any, batch_sizes: Any) -> None:
    """A log₂ x axis with ticks at the batch sizes measured, written as people read them
    (1, 2, 4 … 128), not as powers of two.

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
    """One figure per metric; x is batch size on a log2 axis, or for open-loop stages the
    achieved request rate. With repeats, each line is the mean over repeats inside a band:
    its 95% interval.

    Example:
        >>> figs = summary_figures(results.summary)
    """
    plt = _deps.pyplot()
    figs = {}
    targets = list(dict.fromkeys(summary["target"])) if len(summary) else []
    open_loop = is_open_loop(summary)
    x = "sent_rate_req_s" if open_loop else "batch_size"
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
        if open_loop:
            ax.set_xlabel("achieved request rate (req/s)")
            title = title.replace("batch size", "request rate")
        else:
            batch_size_axis(ax, summary[x])
            ax.set_xlabel("batch size (requests in flight)")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        if targets:
            ax.legend()
        fig.tight_layout()
        figs[key] = fig
    return figs
