"""A/B comparison: two targets on one seeded schedule, in alternating blocks, with the
difference B − A of each metric, its 95% interval, a p-value and a verdict.

`ab(a, b, ...)` is `run_sweep([a, b], repeats=N)`: every repeat is a block in which both
targets run every stage with the same requests on the same arrival schedule, A first in
even blocks and B first in odd ones (A B B A A B …), so a slow drift of the machine or the
servers cancels. Latency percentiles are compared on the per-request distributions, block
by block, then combined across blocks; stage-level aggregates (throughput, cost) are
paired across blocks (`llmbench.stats`; docs/comparisons.md gives the methods and why).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import _deps
from ._core import InvalidArgumentError
from .plots import stage_name
from .run_data import RunData as Results
from .stats import (
    LEVEL,
    NO_DIFFERENCE,
    Difference,
    paired_log_ratio,
    per_request_difference,
    units_needed,
)

#: Latency percentiles compared on per-request values: summary column, request column,
#: statistic.
PER_REQUEST = (
    ("ttft_p50_ms", "ttft_ms", "p50"),
    ("ttft_p99_ms", "ttft_ms", "p99"),
    ("tpot_p50_ms", "tpot_ms", "p50"),
    ("e2e_p50_ms", "e2e_ms", "p50"),
    ("e2e_p99_ms", "e2e_ms", "p99"),
)
#: Stage-level values, one per block, compared paired across blocks.
PER_BLOCK = (
    "output_tok_s",
    "req_s",
    "goodput_req_s",
    "itl_mean_ms",
    "tpot_mean_ms",
    "usd_per_1m_output_tokens",
)
#: Metrics where more is better (for the rest, less is).
HIGHER_IS_BETTER = ("output_tok_s", "req_s", "goodput_req_s")

LABELS = {
    "ttft_p50_ms": "TTFT p50",
    "ttft_p99_ms": "TTFT p99",
    "tpot_p50_ms": "TPOT p50",
    "e2e_p50_ms": "E2E p50",
    "e2e_p99_ms": "E2E p99",
    "output_tok_s": "output throughput",
    "req_s": "request throughput",
    "goodput_req_s": "goodput",
    "itl_mean_ms": "ITL mean",
    "tpot_mean_ms": "TPOT mean",
    "usd_per_1m_output_tokens": "cost per 1M output tokens",
}

#: The default statement's metric.
PRIMARY = "ttft_p50_ms"
#: The power the "requests needed" figures are for: a true difference of that size is
#: found 99 times in 100.
POWER = 0.99
#: How many times the bare power calculation a plan asks for: a pilot's spread is itself
#: uncertain, its blocks may agree better than a later run's, and the client's own noise
#: dilutes a server's difference. Measured: a pilot's bare 99%-power plan for a 4% TTFT
#: difference found it in 92 of 100 trials (tests/python/test_comparisons.py).
MARGIN = 1.5
#: The difference the table's `needed_for_5pct` column is for, in percent.
RESOLVE_PCT = 5.0

DEFAULT_BLOCKS = 4


def _p_text(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


@dataclass
class ABResult:
    """What an A/B comparison found.

    Attributes:
        a, b: the two targets' names.
        results: the run itself (`Results`, both targets, with repeats).
        table: one row per stage and metric: `metric`, `a`, `b` (A's and B's value),
            `diff_pct` (B − A in percent of A), `ci_low_pct`, `ci_high_pct`, `p_value`,
            `verdict`, `better` (which target, where the difference is resolved), `unit`
            and `needed_for_5pct` (requests per target, or blocks, that would resolve a
            5% difference with 99% power at the spread observed), `method`.

    Example:
        >>> r = llmbench.ab(vllm, tgi, batch_sizes=[1, 8, 32], repeats=4)
        >>> r.table[["batch_size", "metric", "diff_pct", "ci_low_pct", "ci_high_pct", "verdict"]]
        >>> print(r.statement)
    """

    a: str
    b: str
    results: Results
    table: Any
    level: float = LEVEL

    @property
    def statement(self) -> str:
        """The TTFT p50 finding at every stage, one line each, to paste."""
        return "\n".join(self.statements(PRIMARY))

    def statements(self, metric: str | None = None) -> list[str]:
        """One line per stage (and metric, or only `metric`)."""
        rows = self.table if metric is None else self.table[self.table["metric"] == metric]
        return [self._line(row) for row in rows.to_dict(orient="records")]

    def _line(self, row: dict[str, Any]) -> str:
        label = LABELS.get(row["metric"], row["metric"])
        where = _where(row)
        level = f"{self.level:.0%}"
        if not math.isfinite(row["diff_pct"]):
            return f"{label}{where}: no comparison: {row['verdict']}"
        if not math.isfinite(row["ci_low_pct"]):
            return (
                f"{label}{where}: {self.b} {row['diff_pct']:+.1f}% against {self.a}, "
                f"with no interval ({row['verdict']})"
            )
        span = f"{row['ci_low_pct']:+.1f}…{row['ci_high_pct']:+.1f}%"
        if row["p_value"] < 1 - self.level:
            direction = "higher" if row["diff_pct"] > 0 else "lower"
            return (
                f"{self.b}'s {label}{where} is {abs(row['diff_pct']):.1f}% {direction} than "
                f"{self.a}'s ({level} CI {span}, {_p_text(row['p_value'])})"
            )
        needed = row["needed_for_5pct"]
        unit = "requests per target" if row["unit"] == "requests" else "blocks"
        more = (
            f"; about {needed:,.0f} {unit} would resolve a {RESOLVE_PCT:g}% difference"
            if math.isfinite(needed)
            else ""
        )
        return (
            f"{label}{where}: no difference this run can resolve between {self.a} and "
            f"{self.b}: the {level} CI spans {span}{more}"
        )

    def requests_needed(self, diff_pct: float, power: float = POWER, margin: float = MARGIN) -> Any:
        """Per stage and metric, how many requests per target (per-request metrics) or
        blocks (stage-level ones) would resolve a true difference of `diff_pct` percent
        with probability `power`, from the spread this run observed, times `margin` (see
        `MARGIN`): the sample docs/comparisons.md recommends.

        Example:
            >>> r.requests_needed(4.0)
        """
        out = self.table[[*_x_columns(self.table), "metric", "unit", "_units", "_se_log"]].copy()
        out["needed"] = [
            _needed(u, se, diff_pct, power, self.level, unit, margin)
            for u, se, unit in zip(out["_units"], out["_se_log"], out["unit"], strict=True)
        ]
        return out.drop(columns=["_units", "_se_log"])

    def save(self, out_dir: str | Path, report: bool = True) -> list[Path]:
        """The run's files (`Results.save`, with `report.html` unless `report=False`)
        plus `ab_table.csv` and `ab.json` (the table, the statements and the method).

        Example:
            >>> r.save("results/ab_vllm_tgi")
        """
        return [*self.results.save(out_dir, report=report), *self.write_files(out_dir)]

    def write_files(self, out_dir: str | Path) -> list[Path]:
        """Only `ab_table.csv` and `ab.json` (what `ab(..., out_dir=...)` adds to the run's
        own files)."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        table = out / "ab_table.csv"
        self.public_table().to_csv(table, index=False)
        summary = out / "ab.json"
        summary.write_text(
            json.dumps(
                {
                    "a": self.a,
                    "b": self.b,
                    "level": self.level,
                    "method": METHOD,
                    "statements": self.statements(),
                    "table": [
                        {k: _json_value(v) for k, v in row.items()}
                        for row in self.public_table().to_dict(orient="records")
                    ],
                },
                indent=1,
            ),
            encoding="utf-8",
        )
        return [table, summary]

    def public_table(self) -> Any:
        """The table without its internal columns."""
        return self.table.drop(columns=["_units", "_se_log"])

    def __repr__(self) -> str:
        return f"ABResult(a={self.a!r}, b={self.b!r}, rows={len(self.table)})\n{self.statement}"


