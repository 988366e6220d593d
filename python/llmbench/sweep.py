"""`run_sweep`: closed-loop batch-size sweeps against one or more targets."""

from __future__ import annotations

import datetime as _dt
import inspect
import json
import os
import platform
import re
import sys
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import _core, client_health
from ._core import InvalidArgumentError, ResultsIOError
from ._run_telemetry import RunTelemetry, add_stage_columns
from .datasets import Dataset, Trace
from .errors import SweepInterrupted
from .kv import model_arch as _model_arch
from .pricing import gpu_price
from .prompts import load_prompts, prompts_hash
from .results import Results
from .slo import SLO, add_slo_columns
from .targets import Target

DEFAULT_BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64, 128)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "target"


class _ProgressLine:
    """A one-line live progress report on stderr, rewritten in place."""

    def __init__(self, target: str, n_stages: int, batch_sizes: Sequence[int]) -> None:
        self.target = target
        self.n_stages = n_stages
        self.batch_sizes = list(batch_sizes)
        self.last_stage = -1

    def __call__(self, p: dict[str, Any]) -> None:
        stage = int(p["stage"])
        if stage != self.last_stage and self.last_stage >= 0:
            sys.stderr.write("\n")
        self.last_stage = stage
        ttft = p["ttft_mean_ms"]
        ttft_s = f"{ttft:7.1f} ms" if ttft == ttft else "      -"
        sys.stderr.write(
            f"\r[{self.target}] stage {stage + 1}/{self.n_stages} batch {p['batch_size']:>4}: "
            f"{p['ok']:>6} ok {p['failed']:>4} failed  {p['output_tok_s']:9.1f} tok/s  "
            f"TTFT {ttft_s}   "
        )
        sys.stderr.flush()

    def done(self) -> None:
        if self.last_stage >= 0:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _host() -> dict[str, Any]:
    return {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
    }


def _prepare(
    targets: Target | Iterable[Target],
    batch_sizes: Sequence[int],
    requests_per_stage: int | None,
    stage_duration_s: float | None,
    max_tokens: int,
    prompts: Any,
    seed: int,
    warmup_requests: int,
    tokenizer: str | Path | None,
    gpu_hourly_usd: str | float | None,
    n_gpus: int,
    out_dir: str | Path | None,
    open_loop: dict[str, Any] | None = None,
    warmup_s: float | None = None,
    cooldown_s: float | None = None,
    resume: bool = False,
) -> tuple[list[Target], list[dict[str, Any]], dict[str, Any]]:
    target_list = [targets] if isinstance(targets, Target) else list(targets)
    if not target_list:
        raise InvalidArgumentError("no target given")
    if not all(isinstance(t, Target) for t in target_list):
        raise InvalidArgumentError("targets must be llmbench.OpenAI or llmbench.TGI objects")
    names = [t.name for t in target_list]
    if len(set(names)) != len(names):
        raise InvalidArgumentError(f"target names must be unique, got {names}")
    batch_sizes = [int(b) for b in batch_sizes]
    if not batch_sizes or min(batch_sizes) < 1:
        raise InvalidArgumentError("batch_sizes must be a non-empty list of integers >= 1")
    if max_tokens < 1:
        raise InvalidArgumentError("max_tokens must be >= 1")
    if requests_per_stage is not None and requests_per_stage < 1:
        raise InvalidArgumentError("requests_per_stage must be >= 1")
    if warmup_requests < 0:
        raise InvalidArgumentError("warmup_requests must be >= 0")
    if n_gpus < 1:
        raise InvalidArgumentError("n_gpus must be >= 1")
    dataset = prompts if isinstance(prompts, Dataset) else None
    prompt_list = dataset.prompts if dataset is not None else load_prompts(prompts)
    price = gpu_price(gpu_hourly_usd)
    out = Path(out_dir) if out_dir is not None else None
    if resume and out is None:
        raise InvalidArgumentError("resume=True needs the out_dir of the interrupted run")
    configs = []
    for t in target_list:
        records_path = None
        if out is not None:
            records_path = out / f"requests_{_slug(t.name)}.jsonl"
            # A fresh run replaces the previous run's live record file of this target; a
            # resumed one continues it.
            if records_path.exists() and not resume:
                records_path.unlink()
        configs.append(
            {
                "target": t.to_spec(),
                "batch_sizes": batch_sizes,
                "requests_per_stage": requests_per_stage,
                "stage_duration_s": stage_duration_s,
                "max_tokens": int(max_tokens),
                "prompts": prompt_list,
                "max_tokens_per_prompt": dataset.max_tokens if dataset is not None else None,
                "seed": int(seed),
                "warmup_requests": int(warmup_requests),
                "tokenizer": str(tokenizer) if tokenizer is not None else None,
                "records_path": str(records_path) if records_path is not None else None,
                "pricing": {"usd_per_gpu_hour": price, "n_gpus": int(n_gpus)},
                "open_loop": open_loop,
                "warmup_s": warmup_s,
                "cooldown_s": cooldown_s,
                "resume": bool(resume),
            }
        )
    manifest = {
        "llmbench_version": _core.__version__,
        "kind": "open_loop_sweep" if open_loop else "closed_loop_sweep",
        "started_at": _dt.datetime.now(_dt.timezone.utc).isoformat(),
        "targets": [t.describe() for t in target_list],
        "settings": {
            "batch_sizes": batch_sizes,
            "requests_per_stage": requests_per_stage,
            "stage_duration_s": stage_duration_s,
            "max_tokens": max_tokens,
            "seed": seed,
            "warmup_requests": warmup_requests,
            "tokenizer": str(tokenizer) if tokenizer is not None else None,
            "gpu_hourly_usd": price,
            "n_gpus": n_gpus,
            "open_loop": open_loop,
            "warmup_s": warmup_s,
            "cooldown_s": cooldown_s,
        },
        "prompts": dataset.describe()
        if dataset is not None
        else {"n": len(prompt_list), "sha256": prompts_hash(prompt_list)},
        "host": _host(),
        "gpu": None,
    }
    return target_list, configs, manifest


