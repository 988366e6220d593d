"""Logging results to Weights & Biases, without ever putting the benchmark at risk.

Everything runs in a worker thread with a deadline: if the W&B service stalls (the seed
notebook's logging could hang until the kernel was restarted), the call gives up after
`timeout_s`, warns, and returns; the benchmark's own files were written before logging
started. Works offline (`WANDB_MODE=offline` or `mode="offline"`): the run is written under
`./wandb/` for a later `wandb sync`. API keys never reach W&B: targets are logged through
their `describe()`, which has none.
"""

from __future__ import annotations

import threading
from io import StringIO
from typing import Any

from . import _deps
from ._core import LlmbenchError
from .errors import warn
from .plots import figures
from .report import report_html
from .run_data import RunData as Results

# Summary columns logged as metrics per stage (the rest is in the table).
METRIC_COLUMNS = (
    "output_tok_s",
    "total_tok_s",
    "req_s",
    "ttft_p50_ms",
    "ttft_p99_ms",
    "itl_mean_ms",
    "tpot_mean_ms",
    "e2e_p50_ms",
    "usd_per_1m_output_tokens",
    "n_ok",
    "n_failed",
    "decode_tok_s",
    "prefill_ms",
    "kv_cache_gib",
    "gpu_mem_used_max_gib",
    "gpu_power_mean_w",
    "goodput_req_s",
)
MAX_REQUEST_ROWS = 100_000


class WandbTimeoutWarning(UserWarning):
    """W&B logging did not finish in time; the results on disk are complete."""


def _finite(v: Any) -> Any:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return v
    return f if f == f and abs(f) != float("inf") else None


def _log(results: Results, wandb: Any, settings: dict[str, Any]) -> str:
    manifest = results.manifest
    config = {
        "llmbench_version": manifest.get("llmbench_version"),
        "kind": manifest.get("kind"),
        "targets": manifest.get("targets"),
        "servers": manifest.get("servers"),
        "settings": manifest.get("settings"),
        "prompts": manifest.get("prompts"),
        "host": manifest.get("host"),
        "model_arch": manifest.get("model_arch"),
        **settings.pop("config", {}),
    }
    run = wandb.init(config=config, job_type=settings.pop("job_type", "benchmark"), **settings)
    try:
        summary = results.summary
        x = "batch_size" if "batch_size" in summary else "target_rate"
        for step, row in enumerate(summary.to_dict(orient="records")):
            metrics = {f"{row['target']}/{c}": _finite(row[c]) for c in METRIC_COLUMNS if c in row}
            metrics[x] = _finite(row.get(x))
            run.log(metrics, step=step)
        run.log({"summary_table": wandb.Table(dataframe=summary.astype(object))})
        if "repeats" in summary:
            # Repeats: the intervals are in the summary table; each repeat's row here.
            run.log({"repeats_table": wandb.Table(dataframe=results.repeats.astype(object))})
        # The first rows only, read from the record files without reading them whole.
        requests = results.read_requests(limit=MAX_REQUEST_ROWS)
        run.log({"requests_table": wandb.Table(dataframe=requests.astype(str))})
        if results.gpu is not None and len(results.gpu):
            run.log({"gpu_timeline": wandb.Table(dataframe=results.gpu)})
        # The self-contained report, as in the results folder (a StringIO: W&B would
        # take a plain string ending in .html for a path).
        run.log({"report": wandb.Html(StringIO(report_html(results)), inject=False)})
        plt = _deps.pyplot()
        for key, fig in figures(results).items():
            run.log({f"plots/{key}": wandb.Image(fig)})
            plt.close(fig)
        run.summary["n_requests"] = int(summary["n_requests"].sum()) if len(summary) else 0
        run.summary["interrupted"] = results.interrupted
        return str(run.dir)
    finally:
        run.finish()


def log_wandb(results: Results, *, timeout_s: float = 120.0, **settings: Any) -> str | None:
    """Log `results` to W&B: the run's config (targets without keys, server info, sweep
    settings), one step per stage with the main metrics per target, the summary and the
    requests as tables, the GPU timeline, the plots as images and the HTML report
    (`report`, as `wandb.Html`). Returns the run's
    folder, or None when logging failed or timed out (with a warning).

    `settings` go to `wandb.init` (`project`, `name`, `entity`, `mode`, `tags`, ...;
    `config` entries are added to llmbench's).

    Example:
        >>> res.log_wandb(project="llmbench", name="vllm-h100", mode="offline")
    """
    try:
        import wandb
    except ImportError as e:
        raise LlmbenchError("W&B logging needs the wandb package: pip install wandb") from e
    settings.setdefault("project", "llmbench")
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["dir"] = _log(results, wandb, dict(settings))
        except Exception as e:  # any failure of the logging service must not escape
            outcome["error"] = e

    worker = threading.Thread(target=work, name="llmbench-wandb", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        warn(
            f"W&B logging did not finish within {timeout_s:g} s and was abandoned; the "
            "results themselves are complete (saved files and the returned object)",
            WandbTimeoutWarning,
        )
        return None
    if "error" in outcome:
        warn(f"W&B logging failed: {outcome['error']}", RuntimeWarning)
        return None
    return outcome.get("dir")
