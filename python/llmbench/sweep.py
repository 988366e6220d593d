"""`run_sweep`: closed-loop batch-size sweeps against one or more targets."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from functools import cached_property
from pathlib import Path
from typing import Any

from . import _core
from . import datasets as _datasets
from ._core import InvalidArgumentError, ResultsIOError
from ._settings import OPEN_LOOP, SWEEP, check_choice
from .checks import check_settings, writable_folder
from .cluster import RayCluster
from .columns import client_health
from .columns.kv import model_arch as _model_arch
from .columns.telemetry import RunTelemetry, add_stage_columns, prefix_cache_sources
from .datasets import Conversations, Dataset, Trace
from .errors import ResultsNotSaved, RunFailedWarning, SweepInterrupted, warn
from .outcome import failed_stages
from .pricing import gpu_price
from .prompts import load_prompts, prompts_hash
from .records import SUFFIX as RECORD_SUFFIX
from .records import RecordFiles, record_folder
from .repeats import DEFAULT_REPEATS, METHOD, order
from .results import Results
from .slo import SLO
from .targets import Target

# The engine's default concurrency points (the seed workflow's).
DEFAULT_BATCH_SIZES = tuple(SWEEP["batch_sizes"])


def file_stem(name: str) -> str:
    """The part of a file name that stands for target `name` (the one naming rule for
    every file a target writes): letters, digits, `.`, `_` and `-`, others as `_`."""
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


@dataclass(frozen=True)
class SweepOptions:
    """The settings of `run_sweep` besides its targets, progress line and W&B logging,
    with the engine's defaults (`run_sweep` documents each). `llmbench.config` reads its
    fields as the keys a `[sweep]` table may set."""

    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES
    requests_per_stage: int | None = SWEEP["requests_per_stage"]
    max_tokens: int = SWEEP["max_tokens"]
    prompts: str | Path | Iterable[str] | Dataset | Conversations | None = None
    gpu_hourly_usd: str | float | None = None
    out_dir: str | Path | None = None
    workload: dict[str, Any] | None = None
    input_lengths: Sequence[int] | None = None
    stage_duration_s: float | None = SWEEP["stage_duration_s"]
    seed: int = SWEEP["seed"]
    warmup_requests: int = SWEEP["warmup_requests"]
    tokenizer: str | Path | None = None
    n_gpus: int = SWEEP["pricing"]["n_gpus"]
    gpu: bool | float = False
    server_metrics: bool | float = True
    model_arch: str | Path | None = None
    rates: Sequence[float] | None = None
    arrival: str = OPEN_LOOP["process"]
    burstiness: float = OPEN_LOOP["burstiness"]
    max_in_flight: int | None = None
    slo: SLO | dict[str, float] | None = None
    warmup_s: float | None = SWEEP["warmup_s"]
    cooldown_s: float | None = SWEEP["cooldown_s"]
    trace: Trace | None = None
    resume: bool = SWEEP["resume"]
    repeats: int = DEFAULT_REPEATS
    report: bool = True
    cluster: RayCluster | dict[str, Any] | None = None

    def __post_init__(self) -> None:
        # Types and ranges are checked here, once, for the API, TOML and the command line.
        check_settings({f.name: getattr(self, f.name) for f in fields(self)})

    def open_loop(self) -> dict[str, Any] | None:
        """The engine's open-loop settings, or None for closed-loop batch-size stages."""
        if self.trace is not None:
            if self.rates is not None:
                raise InvalidArgumentError("give rates or a trace, not both")
            return {
                "rates": [self.trace.rate()],
                "process": "trace",
                "trace_times_s": list(self.trace.times_s),
                "in_order": True,
                "max_in_flight": self.max_in_flight,
            }
        _, rates = self.stage_loads()
        if rates is None:
            return None
        rate_list = rates
        check_choice("arrival", self.arrival, "arrival")
        ramp_end = None
        if self.arrival == "ramp":
            # One stage whose rate rises linearly from the first rate to the second.
            if len(rate_list) != 2:
                raise InvalidArgumentError("a ramp takes rates=[start, end] (one stage)")
            rate_list, ramp_end = rate_list[:1], rate_list[1]
        return {
            "rates": rate_list,
            "process": self.arrival,
            "burstiness": float(self.burstiness),
            "max_in_flight": self.max_in_flight,
            "ramp_end_rate": ramp_end,
        }

    def dataset(self) -> Dataset | Conversations | None:
        """The workload when it is more than a prompt list: a dataset, conversations, a
        trace's requests, a `workload` table's, or the prompts of an input-length sweep."""
        return self._workload[0]

    @cached_property
    def _workload(self) -> tuple[Dataset | Conversations | None, list[list[int]] | None]:
        """The dataset and, for a sweep over input lengths, each stage's prompt indices
        (built once: synthetic prompts cost a tokenizer pass)."""
        given = [
            name
            for name, v in (
                ("trace", self.trace),
                ("workload", self.workload),
                ("input_lengths", self.input_lengths),
            )
            if v is not None
        ]
        if self.prompts is not None and (self.workload is not None or self.input_lengths):
            given.append("prompts")
        if len(given) > 1:
            raise InvalidArgumentError(f"give one workload, not {' and '.join(given)}")
        if self.trace is not None:
            return self.trace.dataset, None
        if self.workload is not None:
            spec = self.workload
            if not isinstance(spec, dict):
                raise InvalidArgumentError("workload must be a table with a kind")
            return _datasets.from_spec(spec, self.tokenizer, self.seed), None
        if self.input_lengths is not None:
            return self._input_length_workload()
        if isinstance(self.prompts, (Dataset, Conversations)):
            return self.prompts, None
        return None, None

    def _input_length_workload(self) -> tuple[Dataset, list[list[int]]]:
        """One stage per input length at one concurrency (or one rate)."""
        loads = self.rates if self.rates is not None else self.batch_sizes
        if len(list(loads)) != 1:
            raise InvalidArgumentError(
                "a sweep over input_lengths runs at one batch size (or one rate): give exactly one"
            )
        return _datasets.input_lengths(
            [int(x) for x in self.input_lengths or []], tokenizer=self.tokenizer, seed=self.seed
        )

    def stage_loads(self) -> tuple[list[int], list[float] | None]:
        """The batch sizes and rates of the stages: one stage per input length in a sweep
        over input lengths, else as given."""
        n = len(self.input_lengths) if self.input_lengths is not None else None
        batch_sizes = [int(b) for b in self.batch_sizes]
        rates = [float(r) for r in self.rates] if self.rates is not None else None
        if n is not None:
            batch_sizes = batch_sizes[:1] * n
            rates = rates[:1] * n if rates is not None else None
        return batch_sizes, rates

    def engine_config(self) -> dict[str, Any]:
        """The engine's `SweepConfig` less its `target` and `records_path`, which differ per
        target (the engine checks it, naming any key or value it refuses). Prompt files
        are read here, once for every target."""
        dataset, stage_prompts = self._workload
        batch_sizes, _ = self.stage_loads()
        conversations = None
        budgets = dataset.max_tokens if dataset is not None else None
        if isinstance(dataset, Conversations):
            conversations = dataset.to_engine(self.max_tokens)
            # Warm-up requests send first turns, each with its own budget.
            budgets = [b[0] for b in dataset.max_tokens] if dataset.max_tokens else None
        return {
            "batch_sizes": batch_sizes,
            "requests_per_stage": (
                len(self.trace.times_s) if self.trace is not None else self.requests_per_stage
            ),
            "stage_duration_s": self.stage_duration_s,
            "max_tokens": int(self.max_tokens),
            "prompts": dataset.prompts if dataset is not None else load_prompts(self.prompts),
            "max_tokens_per_prompt": budgets,
            "stage_prompts": stage_prompts,
            "conversations": conversations,
            "seed": int(self.seed),
            "warmup_requests": int(self.warmup_requests),
            "tokenizer": str(self.tokenizer) if self.tokenizer is not None else None,
            "pricing": {"usd_per_gpu_hour": gpu_price(self.gpu_hourly_usd), "n_gpus": self.n_gpus},
            "open_loop": self.open_loop(),
            "warmup_s": self.warmup_s,
            "cooldown_s": self.cooldown_s,
            "resume": bool(self.resume),
            "slo": SLO.of(self.slo).to_engine() if self.slo is not None else None,
        }