def _open_loop(
    rates: Sequence[float] | None, arrival: str, burstiness: float, max_in_flight: int | None
) -> dict[str, Any] | None:
    """The engine's open-loop settings, or None for closed-loop batch-size stages."""
    if rates is None:
        return None
    rate_list = [float(r) for r in rates]
    if not rate_list or min(rate_list) <= 0:
        raise InvalidArgumentError("rates must be a non-empty list of positive requests/s")
    if arrival not in ("poisson", "constant", "gamma", "ramp"):
        raise InvalidArgumentError(
            f"arrival must be 'poisson', 'constant', 'gamma' or 'ramp', got {arrival!r}"
        )
    ramp_end = None
    if arrival == "ramp":
        # One stage whose rate rises linearly from the first rate to the second.
        if len(rate_list) != 2:
            raise InvalidArgumentError("a ramp takes rates=[start, end] (one stage)")
        rate_list, ramp_end = rate_list[:1], rate_list[1]
    if max_in_flight is not None and max_in_flight < 1:
        raise InvalidArgumentError("max_in_flight must be >= 1")
    return {
        "rates": rate_list,
        "process": arrival,
        "burstiness": float(burstiness),
        "max_in_flight": max_in_flight,
        "ramp_end_rate": ramp_end,
    }


def arrival_schedule(
    rate: float,
    arrival: str = "poisson",
    *,
    requests: int | None = None,
    duration_s: float | None = None,
    seed: int = 0,
    burstiness: float = 1.0,
) -> Any:
    """The arrival offsets (seconds from the stage start) an open-loop stage uses: the
    same numbers as the engine's, from the same seed. A sweep's stage `i` uses seed
    `seed + i`.

    Example:
        >>> llmbench.arrival_schedule(100, "poisson", requests=5, seed=1)
        array([0.   , 0.00...
    """
    spec: dict[str, Any] = {"kind": arrival, "rate": float(rate)}
    if arrival == "gamma":
        spec["burstiness"] = float(burstiness)
    ns = _core.arrival_schedule(json.dumps(spec), requests, duration_s, int(seed))
    return ns / 1e9


def prompt_order(n_prompts: int, stage: int, requests: int, seed: int = 0) -> list[int]:
    """The prompt indices a sweep's stage `stage` uses for its first `requests` requests
    (in schedule order), for `n_prompts` prompts and the sweep's `seed`: the engine's own
    order, every prompt used once before any repeats.

    Example:
        >>> llmbench.prompt_order(5, stage=0, requests=5, seed=1)
        [3, 2, 1, 4, 0]
    """
    return list(_core.prompt_order(int(n_prompts), int(stage), int(requests), int(seed)))


