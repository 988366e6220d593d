"""Comparing saved runs: vLLM against TGI against the baseline, in one table and one set of
plots (throughput, TTFT, ITL and cost per million tokens against batch size)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._core import InvalidArgumentError
from .results import Results

TABLE_COLUMNS = ("output_tok_s", "ttft_p50_ms", "tpot_mean_ms", "usd_per_1m_output_tokens")


def compare(runs: Sequence[Results | str | Path]) -> Results:
    """One `Results` holding several runs (objects, or folders saved by `save`), so that
    `.summary`, `.plot()` and `.save()` show them side by side. Targets whose names clash
    between runs get the run's folder name (or its position) appended.

    Example:
        >>> both = llmbench.compare(["results/vllm", "results/tgi", "results/baseline"])
        >>> llmbench.comparison_table(both)
        >>> both.plot()
    """
    if not runs:
        raise InvalidArgumentError("compare needs at least one run")
    loaded: list[tuple[str, Results]] = []
    for i, r in enumerate(runs):
        if isinstance(r, Results):
            loaded.append((f"run{i + 1}", r))
        else:
            loaded.append((Path(r).name or f"run{i + 1}", Results.load(r)))
    return Results.concat([res for _, res in loaded], labels=[label for label, _ in loaded])


def comparison_table(results: Results, columns: Sequence[str] = TABLE_COLUMNS) -> Any:
    """The main figures with one column per target and one row per batch size (or rate);
    with repeats, each figure's 95% interval beside it (`<metric>_ci_low`, `_ci_high`).

    Example:
        >>> llmbench.comparison_table(llmbench.compare(["results/vllm", "results/tgi"]))
    """
    s = results.summary
    x = "batch_size" if s["batch_size"].notna().any() else "target_rate"
    cols = [
        c for metric in columns for c in (metric, f"{metric}_ci_low", f"{metric}_ci_high") if c in s
    ]
    return s.pivot_table(index=x, columns="target", values=cols, sort=True)