def _target_list(targets: Target | Iterable[Target]) -> list[Target]:
    target_list = [targets] if isinstance(targets, Target) else list(targets)
    if not target_list:
        raise InvalidArgumentError("no target given")
    if not all(isinstance(t, Target) for t in target_list):
        raise InvalidArgumentError("targets must be llmbench.OpenAI or llmbench.TGI objects")
    names = [t.name for t in target_list]
    if len(set(names)) != len(names):
        raise InvalidArgumentError(f"target names must be unique, got {names}")
    # Every file a target writes is named by `file_stem`: two names with one stem would
    # share a record file and silently mix their requests. Case is folded too, for
    # file systems that ignore it.
    seen: dict[str, str] = {}
    for name in names:
        stem = file_stem(name).casefold()
        if stem in seen:
            raise InvalidArgumentError(
                f"targets {seen[stem]!r} and {name!r} would write the same file "
                f"(requests_{file_stem(name)}{RECORD_SUFFIX}): names must differ in more "
                "than punctuation, spaces or case"
            )
        seen[stem] = name
    return target_list


def _manifest(
    target_list: list[Target], opts: SweepOptions, config: dict[str, Any]
) -> dict[str, Any]:
    open_loop = config["open_loop"]
    dataset = opts.dataset()
    prompt_list = config["prompts"]
    return {
        "llmbench_version": _core.__version__,
        "kind": "open_loop_sweep" if open_loop else "closed_loop_sweep",
        "started_at": _dt.datetime.now(_dt.timezone.utc).isoformat(),
        "targets": [t.describe() for t in target_list],
        "settings": {
            "batch_sizes": config["batch_sizes"],
            "requests_per_stage": config["requests_per_stage"],
            "stage_duration_s": opts.stage_duration_s,
            "max_tokens": opts.max_tokens,
            "seed": opts.seed,
            "warmup_requests": opts.warmup_requests,
            "tokenizer": config["tokenizer"],
            "gpu_hourly_usd": config["pricing"]["usd_per_gpu_hour"],
            "n_gpus": opts.n_gpus,
            "open_loop": open_loop,
            "warmup_s": opts.warmup_s,
            "cooldown_s": opts.cooldown_s,
            "repeats": opts.repeats,
            "input_lengths": (
                [int(x) for x in opts.input_lengths] if opts.input_lengths is not None else None
            ),
        },
        **({"repeats": METHOD} if opts.repeats > 1 else {}),
        "prompts": dataset.describe()
        if dataset is not None
        else {"n": len(prompt_list), "sha256": prompts_hash(prompt_list)},
        "host": _host(),
        "gpu": None,
    }