METHOD = {
    "blocks": "each repeat is a block: both targets run every stage with the same requests on "
    "the same schedule, A first in even blocks and B first in odd ones (A B B A ...)",
    "per_request": "latency percentiles: per block, log(B/A) of the sample percentiles with "
    "distribution-free (Maritz-Jarrett) standard errors; "
    "blocks combined by DerSimonian-Laird random effects (normal interval and test)",
    "per_block": "throughput, ITL/TPOT means, cost: paired t over the blocks' log(B/A)",
    "power": f"needed_for_5pct: requests per target (or blocks) that resolve a "
    f"{RESOLVE_PCT:g}% difference with {POWER:.0%} power at the spread observed, times "
    f"{MARGIN:g} for the uncertainty of that spread",
}


def _json_value(v: Any) -> Any:
    if isinstance(v, (float, np.floating)):
        return float(v) if math.isfinite(float(v)) else None
    if isinstance(v, np.integer):
        return int(v)
    return v


def _x_columns(table: Any) -> list[str]:
    return [c for c in ("stage", "batch_size", "target_rate") if c in table]


def _where(row: dict[str, Any]) -> str:
    name = stage_name(row)
    return f" at {name}" if name else ""


def compare_ab(results: Results, a: str, b: str, level: float = LEVEL) -> ABResult:
    """The A/B table of a run holding targets `a` and `b` (e.g. `Results.load` of a saved
    `ab` run, or any run with repeats: block `r` is repeat `r`).

    Example:
        >>> r = llmbench.compare_ab(llmbench.Results.load("results/ab"), "vllm", "tgi")
    """
    pd = _deps.pandas()
    per_repeat = results.repeats
    names = set(per_repeat["target"]) if len(per_repeat) else set()
    for name in (a, b):
        if name not in names:
            raise InvalidArgumentError(f"no target {name!r} in these results ({sorted(names)})")
    requests = results.read_requests(
        ["stage", "repeat", "ok", *{col for _, col, _ in PER_REQUEST}], targets=[a, b]
    )
    rows = []
    for stage, stage_rows in per_repeat.groupby("stage", sort=True):
        first = stage_rows.iloc[0]
        base = {
            "stage": int(stage),
            "batch_size": first.get("batch_size"),
            "target_rate": first.get("target_rate"),
        }
        ra = stage_rows[stage_rows["target"] == a].set_index("repeat")
        rb = stage_rows[stage_rows["target"] == b].set_index("repeat")
        blocks = sorted(set(ra.index) & set(rb.index))
        at_stage = requests[(requests["stage"] == stage) & requests["ok"].astype(bool)]
        n_ok = {t: int((at_stage["target"] == t).sum()) for t in (a, b)}
        # Each (target, block)'s requests, split once for every metric.
        cells = dict(tuple(at_stage.groupby(["target", "repeat"], sort=False)))
        for metric, column, statistic in PER_REQUEST:
            xa = [_values(cells, a, r, column) for r in blocks]
            xb = [_values(cells, b, r, column) for r in blocks]
            d = (
                per_request_difference(xa, xb, statistic, level)
                if min(n_ok.values()) > 0
                else NO_DIFFERENCE
            )
            pooled_a = np.concatenate(xa) if xa else np.zeros(0)
            pooled_b = np.concatenate(xb) if xb else np.zeros(0)
            rows.append(
                _row(
                    base,
                    metric,
                    _stat(pooled_a, statistic),
                    _stat(pooled_b, statistic),
                    d,
                    "requests",
                    min(n_ok.values()),
                    _why_none(n_ok, a, b),
                    level,
                )
            )
        for metric in PER_BLOCK:
            if metric not in stage_rows or stage_rows[metric].isna().all():
                continue
            va = pd.to_numeric(ra.loc[blocks, metric], errors="coerce").to_numpy(float)
            vb = pd.to_numeric(rb.loc[blocks, metric], errors="coerce").to_numpy(float)
            d = paired_log_ratio(va, vb, level)
            rows.append(
                _row(
                    base,
                    metric,
                    float(np.nanmean(va)) if np.isfinite(va).any() else math.nan,
                    float(np.nanmean(vb)) if np.isfinite(vb).any() else math.nan,
                    d,
                    "blocks",
                    len(blocks),
                    _why_none(n_ok, a, b) or ("needs 2 blocks or more" if len(blocks) < 2 else ""),
                    level,
                )
            )
    table = pd.DataFrame(rows)
    if len(table) and table["batch_size"].isna().all():
        table = table.drop(columns=["batch_size"])
    elif len(table) and "target_rate" in table and table["target_rate"].isna().all():
        table = table.drop(columns=["target_rate"])
    return ABResult(a, b, results, table, level)


