"""`run_sweep`: closed-loop batch-size sweeps against one or more targets."""

from __future__ import annotations

import asyncio
import datetime as _dt
import inspect
import os
import platform
import re
import sys
from collections.abc import Generator, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import _core
from ._core import InvalidArgumentError, ResultsIOError
from ._settings import OPEN_LOOP
from .checks import writable_folder
from .cluster import RayCluster
from .columns import breakdown, client_health, server_times
from .columns.kv import model_arch as _model_arch
from .columns.telemetry import (
    RunTelemetry,
    add_stage_columns,
    prefix_cache_sources,
    server_time_sources,
)
from .errors import ResultsNotSaved, RunFailedWarning, SweepInterrupted, warn
from .outcome import failed_stages
from .prompts import prompts_hash
from .records import SUFFIX as RECORD_SUFFIX
from .records import RecordFiles, record_folder
from .repeats import METHOD, order
from .results import Results, engine_summary, fold_repeats
from .saving import save as save_results
from .slo import SLO
from .sweep_options import DEFAULT_BATCH_SIZES, SweepOptions, args_doc, signature
from .targets import Target
from .wandb_log import log_wandb

__all__ = ["DEFAULT_BATCH_SIZES", "SweepOptions", "run_sweep", "run_sweep_async"]


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
        "settings": opts.manifest_settings(config),
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