def arrival_schedule(
    rate: float,
    arrival: str = "poisson",
    *,
    requests: int | None = None,
    duration_s: float | None = None,
    seed: int = 0,
    burstiness: float = OPEN_LOOP["burstiness"],
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
    ns = _core.arrival_schedule(spec, requests, duration_s, int(seed))
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
    ran: list[tuple[_Call, dict[str, Any]]],
    manifest: dict[str, Any],
    runs: _EngineRuns,
    out_dir: str | Path | None,
    telemetry: RunTelemetry | None = None,
    arch: dict[str, Any] | None = None,
    slo: SLO | None = None,
    report: bool = True,
) -> Results:
    outputs = [o for _, o in ran]
    # The server's own description, from its first call.
    manifest["servers"] = {}
    for call, o in ran:
        manifest["servers"].setdefault(call.target.name, json.loads(o["server_info_json"]))
    manifest["warnings"] = [w for o in outputs for w in o["warnings"]]
    manifest["interrupted"] = any(o["interrupted"] for o in outputs) or len(outputs) < len(
        runs.calls
    )
    if outputs:
        manifest["clock"] = {
            "unix_anchor_ns": outputs[0]["unix_anchor_ns"],
            "monotonic_anchor_ns": outputs[0].get("monotonic_anchor_ns"),
            "note": "t_*_ns columns are ns on one monotonic clock; unix = unix_anchor_ns + t; "
            "the machine's CLOCK_MONOTONIC (time.monotonic_ns()) = monotonic_anchor_ns + t",
        }
        if runs.cluster is not None:
            manifest["cluster"] = runs.cluster.describe()
            manifest["clock"]["note"] = manifest["cluster"]["time_base"]
    records = RecordFiles(runs.record_files(ran), owner=runs.owner)
    results = Results.from_engine(
        [(call.target.describe(), o, call.repeat) for call, o in ran], manifest, records
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
            frames,
            manifest["telemetry"]["scrape"],
            manifest["servers"],
            arch["bytes_per_token"] if arch else None,
        )
        manifest["prefix_cache"] = prefix_cache_sources(
            frames.get("server_metrics"), [t["name"] for t in manifest["targets"]]
        )
    if slo is not None:
        manifest["slo"] = slo.describe()
    untrusted, by_calibration = client_health.check(
        results.summary, client_health.load_calibration()
    )
    # The engine already listed the untrustworthy stages in its warnings.
    manifest["warnings"] += by_calibration
    client_health.warn_all(untrusted + by_calibration)
    # Stage columns (telemetry, client health) are per repeat; the summary folds them.
    results.fold_repeats()
    stage_notes, all_failed = failed_stages(results.summary)
    manifest["warnings"] += stage_notes
    for note in stage_notes if all_failed is None else [all_failed]:
        warn(note, RunFailedWarning)
    if all_failed is not None:
        manifest["all_failed"] = all_failed
    not_saved = [
        f"the record file of {call.target.name} could not be written: {o['records_error']}"
        for call, o in ran
        if o.get("records_error")
    ]
    if out_dir is not None:
        try:
            results.save(out_dir, report=report)
        except ResultsIOError as e:
            not_saved.append(str(e))
    if not_saved:
        # Nothing may be claimed that is not on disk: the caller raises ResultsNotSaved
        # (the measurements stay in memory on it).
        manifest["not_saved"] = "; ".join(not_saved)
    return results


