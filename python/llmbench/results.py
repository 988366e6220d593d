"""`Results`: what a sweep measured (`llmbench.run_data.RunData`, a value) with the
methods that delegate to the functions writing, drawing and logging it:
`save` (`llmbench.saving.save`), `to_html` (`llmbench.report.write_report`), `plot`
(`llmbench.plots`), `log_wandb` (`llmbench.wandb_log.log_wandb`).

The files a run writes are listed in `llmbench.saving`.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from . import plots as _plots
from . import saving as _saving
from .plots import PLOT_FILES
from .report import write_report
from .run_data import (
    JSON_RECORDS_LIMIT,
    KEY_COLUMNS,
    RunData,
    _finite_or_none,
    _frame_to_columns,
    _pick_records,
    _records_from_json,
    _tidy_requests,
    engine_summary,
    fold_repeats,
    turn_table,
)
from .wandb_log import log_wandb as _log_wandb

__all__ = [
    "JSON_RECORDS_LIMIT",
    "KEY_COLUMNS",
    "PLOT_FILES",
    "Results",
    "_finite_or_none",
    "_frame_to_columns",
    "_pick_records",
    "_records_from_json",
    "_tidy_requests",
    "engine_summary",
    "fold_repeats",
    "turn_table",
]


class Results(RunData):
    """What a sweep measured.

    Attributes:
        summary: one row per target x batch size (see `KEY_COLUMNS` for the main ones).
        requests: one row per measured request (warm-up excluded), read from the record
            files on first use; `read_requests(columns, stages)` reads only what it is
            asked for (a long run's records are never all in memory unless asked).
        warmup: the warm-up requests, reported apart.
        manifest: how the run was made (llmbench version, targets, server info, prompts
            hash, seed, host, settings).
        repeats: one row per target x stage x repeat (`repeat` column); without repeats
            the summary with `repeat` 0.

    A `Results` is a value: built once by the sweep and never changed afterwards
    (`replace` makes a new one).

    Example:
        >>> res = llmbench.run_sweep(target, batch_sizes=[1, 8])
        >>> res.summary[["batch_size", "output_tok_s", "ttft_p50_ms"]]
        >>> res.save("results/metrics_study")
    """

    @classmethod
    def from_engine(
        cls,
        outputs: list[tuple[dict[str, Any], dict[str, Any], int]],
        manifest: dict[str, Any],
        records: Any,
    ) -> Results:
        """Assemble from the engine's outputs, (target description, output, repeat), and
        the record files they wrote, the repeats folded (`engine_summary`,
        `fold_repeats`)."""
        n = int((manifest.get("settings") or {}).get("repeats") or 1)
        summary, per_repeat = fold_repeats(engine_summary(outputs, manifest), n)
        return cls(summary, records, manifest, repeats=per_repeat)

    def save(
        self,
        out_dir: str | Path,
        plots: bool = True,
        records_in_json: bool | None = None,
        report: bool = True,
    ) -> list[Path]:
        """Write the run's files into `out_dir` (`llmbench.saving.save`): the record
        files, `metrics_data.json`, `metrics_summary.csv`, the plots and (unless
        `report=False`) `report.html`. `records_in_json`: see `to_dict`.

        Example:
            >>> res.save("results/metrics_study")
        """
        return _saving.save(self, out_dir, plots, records_in_json, report)

    def save_report(self, out_dir: str | Path) -> list[Path]:
        """Write `report.html` into `out_dir` (`llmbench.saving.save_report`): a failure
        to draw it is a warning, never an error."""
        return _saving.save_report(self, out_dir)

    def to_html(self, path: str | Path, title: str | None = None) -> Path:
        """Write this run (or comparison) as one self-contained HTML page that opens
        offline in any browser (`llmbench.report.write_report`; docs/report.md).

        Example:
            >>> res.to_html("results/metrics_study/report.html")
        """
        return write_report(self, path, title)

    def plot(self, out_dir: str | Path | None = None, close: bool = False) -> Any:
        """Throughput, TTFT, ITL and cost vs batch size, one line per target.

        Returns a dict of matplotlib figures, or with `out_dir` the list of PNG paths
        (`llmbench.plots.figures`, `llmbench.plots.save_plots`).

        Example:
            >>> figs = res.plot()
            >>> figs["throughput"].savefig("throughput.png")
        """
        if out_dir is None:
            return _plots.figures(self)
        return _plots.save_plots(self, out_dir, close=close)

    def log_wandb(self, *, timeout_s: float = 120.0, **settings: Any) -> str | None:
        """Log to Weights & Biases (`llmbench.wandb_log.log_wandb`); never raises for a
        stalled or failing W&B service, and gives up after `timeout_s`.

        Example:
            >>> res.log_wandb(project="llmbench", name="vllm-h100")
        """
        return _log_wandb(self, timeout_s=timeout_s, **settings)

    def attach_telemetry(self, frames: dict[str, Any]) -> None:
        """Deprecated: a `Results` is a value; use `res.replace(gpu=..., server_metrics=...,
        gpu_processes=...)`, which returns a new one. Still sets them on this one."""
        warnings.warn(
            "Results.attach_telemetry is deprecated: use Results.replace(gpu=..., "
            "gpu_processes=..., server_metrics=...)",
            DeprecationWarning,
            stacklevel=2,
        )
        self.gpu = frames.get("gpu")
        self.gpu_processes = frames.get("gpu_processes")
        self.server_metrics = frames.get("server_metrics")

    def fold_repeats(self) -> None:
        """Deprecated: a sweep's `Results` arrive folded (`llmbench.results.fold_repeats`
        folds a summary). Folds this one in place if it still has a `repeat` column."""
        warnings.warn(
            "Results.fold_repeats is deprecated: results arrive folded; "
            "llmbench.results.fold_repeats(summary, repeats) folds a summary",
            DeprecationWarning,
            stacklevel=2,
        )
        n = int((self.manifest.get("settings") or {}).get("repeats") or 1)
        self.summary, per_repeat = fold_repeats(self.summary, n)
        if per_repeat is not None:
            self._repeats = per_repeat