def _finish(
    target_list: list[Target],
    outputs: list[dict[str, Any]],
    manifest: dict[str, Any],
    out_dir: str | Path | None,
    telemetry: RunTelemetry | None = None,
    arch: dict[str, Any] | None = None,
    slo: SLO | None = None,
) -> Results:
    manifest["servers"] = {
        t.name: json.loads(o["server_info_json"])
        for t, o in zip(target_list, outputs, strict=False)
    }
    manifest["warnings"] = [w for o in outputs for w in o["warnings"]]
    manifest["interrupted"] = any(o["interrupted"] for o in outputs) or len(outputs) < len(
        target_list
    )
    if outputs:
        manifest["clock"] = {
            "unix_anchor_ns": outputs[0]["unix_anchor_ns"],
            "monotonic_anchor_ns": outputs[0].get("monotonic_anchor_ns"),
            "note": "t_*_ns columns are ns on one monotonic clock; unix = unix_anchor_ns + t; "
            "the machine's CLOCK_MONOTONIC (time.monotonic_ns()) = monotonic_anchor_ns + t",
        }
    results = Results.from_engine(
        [(t.describe(), o) for t, o in zip(target_list, outputs, strict=False)], manifest
    )
    manifest["model_arch"] = arch
    if telemetry is not None:
        telemetry.stop()
        manifest["telemetry"] = telemetry.describe()
        manifest["warnings"] += telemetry.warnings
        frames = telemetry.to_frames()
        results.attach_telemetry(frames)
        results.summary = add_stage_columns(
            results.summary,
            results._all,
            results._chunks,
            frames,
            manifest["telemetry"]["scrape"],
            manifest["servers"],
            arch["bytes_per_token"] if arch else None,
        )
    if slo is not None and len(results.summary):
        add_slo_columns(results, slo)
    untrusted, near_limit = client_health.check(results.summary, client_health.load_calibration())
    # The engine already listed the untrustworthy stages in its warnings.
    manifest["warnings"] += near_limit
    client_health.warn_all(untrusted + near_limit)
    if out_dir is not None:
        try:
            results.save(out_dir)
        except ResultsIOError as e:
            # A full disk must not cost the measurements: they are returned (and every
            # record written before the disk filled is in requests_<target>.jsonl).
            note = f"{e}; the results are returned in memory only"
            manifest["warnings"].append(note)
            warnings.warn(note, ResultsIOWarning, stacklevel=3)
    return results


class ResultsIOWarning(UserWarning):
    """The results could not be written (e.g. a full disk); they were returned anyway."""


@dataclass
class _Plan:
    """Everything a sweep needs before it starts, shared by the sync and async entries."""

    target_list: list[Target]
    configs: list[dict[str, Any]]
    manifest: dict[str, Any]
    telemetry: RunTelemetry
    arch: dict[str, Any] | None
    slo: SLO | None


def _plan(targets: Target | Iterable[Target], s: dict[str, Any]) -> _Plan:
    """Check the arguments of `run_sweep` (all of them, in `s`) and build the engine's
    configs, the manifest and the (not yet started) telemetry."""
    rates, trace = s["rates"], s["trace"]
    requests_per_stage, prompts = s["requests_per_stage"], s["prompts"]
    open_loop = _open_loop(rates, s["arrival"], s["burstiness"], s["max_in_flight"])
    if trace is not None:
        if rates is not None:
            raise InvalidArgumentError("give rates or a trace, not both")
        prompts = trace.dataset
        open_loop = {
            "rates": [trace.rate()],
            "process": "trace",
            "trace_times_s": list(trace.times_s),
            "in_order": True,
            "max_in_flight": s["max_in_flight"],
        }
        requests_per_stage = len(trace.times_s)
    target_list, configs, manifest = _prepare(
        targets,
        s["batch_sizes"],
        requests_per_stage,
        s["stage_duration_s"],
        s["max_tokens"],
        prompts,
        s["seed"],
        s["warmup_requests"],
        s["tokenizer"],
        s["gpu_hourly_usd"],
        s["n_gpus"],
        s["out_dir"],
        open_loop,
        s["warmup_s"],
        s["cooldown_s"],
        s["resume"],
    )
    return _Plan(
        target_list,
        configs,
        manifest,
        RunTelemetry(s["gpu"], s["server_metrics"]),
        _model_arch(s["model_arch"]),
        SLO.of(s["slo"]) if s["slo"] is not None else None,
    )


