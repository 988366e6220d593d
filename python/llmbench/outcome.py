"""What a finished sweep may claim: the rule a user can predict for failed requests and
for results that did not reach the disk (docs/reliability.md, "What a run reports").

- A stage with no successful request is a warning (`RunFailedWarning`) naming its error
  kinds; the run goes on, since a later stage (a lower load, say) may succeed.
- A run with no successful request in any stage is a failed run: the same warning, the
  manifest's `all_failed` says why, and the `llmbench` command exits non-zero.
- A run whose record file or results files could not be written raises
  `ResultsNotSaved` (the results are still in memory on the exception); the command exits
  non-zero and never prints that results were written.
"""

from __future__ import annotations

from typing import Any

ERROR_PREFIX = "errors_"


def _error_kinds(row: Any) -> str:
    kinds = [
        f"{int(v)} {k[len(ERROR_PREFIX) :]}"
        for k, v in row.items()
        if k.startswith(ERROR_PREFIX) and v == v and int(v) > 0
    ]
    return ", ".join(kinds) or "no error recorded"


def failed_stages(summary: Any) -> tuple[list[str], str | None]:
    """Warnings for the stages with requests but no success, and the failed-run message
    when no stage of any target had one (None otherwise)."""
    if not len(summary) or "n_ok" not in summary:
        return [], None
    notes = []
    for _, row in summary.iterrows():
        if int(row.get("n_ok", 0) or 0) == 0 and int(row.get("n_failed", 0) or 0) > 0:
            load = (
                f"batch {int(row['batch_size'])}"
                if row.get("batch_size") == row.get("batch_size")
                and row.get("batch_size") is not None
                else f"stage {int(row['stage'])}"
            )
            notes.append(
                f"{row['target']} {load}: none of its {int(row['n_failed'])} requests "
                f"succeeded ({_error_kinds(row)})"
            )
    total_ok = int(summary["n_ok"].fillna(0).sum())
    total_failed = int(summary["n_failed"].fillna(0).sum()) if "n_failed" in summary else 0
    if total_ok == 0 and total_failed > 0:
        totals = summary[[c for c in summary.columns if c.startswith(ERROR_PREFIX)]].sum()
        return notes, (
            f"every request failed: {total_failed} of {total_failed} "
            f"({_error_kinds(totals)}); see the records' `error` column"
        )
    return notes, None