def _raise_unless_saved(results: Results) -> None:
    """Raise `ResultsNotSaved` when part of the run did not reach the disk."""
    note = results.manifest.get("not_saved")
    if note:
        raise ResultsNotSaved(
            results,
            f"{note}. What was measured is not all on disk; it is kept in memory on this "
            "error (.results): free space or choose another out_dir and call "
            ".results.save(...)",
        )


class ResultsIOWarning(UserWarning):
    """Kept for code that filters it; a run whose results could not be written now
    raises `ResultsNotSaved` instead."""


@dataclass(frozen=True)
class _Call:
    """One engine run: every stage of one target in one repeat, in the order they run."""

    repeat: int
    target: Target
    config: dict[str, Any]


@dataclass
class _EngineRuns:
    """The engine runs in order, and where each writes its records: `out_dir`, or a
    temporary folder (`owner`) that lives as long as the results reading it."""

    calls: list[_Call]
    owner: Any = None
    #: The workers of a distributed run (`llmbench.distributed`), None in this process.
    cluster: Any = None

    def start(self) -> None:
        """Connect to the cluster and start its workers (errors before any load)."""
        if self.cluster_settings is not None and self.cluster is None:
            from .distributed import ClusterRun

            self.cluster = ClusterRun(self.cluster_settings)

    def close(self) -> None:
        """Give the cluster's workers back."""
        if self.cluster is not None:
            self.cluster.close()

    def run(self, call: _Call, progress: Any) -> dict[str, Any]:
        """One engine run: in this process, or on the cluster's workers."""
        if self.cluster is not None:
            return dict(self.cluster.run(call.config, progress))
        return dict(_core.run_sweep(call.config, progress))

    async def run_async(self, call: _Call) -> dict[str, Any]:
        """`run` for an event loop: the engine's own awaitable, or the cluster's run in a
        thread (its driver blocks while it waits on the workers)."""
        import asyncio

        if self.cluster is not None:
            return dict(await asyncio.to_thread(self.cluster.run, call.config, None))
        return dict(await _core.run_sweep_async(call.config))

    cluster_settings: RayCluster | None = None

    def record_files(self, ran: list[tuple[_Call, dict[str, Any]]]) -> dict[str, list[Path]]:
        """Each measured target's record files, one per repeat, in repeat order."""
        files: dict[str, dict[int, Path]] = {}
        for call, _ in ran:
            files.setdefault(call.target.name, {})[call.repeat] = Path(call.config["records_path"])
        return {
            name: [by_repeat[r] for r in sorted(by_repeat)] for name, by_repeat in files.items()
        }