def _finish(ran: list[tuple[_Call, dict[str, Any]]], plan: _SweepPlan) -> Results:
    """The run's `Results`, built once from what the engine runs returned, and saved to
    the plan's `out_dir` (a failure to save is noted in the manifest's `not_saved`)."""
    runs, telemetry = plan.runs, plan.telemetry
    manifest = dict(plan.manifest)
    outputs = [o for _, o in ran]
    # The server's own description, from its first call.
    manifest["servers"] = {}
    for call, o in ran:
        manifest["servers"].setdefault(call.target.name, o["server_info"])
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
    summary = engine_summary(
        [(call.target.describe(), o, call.repeat) for call, o in ran], manifest
    )
    arch = plan.arch
    manifest["model_arch"] = arch
    telemetry.stop()
    manifest["telemetry"] = telemetry.describe()
    manifest["warnings"] += telemetry.warnings
    frames = telemetry.to_frames()
    summary = add_stage_columns(
        summary,
        frames,
        manifest["telemetry"]["scrape"],
        manifest["servers"],
        arch["bytes_per_token"] if arch else None,
    )
    names = [t["name"] for t in manifest["targets"]]
    manifest["prefix_cache"] = prefix_cache_sources(frames.get("server_metrics"), names)
    manifest["server_times"] = server_time_sources(frames.get("server_metrics"), names)
    if plan.slo is not None:
        manifest["slo"] = plan.slo.describe()
    calibration = client_health.load_calibration()
    untrusted, by_calibration = client_health.check(summary, calibration)
    # The engine already listed the untrustworthy stages in its warnings.
    manifest["warnings"] += by_calibration
    client_health.warn_all(untrusted + by_calibration)
    tolerance_ms = float((calibration or {}).get("tolerance_ms", 1.0))
    gaps = server_times.check_gap(summary, tolerance_ms)
    # Where each stage's time goes, per request where the server said (else from its
    # histograms), and whether the server's and the client's accounts agree.
    requests = records.read(columns=list(breakdown.REQUEST_COLUMNS), warmup=False)
    summary, manifest["breakdown"] = breakdown.add(summary, requests)
    gaps += breakdown.check(summary, tolerance_ms)
    from_histograms = [t for t, src in manifest["breakdown"].items() if src == breakdown.HISTOGRAMS]
    period_ms = manifest["telemetry"].get("metrics_period_ms")
    for messages, category in (
        (gaps, server_times.ServerClientGapWarning),
        (
            server_times.check_window(summary, from_histograms, period_ms),
            server_times.ScrapeWindowWarning,
        ),
        (server_times.check_tokens(summary), server_times.TokenCountWarning),
    ):
        # Each is listed in the manifest and raised.
        manifest["warnings"] += messages
        for message in messages:
            warn(message, category)
    # Stage columns (telemetry, client health) are per repeat; the summary folds them.
    summary, per_repeat = fold_repeats(summary, manifest["settings"]["repeats"])
    stage_notes, all_failed = failed_stages(summary)
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
    results = Results(
        summary,
        records,
        manifest,
        repeats=per_repeat,
        gpu=frames.get("gpu"),
        gpu_processes=frames.get("gpu_processes"),
        server_metrics=frames.get("server_metrics"),
    )
    out_dir = plan.options.out_dir
    if out_dir is not None:
        try:
            # A stopped run saves its measurements and returns at once: drawing the plots
            # and report.html takes seconds (most of a stop's time) and is a pure function
            # of the files written, so it is left to the caller (`_interrupt_message`).
            drawn = not manifest["interrupted"]
            save_results(results, out_dir, plots=drawn, report=plan.options.report and drawn)
        except ResultsIOError as e:
            not_saved.append(str(e))
    if not_saved:
        # Nothing may be claimed that is not on disk: the caller raises ResultsNotSaved
        # (the measurements stay in memory on it).
        results = results.replace(manifest={**manifest, "not_saved": "; ".join(not_saved)})
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
        thread (its driver blocks while it waits on the workers). Cancelling the awaiting
        task stops the engine the way Ctrl-C does: it returns what it measured, marked
        interrupted, so the sweep can save it."""
        if self.cluster is not None:
            return dict(await asyncio.to_thread(self.cluster.run, call.config, None))
        stop = _core.StopHandle()
        engine = asyncio.ensure_future(_core.run_sweep_async(call.config, stop))
        try:
            # Shielded: a cancellation reaches this frame, not the engine's future.
            return dict(await asyncio.shield(engine))
        except asyncio.CancelledError:
            stop.stop()
            out = dict(await engine)
            out["interrupted"] = True
            return out

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
    runs: _EngineRuns
    options: SweepOptions


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
        _EngineRuns(calls, owner, cluster_settings=RayCluster.of(opts.cluster)),
        opts,
    )


def _sweep_body(plan: _SweepPlan) -> Generator[_Call, dict[str, Any], Results]:
    """The one body of a sweep, for the blocking and the awaitable call: it yields each
    engine run to make and receives its output (or, thrown in, why it did not come back),
    and returns the saved `Results`. The one interrupt rule: a sweep that stops early (by
    Ctrl-C, by cancellation, or inside the engine) saves what it measured and raises
    `SweepInterrupted` with the results on `.results`."""
    plan.telemetry.start()
    ran: list[tuple[_Call, dict[str, Any]]] = []
    stopped: BaseException | None = None
    try:
        for call in plan.runs.calls:
            with plan.telemetry.scraping(call.target):
                out = yield call
            ran.append((call, out))
            if out["interrupted"]:
                break
    except (KeyboardInterrupt, asyncio.CancelledError) as e:
        # Stopped before the engine could return anything for this run (e.g. during its
        # warm-up, or a cancelled cluster run): keep the runs already measured.
        stopped = e
    except BaseException:
        plan.telemetry.stop()
        raise
    finally:
        plan.runs.close()
    results = _finish(ran, plan)
    if stopped is not None or results.interrupted:
        raise SweepInterrupted(results, _interrupt_message(results, plan.options.out_dir)) from None
    _raise_unless_saved(results)
    return results


def _drive(body: Generator[_Call, dict[str, Any], Results], run: Any) -> Results:
    """Run `body` to its end, making each engine run it asks for with `run(call)`."""
    try:
        call = next(body)
        while True:
            try:
                out = run(call)
            except BaseException as e:  # handed to the body, which decides
                call = body.throw(e)
            else:
                call = body.send(out)
    except StopIteration as done:
        return done.value


async def _drive_async(body: Generator[_Call, dict[str, Any], Results], run: Any) -> Results:
    """`_drive` for an event loop: `run(call)` is awaited."""
    try:
        call = next(body)
        while True:
            try:
                out = await run(call)
            except BaseException as e:  # handed to the body, which decides
                call = body.throw(e)
            else:
                call = body.send(out)
    except StopIteration as done:
        return done.value


def run_sweep(targets: Target | Iterable[Target], *args: Any, **options: Any) -> Results:
    plan = _plan(targets, SweepOptions.of_call("run_sweep", args, options))
    progress = plan.options.progress

    def run(call: _Call) -> dict[str, Any]:
        config = call.config
        printer = _ProgressLine(
            _call_label(call, plan.options.repeats),
            len(config["batch_sizes"]),
            config["batch_sizes"],
        )
        try:
            return plan.runs.run(call, printer if progress else None)
        finally:
            if progress:
                printer.done()

    plan.runs.start()
    results = _drive(_sweep_body(plan), run)
    _maybe_log_wandb(results, plan.options.wandb)
    return results


async def run_sweep_async(
    targets: Target | Iterable[Target], *args: Any, **options: Any
) -> Results:
    plan = _plan(targets, SweepOptions.of_call("run_sweep_async", args, options))
    # Connecting to a cluster and starting its workers blocks: off the event loop.
    await asyncio.to_thread(plan.runs.start)
    results = await _drive_async(_sweep_body(plan), plan.runs.run_async)
    if plan.options.wandb:
        await asyncio.to_thread(_maybe_log_wandb, results, plan.options.wandb)
    return results


_RUN_SWEEP_DOC = """Sweep batch sizes (requests in flight), or request rates, against targets.

    Each stage keeps `batch_size` requests in flight until `requests_per_stage` requests
    (default `max(4 x batch_size, 16)`) have been sent, or `stage_duration_s` has passed.
    A warm-up request per target runs first and is reported apart. Records are written to
    `out_dir/requests_<target>.arrows` as the run goes (to a temporary folder, kept as long
    as the results, without `out_dir`); at the end `metrics_data.json`,
    `metrics_summary.csv` and the plots are written to `out_dir`.

    The GIL is released for the whole run. Ctrl-C cancels in-flight requests, saves what
    was measured and raises `SweepInterrupted`, whose `.results` holds everything
    completed before it. A run whose results could not all be written raises
    `ResultsNotSaved` (its `.results` keeps them in memory).

    The settings after `targets` are `llmbench.SweepOptions`' fields, each declared once
    there; the first six may be given by position.

    Args:
        targets: an `OpenAI` or `TGI` target, or a list of them (measured in turn).
{args}

    Example:
        >>> import llmbench
        >>> target = llmbench.OpenAI("http://localhost:8000", model="meta-llama/Llama-2-7b-chat-hf")
        >>> res = llmbench.run_sweep(target, batch_sizes=[1, 8, 32], max_tokens=128)
        >>> res.summary[["batch_size", "output_tok_s", "ttft_p50_ms", "usd_per_1m_output_tokens"]]
    """

_ASYNC_DOC = """`run_sweep` for code with a running event loop (e.g. notebooks using asyncio).

    Takes `run_sweep`'s arguments (`progress` is ignored: no live line) and follows its
    interrupt rule: cancelling the awaiting task stops the engine, which returns what it
    measured; that is saved like any run and `SweepInterrupted` is raised with it on
    `.results` (so `asyncio.timeout(...)` around it raises `SweepInterrupted`, not
    `TimeoutError`: the measurements are never dropped).

    Example:
        >>> res = await llmbench.run_sweep_async(target, batch_sizes=[1, 4])
    """

_TARGETS = inspect.Parameter(
    "targets", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation="Target | Iterable[Target]"
)
run_sweep.__signature__ = signature([_TARGETS], "Results")  # type: ignore[attr-defined]
run_sweep_async.__signature__ = signature([_TARGETS], "Results")  # type: ignore[attr-defined]
run_sweep.__doc__ = _RUN_SWEEP_DOC.replace("{args}", args_doc())
run_sweep_async.__doc__ = _ASYNC_DOC


def _call_label(call: _Call, repeats: int) -> str:
    """The progress line's name for one engine run: the target, and the repeat if any."""
    return call.target.name if repeats == 1 else f"{call.target.name} r{call.repeat + 1}/{repeats}"


def _maybe_log_wandb(results: Results, wandb: bool | dict[str, Any] | None) -> None:
    """Log to W&B after the files are written (a stalled W&B never costs the results)."""
    if wandb:
        log_wandb(results, **(wandb if isinstance(wandb, dict) else {}))


def _interrupt_message(results: Results, out_dir: str | Path | None) -> str:
    n = int(results.summary["n_requests"].sum()) if "n_requests" in results.summary else 0
    if results.manifest.get("not_saved"):
        where = f"; NOT all saved: {results.manifest['not_saved']}"
    else:
        where = (
            f"; measurements saved to {out_dir} (plots and report.html not drawn, to stop at "
            f"once: draw them with .results.save({str(out_dir)!r}) or `llmbench report "
            f"{out_dir}`)"
            if out_dir is not None
            else ""
        )
    return f"sweep interrupted: {n} completed requests kept in .results{where}"