def run_sweep(
    targets: Target | Iterable[Target],
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    requests_per_stage: int | None = None,
    max_tokens: int = 128,
    prompts: str | Path | Iterable[str] | Dataset | None = None,
    gpu_hourly_usd: str | float | None = None,
    out_dir: str | Path | None = None,
    *,
    stage_duration_s: float | None = None,
    seed: int = 0,
    warmup_requests: int = 1,
    tokenizer: str | Path | None = None,
    n_gpus: int = 1,
    progress: bool = True,
    gpu: bool | float = False,
    server_metrics: bool | float = True,
    model_arch: str | Path | None = None,
    rates: Sequence[float] | None = None,
    arrival: str = "poisson",
    burstiness: float = 1.0,
    max_in_flight: int | None = None,
    slo: SLO | dict[str, float] | None = None,
    warmup_s: float | None = None,
    cooldown_s: float | None = None,
    trace: Trace | None = None,
    resume: bool = False,
    wandb: bool | dict[str, Any] | None = None,
) -> Results:
    """Sweep batch sizes (requests in flight), or request rates, against one or more targets.

    Each stage keeps `batch_size` requests in flight until `requests_per_stage` requests
    (default `max(4 x batch_size, 16)`) have been sent, or `stage_duration_s` has passed.
    A warm-up request per target runs first and is reported apart. Records are written to
    `out_dir/requests_<target>.jsonl` as they complete; at the end `metrics_data.json`,
    `metrics_summary.csv` and the plots are written to `out_dir`.

    The GIL is released for the whole run. Ctrl-C cancels in-flight requests and raises
    `SweepInterrupted`, whose `.results` holds everything completed before it.

    Args:
        targets: an `OpenAI` or `TGI` target, or a list of them (measured in turn).
        batch_sizes: the concurrency points.
        requests_per_stage: requests per batch size.
        max_tokens: output token budget per request (force the length with the server's
            own option, e.g. `extra_body={"ignore_eos": True}` on vLLM).
        prompts: a `prompts.txt`-style file, a list of strings, a `llmbench.datasets`
            Dataset (prompts with their own output budgets), or None for the bundled set.
        gpu_hourly_usd: USD per GPU-hour or a preset name ("L4", "A100-80GB", "H100", ...);
            default 2.93 (L4).
        out_dir: folder for the result files (None: keep in memory only).
        stage_duration_s: stop starting new requests in a stage after this long.
        seed: seed of the prompt order.
        warmup_requests: warm-up requests per target (0 to skip).
        tokenizer: a `tokenizer.json` to count tokens where the server reports no usage.
        n_gpus: GPUs the server uses (for cost).
        progress: show live progress on stderr.
        gpu: sample the GPUs through NVML during the run (True: every 10 ms; a number:
            that period in ms). Without a driver the sweep runs on without GPU columns
            (a warning says so). Adds memory, utilisation, power and energy columns
            (`gpu_mem_used_max_gib`, `gpu_power_mean_w`, `j_per_output_token`, ...).
        server_metrics: poll the target's Prometheus `/metrics` (True: every second; a
            number: that period in ms; False: off). Adds the server's KV-cache columns
            (`kv_server_usage_max_pct`, `kv_server_tokens_max`).
        model_arch: a preset ("llama-2-7b", ...), `config.json` or model folder: KV-cache
            bytes per token, for the KV columns in GiB and the client-side estimate
            (`kv_client_est_gib_max`).
        rates: open-loop stages at these request rates (per second) instead of the batch
            sizes: requests are sent on a seeded arrival schedule whatever the server's
            state, each keeping its scheduled time, so client-side delay shows as
            `send_lag` and latencies from schedule (`ttft_sched`, `e2e_sched`) sit beside
            those from send. Default length: ten seconds' worth of requests (at least 16).
        arrival: the arrival process of open-loop stages: "poisson", "constant", "gamma",
            or "ramp" (then `rates=[start, end]`: one stage whose rate rises linearly over
            `stage_duration_s`).
        burstiness: the gamma process's shape (1 is Poisson; smaller is burstier).
        max_in_flight: cap on open-loop requests in flight; waiting for a slot is measured
            as send lag, never hidden.
        trace: replay a `llmbench.datasets.trace(...)`: one open-loop stage, each request
            at its recorded time with its own prompt and output budget (in order).
        warmup_s: after the warm-up requests, a warm-up wave this long at the first
            stage's load (a cold server's first wave), reported apart (`Results.warmup`).
        cooldown_s: pause this long after each stage, nothing sent, so the server drains.
        slo: latency limits (`llmbench.SLO` or a dict like `{"ttft_ms": 500, "tpot_ms":
            50, "percentile": 99}`): adds `slo_met`, `goodput_req_s`, `good_fraction` and
            the percentile of each limited metric per stage.
        resume: continue an interrupted run with the same settings from the record files
            in `out_dir`: stages it completed are kept (their records and summaries), the
            stage that was cut short and those never started are run.
        wandb: log the results to Weights & Biases once they are saved: True, or a dict
            of `wandb.init` settings (`project`, `name`, `mode`, `timeout_s`, ...). A
            stalled W&B service times out with a warning; it never costs the results.

    Example:
        >>> import llmbench
        >>> target = llmbench.OpenAI("http://localhost:8000", model="meta-llama/Llama-2-7b-chat-hf")
        >>> res = llmbench.run_sweep(target, batch_sizes=[1, 8, 32], max_tokens=128)
        >>> res.summary[["batch_size", "output_tok_s", "ttft_p50_ms", "usd_per_1m_output_tokens"]]
    """
    settings = {k: v for k, v in locals().items() if k not in ("targets", "progress", "wandb")}
    plan = _plan(targets, settings)
    target_list, configs, manifest = plan.target_list, plan.configs, plan.manifest
    telemetry, arch, slo_spec = plan.telemetry, plan.arch, plan.slo
    telemetry.start()
    outputs: list[dict[str, Any]] = []
    try:
        for target, config in zip(target_list, configs, strict=True):
            printer = _ProgressLine(target.name, len(config["batch_sizes"]), config["batch_sizes"])
            try:
                with telemetry.scraping(target):
                    out = _core.run_sweep(json.dumps(config), printer if progress else None)
            finally:
                if progress:
                    printer.done()
            outputs.append(out)
            if out["interrupted"]:
                break
    except KeyboardInterrupt:
        # Interrupted before the engine could return anything for this target (e.g. during
        # its warm-up): keep the targets already measured.
        results = _finish(target_list, outputs, manifest, out_dir, telemetry, arch, slo_spec)
        raise SweepInterrupted(results, _interrupt_message(results, out_dir)) from None
    except BaseException:
        telemetry.stop()
        raise
    results = _finish(target_list, outputs, manifest, out_dir, telemetry, arch, slo_spec)
    if results.interrupted:
        raise SweepInterrupted(results, _interrupt_message(results, out_dir))
    _maybe_log_wandb(results, wandb)
    return results