def record_path(folder: Path, target: str, repeat: int, repeats: int) -> Path:
    """`requests_<target>.arrows`, or with repeats `requests_<target>_r<k>.arrows` (k from 1)."""
    tail = f"_r{repeat + 1}" if repeats > 1 else ""
    return folder / f"requests_{file_stem(target)}{tail}{RECORD_SUFFIX}"


@dataclass
class _SweepPlan:
    """Everything a sweep needs before it starts, shared by the sync and async entries."""

    manifest: dict[str, Any]
    telemetry: RunTelemetry
    arch: dict[str, Any] | None
    slo: SLO | None
    out_dir: str | Path | None
    runs: _EngineRuns
    report: bool = True


def _plan(targets: Target | Iterable[Target], opts: SweepOptions) -> _SweepPlan:
    """Check the settings and build the engine's configs (checked by the engine before
    any load is sent), the manifest and the (not yet started) telemetry."""
    target_list = _target_list(targets)
    out = Path(opts.out_dir) if opts.out_dir is not None else None
    if out is not None:
        writable_folder(out, "out_dir")
    if opts.resume and out is None:
        raise InvalidArgumentError("resume=True needs the out_dir of the interrupted run")
    shared = opts.engine_config()
    folder, owner = record_folder(out)
    for t in target_list:
        _core.check_sweep({**shared, "target": t.to_spec(), "records_path": None})
    calls = [
        _Call(
            r,
            t,
            {
                **shared,
                "target": t.to_spec(),
                "records_path": str(record_path(folder, t.name, r, opts.repeats)),
            },
        )
        for r in range(opts.repeats)
        for t in order(target_list, r)
    ]
    if out is not None and not opts.resume:
        # A fresh run replaces the previous run's record files (and those of versions
        # that wrote JSON lines); a resumed one continues them.
        for call in calls:
            path = Path(call.config["records_path"])
            path.unlink(missing_ok=True)
            path.with_suffix(".jsonl").unlink(missing_ok=True)
    return _SweepPlan(
        _manifest(target_list, opts, shared),
        RunTelemetry(opts.gpu, opts.server_metrics),
        _model_arch(opts.model_arch),
        SLO.of(opts.slo) if opts.slo is not None else None,
        opts.out_dir,
        _EngineRuns(calls, owner, cluster_settings=RayCluster.of(opts.cluster)),
        opts.report,
    )


