"""Repeated runs: the per-repeat summary rows folded into one row per stage, with the mean,
95% interval and coefficient of variation of the headline metrics (`llmbench.stats`,
Student's t over repeats; docs/comparisons.md says why).

Each repeat runs every stage of every target once; targets take turns in alternating order
(A B, then B A, ...) so that a slow drift of the machine or the server hits every target
alike. Every repeat sends the same requests on the same schedule (the run's seed), so the
interval measures the servers' and the machine's run-to-run spread, not the sampling of the
workload.
"""

from __future__ import annotations

from typing import Any

from . import _deps
from .stats import LEVEL, t_interval

#: Repeats of every stage unless asked otherwise.
DEFAULT_REPEATS = 1

#: The metrics that get `<metric>_ci_low`, `<metric>_ci_high` and `<metric>_cv`.
HEADLINE = (
    "ttft_p50_ms",
    "ttft_p99_ms",
    "tpot_mean_ms",
    "itl_mean_ms",
    "e2e_p50_ms",
    "output_tok_s",
    "req_s",
    "goodput_req_s",
    "usd_per_1m_output_tokens",
)

#: How the manifest states the method.
METHOD = {
    "interval": f"Student's t over repeats ({LEVEL:.0%}), one value per repeat and stage",
    "order": "targets alternate per repeat (A B, B A, ...); every repeat sends the same "
    "requests on the same schedule",
    "columns": "<metric> is the mean over repeats; <metric>_ci_low / _ci_high the interval; "
    "<metric>_cv the coefficient of variation (sd / mean)",
}

# Group keys: one summary row per (target, stage).
_KEYS = ("target", "stage")
# Columns that say what a stage is rather than what it measured.
_FIRST = (
    "api",
    "model",
    "batch_size",
    "target_rate",
    "n_gpus",
    "n_in_source",
    "n_out_source",
    "client_cores",
)
# Counts, added over repeats.
_SUMMED = ("n_", "errors_", "late_sends")


def order(targets: list[Any], repeat: int) -> list[Any]:
    """The targets in the order repeat `repeat` runs them: forward, then reversed, ..."""
    return list(targets) if repeat % 2 == 0 else list(reversed(targets))


def aggregate(per_repeat: Any) -> Any:
    """One row per (target, stage) from per-repeat rows (`repeat` column): counts summed,
    `interrupted` if any repeat was, `slo_met` only if every repeat met it, the worst
    client verdict, other numbers averaged; headline metrics with their interval."""
    pd = _deps.pandas()
    if not len(per_repeat):
        return per_repeat.drop(columns=["repeat"], errors="ignore")
    rows = []
    for _, group in per_repeat.groupby(list(_KEYS), sort=False):
        row: dict[str, Any] = {}
        for col in per_repeat.columns:
            if col == "repeat":
                continue
            row[col] = _fold(col, group[col])
        row["repeats"] = int(group["repeat"].nunique())
        for metric in HEADLINE:
            if metric not in group:
                continue
            iv = t_interval(pd.to_numeric(group[metric], errors="coerce"))
            row[metric] = iv.mean
            row[f"{metric}_ci_low"] = iv.low
            row[f"{metric}_ci_high"] = iv.high
            row[f"{metric}_cv"] = iv.cv
        rows.append(row)
    return pd.DataFrame(rows)


def _fold(col: str, values: Any) -> Any:
    pd = _deps.pandas()
    if col in _KEYS or col in _FIRST:
        return values.iloc[0]
    if col == "interrupted":
        return bool(values.astype(bool).any())
    if col == "slo_met":
        return bool(values.astype(bool).all())
    if col in ("client_trustworthy", "itl_exact_percentiles", "t_start_ns"):
        return pd.to_numeric(values, errors="coerce").min()
    if col == "t_end_ns":
        return pd.to_numeric(values, errors="coerce").max()
    if values.dtype == object or pd.api.types.is_string_dtype(values):
        seen = [str(v) for v in dict.fromkeys(values.dropna()) if str(v)]
        return "; ".join(seen) if seen else values.iloc[0]
    if pd.api.types.is_bool_dtype(values):
        return bool(values.all())
    if col.startswith(_SUMMED) and pd.api.types.is_integer_dtype(values):
        return values.sum()
    return pd.to_numeric(values, errors="coerce").mean()
