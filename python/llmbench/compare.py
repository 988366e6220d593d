"""Comparing saved runs: vLLM against TGI against the baseline, in one table and one set of
plots (throughput, TTFT, ITL and cost per million tokens against batch size)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ._core import InvalidArgumentError
from .results import Results
from .run_data import TABLE_COLUMNS, comparison_table

__all__ = ["TABLE_COLUMNS", "compare", "comparison_table"]


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