def run_sweep(
    targets: Target | Iterable[Target],
    batch_sizes: Sequence[int] = SweepOptions.batch_sizes,
    requests_per_stage: int | None = SweepOptions.requests_per_stage,
    max_tokens: int = SweepOptions.max_tokens,
    prompts: str | Path | Iterable[str] | Dataset | Conversations | None = None,
    gpu_hourly_usd: str | float | None = None,
    out_dir: str | Path | None = None,
    *,
    workload: dict[str, Any] | None = None,
    input_lengths: Sequence[int] | None = None,
    stage_duration_s: float | None = SweepOptions.stage_duration_s,
    seed: int = SweepOptions.seed,
    warmup_requests: int = SweepOptions.warmup_requests,
    tokenizer: str | Path | None = None,
    n_gpus: int = SweepOptions.n_gpus,
    progress: bool = True,
    gpu: bool | float = SweepOptions.gpu,
    server_metrics: bool | float = SweepOptions.server_metrics,
    model_arch: str | Path | None = None,
    rates: Sequence[float] | None = None,
    arrival: str = SweepOptions.arrival,
    burstiness: float = SweepOptions.burstiness,
    max_in_flight: int | None = None,
    slo: SLO | dict[str, float] | None = None,
    warmup_s: float | None = SweepOptions.warmup_s,
    cooldown_s: float | None = SweepOptions.cooldown_s,
    trace: Trace | None = None,
    resume: bool = SweepOptions.resume,
    repeats: int = SweepOptions.repeats,
    report: bool = SweepOptions.report,
    cluster: RayCluster | dict[str, Any] | None = None,
    wandb: bool | dict[str, Any] | None = None,
) -> Results:
    """Sweep batch sizes (requests in flight), or request rates, against one or more targets.

    Each stage keeps `batch_size` requests in flight until `requests_per_stage` requests
    (default `max(4 x batch_size, 16)`) have been sent, or `stage_duration_s` has passed.
    A warm-up request per target runs first and is reported apart. Records are written to
    `out_dir/requests_<target>.arrows` as the run goes (to a temporary folder, kept as long
    as the results, without `out_dir`); at the end `metrics_data.json`,
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
            Dataset (prompts with their own output budgets) or Conversations (multi-turn:
            `batch_size` is then conversations in flight and `requests_per_stage` counts
            conversations), or None for the bundled set.
        workload: a workload as a table, for files and the command line:
            `{"kind": "conversations", "n": 32, "turns": 5, "input_tokens": 128,
            "output_tokens": 64, "think_time_s": 1.0}` calls
            `llmbench.datasets.conversations(...)` (kinds: conversations, shared_prefix,
            sharegpt, synthetic); the sweep's `tokenizer` and `seed` apply.
        input_lengths: one stage per prompt length in tokens (words without a
            `tokenizer`), e.g. `[128, 1024, 8192]`, at the one batch size (or rate) given:
            prefill scaling in one table (`input_tokens` column) and one plot.
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
        repeats: run every stage this many times, the targets taking turns in
            alternating order (A B, B A, ...): the summary keeps one row per stage with the
            mean over repeats and, for the headline metrics, `<metric>_ci_low`,
            `<metric>_ci_high` (95%, Student's t over repeats) and `<metric>_cv`;
            `Results.repeats` keeps one row per stage and repeat; the records get a
            `repeat` column (files `requests_<target>_r<k>.arrows`).
        report: with `out_dir`, write `report.html` there too: one self-contained page
            with the summary, interactive charts, client health, failures and, for two
            targets, the A/B verdicts (`Results.to_html`; docs/report.md).
        wandb: log the results to Weights & Biases once they are saved: True, or a dict
            of `wandb.init` settings (`project`, `name`, `mode`, `timeout_s`, ...). A
            stalled W&B service times out with a warning; it never costs the results.
        cluster: send the load from a Ray cluster's workers instead of this process
            (`llmbench.RayCluster(address, workers=N)`; needs `pip install
            'llmbench[ray]'`): closed-loop batch sizes split across the workers, the
            open-loop schedule dealt out, records merged here as they arrive
            (docs/distributed.md).

    Example:
        >>> import llmbench
        >>> target = llmbench.OpenAI("http://localhost:8000", model="meta-llama/Llama-2-7b-chat-hf")
        >>> res = llmbench.run_sweep(target, batch_sizes=[1, 8, 32], max_tokens=128)
        >>> res.summary[["batch_size", "output_tok_s", "ttft_p50_ms", "usd_per_1m_output_tokens"]]
    """
    plan = _plan(
        targets,
        SweepOptions(
            batch_sizes=batch_sizes,
            requests_per_stage=requests_per_stage,
            max_tokens=max_tokens,
            prompts=prompts,
            gpu_hourly_usd=gpu_hourly_usd,
            out_dir=out_dir,
            workload=workload,
            input_lengths=input_lengths,
            stage_duration_s=stage_duration_s,
            seed=seed,
            warmup_requests=warmup_requests,
            tokenizer=tokenizer,
            n_gpus=n_gpus,
            gpu=gpu,
            server_metrics=server_metrics,
            model_arch=model_arch,
            rates=rates,
            arrival=arrival,
            burstiness=burstiness,
            max_in_flight=max_in_flight,
            slo=slo,
            warmup_s=warmup_s,
            cooldown_s=cooldown_s,
            trace=trace,
            resume=resume,
            repeats=repeats,
            report=report,
            cluster=cluster,
        ),
    )
    manifest = plan.manifest
    telemetry, arch, slo_spec = plan.telemetry, plan.arch, plan.slo
    plan.runs.start()
    telemetry.start()
    outputs: list[tuple[_Call, dict[str, Any]]] = []
    try:
        for call in plan.runs.calls:
            config = call.config
            printer = _ProgressLine(
                _call_label(call, repeats), len(config["batch_sizes"]), config["batch_sizes"]
            )
            try:
                with telemetry.scraping(call.target):
                    out = plan.runs.run(call, printer if progress else None)
            finally:
                if progress:
                    printer.done()
            outputs.append((call, out))
            if out["interrupted"]:
                break
    except KeyboardInterrupt:
        # Interrupted before the engine could return anything for this target (e.g. during
        # its warm-up): keep the targets already measured.
        results = _finish(
            outputs, manifest, plan.runs, out_dir, telemetry, arch, slo_spec, plan.report
        )
        raise SweepInterrupted(results, _interrupt_message(results, out_dir)) from None
    except BaseException:
        telemetry.stop()
        raise
    finally:
        plan.runs.close()
    results = _finish(outputs, manifest, plan.runs, out_dir, telemetry, arch, slo_spec, plan.report)
    if results.interrupted:
        raise SweepInterrupted(results, _interrupt_message(results, out_dir))
    _raise_unless_saved(results)
    _maybe_log_wandb(results, wandb)
    return results