def _needed(
    units: float,
    se_log: float,
    diff_pct: float,
    power: float,
    level: float,
    unit: str,
    margin: float = MARGIN,
) -> float:
    """`units_needed` times `margin`, rounded up; a paired comparison needs two blocks at
    least."""
    n = margin * units_needed(units, se_log, diff_pct, power, level)
    if not math.isfinite(n):
        return n
    return float(max(math.ceil(n), 2 if unit == "blocks" else 1))


def _values(cells: dict[Any, Any], target: str, repeat: int, column: str) -> np.ndarray:
    """The finite `column` values of one target's requests in one block."""
    cell = cells.get((target, repeat))
    if cell is None:
        return np.zeros(0)
    v = np.asarray(cell[column], dtype=float)
    return v[np.isfinite(v)]


def _stat(x: np.ndarray, statistic: str) -> float:
    if len(x) == 0:
        return math.nan
    if statistic == "mean":
        return float(x.mean())
    return float(np.quantile(x, int(statistic[1:]) / 100))


def _why_none(n_ok: dict[str, int], a: str, b: str) -> str:
    failed = [t for t in (a, b) if n_ok[t] == 0]
    if failed:
        return " and ".join(failed) + " completed no request here"
    return ""


def _row(
    base: dict[str, Any],
    metric: str,
    value_a: float,
    value_b: float,
    d: Difference,
    unit: str,
    units: int,
    why_none: str,
    level: float,
) -> dict[str, Any]:
    diff, low, high = d.pct
    if why_none:
        verdict = why_none
    elif not math.isfinite(diff):
        verdict = "too few values"
    elif not math.isfinite(low):
        verdict = "no interval: " + (
            "needs 2 blocks or more"
            if unit == "blocks"
            else "too few (or all equal) requests per block for this percentile"
        )
    elif d.p_value < 1 - level:
        verdict = "B higher" if diff > 0 else "B lower"
    else:
        verdict = "no resolvable difference"
    better = ""
    if verdict in ("B higher", "B lower"):
        b_better = (diff > 0) == (metric in HIGHER_IS_BETTER)
        better = "B" if b_better else "A"
    return {
        **base,
        "metric": metric,
        "a": value_a,
        "b": value_b,
        "diff_pct": diff,
        "ci_low_pct": low,
        "ci_high_pct": high,
        "p_value": d.p_value,
        "verdict": verdict,
        "better": better,
        "unit": unit,
        "needed_for_5pct": _needed(units, d.se_log, RESOLVE_PCT, POWER, level, unit),
        "method": d.method,
        "_units": units,
        "_se_log": d.se_log,
    }