def _maybe_log_wandb(results: Results, wandb: bool | dict[str, Any] | None) -> None:
    """Log to W&B after the files are written (a stalled W&B never costs the results)."""
    if wandb:
        results.log_wandb(**(wandb if isinstance(wandb, dict) else {}))


def _interrupt_message(results: Results, out_dir: str | Path | None) -> str:
    n = len(results.requests)
    where = f"; saved to {out_dir}" if out_dir is not None else ""
    return f"sweep interrupted: {n} completed requests kept in .results{where}"


async def run_sweep_async(targets: Target | Iterable[Target], **kwargs: Any) -> Results:
    """`run_sweep` for code with a running event loop (e.g. notebooks using asyncio).

    Takes `run_sweep`'s arguments (by keyword; `progress` is ignored: no live line).
    Cancelling the awaiting task cancels the sweep; records already written stay on disk.

    Example:
        >>> res = await llmbench.run_sweep_async(target, batch_sizes=[1, 4])
    """
    try:
        bound = inspect.signature(run_sweep).bind(targets, **kwargs)
    except TypeError as e:
        raise InvalidArgumentError(f"run_sweep_async: {e}") from None
    bound.apply_defaults()
    settings = {
        k: v for k, v in bound.arguments.items() if k not in ("targets", "progress", "wandb")
    }
    plan = _plan(targets, settings)
    plan.telemetry.start()
    outputs = []
    try:
        for target, config in zip(plan.target_list, plan.configs, strict=True):
            with plan.telemetry.scraping(target):
                outputs.append(await _core.run_sweep_async(json.dumps(config)))
    except BaseException:
        plan.telemetry.stop()
        raise
    results = _finish(
        plan.target_list,
        outputs,
        plan.manifest,
        settings["out_dir"],
        plan.telemetry,
        plan.arch,
        plan.slo,
    )
    if bound.arguments.get("wandb"):
        import asyncio

        await asyncio.to_thread(_maybe_log_wandb, results, bound.arguments["wandb"])
    return results