def _call_label(call: _Call, repeats: int) -> str:
    """The progress line's name for one engine run: the target, and the repeat if any."""
    return call.target.name if repeats == 1 else f"{call.target.name} r{call.repeat + 1}/{repeats}"


def _maybe_log_wandb(results: Results, wandb: bool | dict[str, Any] | None) -> None:
    """Log to W&B after the files are written (a stalled W&B never costs the results)."""
    if wandb:
        results.log_wandb(**(wandb if isinstance(wandb, dict) else {}))


def _interrupt_message(results: Results, out_dir: str | Path | None) -> str:
    n = int(results.summary["n_requests"].sum()) if "n_requests" in results.summary else 0
    if results.manifest.get("not_saved"):
        where = f"; NOT all saved: {results.manifest['not_saved']}"
    else:
        where = f"; saved to {out_dir}" if out_dir is not None else ""
    return f"sweep interrupted: {n} completed requests kept in .results{where}"


async def run_sweep_async(targets: Target | Iterable[Target], **kwargs: Any) -> Results:
    """`run_sweep` for code with a running event loop (e.g. notebooks using asyncio).

    Takes `run_sweep`'s arguments (by keyword; `progress` is ignored: no live line).
    Cancelling the awaiting task cancels the sweep; records already written stay on disk.

    Example:
        >>> res = await llmbench.run_sweep_async(target, batch_sizes=[1, 4])
    """
    import asyncio

    wandb = kwargs.pop("wandb", None)
    kwargs.pop("progress", None)
    try:
        opts = SweepOptions(**kwargs)
    except TypeError as e:
        raise InvalidArgumentError(f"run_sweep_async: {e}") from None
    plan = _plan(targets, opts)
    # Connecting to a cluster and starting its workers blocks: off the event loop.
    await asyncio.to_thread(plan.runs.start)
    plan.telemetry.start()
    outputs = []
    try:
        for call in plan.runs.calls:
            with plan.telemetry.scraping(call.target):
                out = await plan.runs.run_async(call)
                outputs.append((call, out))
                if out["interrupted"]:
                    break
    except BaseException:
        plan.telemetry.stop()
        raise
    finally:
        plan.runs.close()
    results = _finish(
        outputs,
        plan.manifest,
        plan.runs,
        plan.out_dir,
        plan.telemetry,
        plan.arch,
        plan.slo,
        plan.report,
    )
    _raise_unless_saved(results)
    if wandb:
        await asyncio.to_thread(_maybe_log_wandb, results, wandb)
    return results
