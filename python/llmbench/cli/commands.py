"""What each `llmbench` command does, given its parsed options."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .. import _core, _deps
from .._core import InvalidArgumentError, ResultsIOError
from ..baseline import BaselineServer
from ..checks import writable_folder
from ..errors import SweepInterrupted
from ..results import KEY_COLUMNS, Results
from ..sim import SimServer
from ..studies.capacity import find_capacity
from ..studies.kv_cache import kv_cache_study, write_study
from ..sweep import run_sweep
from ..sweep_options import setting_fields
from ..targets import TGI, OpenAI, Target, Timeouts
from .options import cluster, flag_dest, sim_config, slo_limits, sweep_settings, workload


def _print_summary(res: Results) -> None:
    if not len(res.summary):
        print("no stage completed: nothing to summarize", file=sys.stderr)
        return
    pd = _deps.pandas()
    # Columns that do not apply to this kind of sweep (all NaN) are left out.
    cols = [c for c in KEY_COLUMNS if c in res.summary.columns and res.summary[c].notna().any()]
    with pd.option_context(
        "display.width", 200, "display.max_columns", 20, "display.float_format", "{:.2f}".format
    ):
        print(res.summary[cols].to_string(index=False))


def _make_target(
    args: argparse.Namespace,
) -> tuple[Target, SimServer | BaselineServer | None]:
    sim: SimServer | BaselineServer | None = None
    timeouts = Timeouts(
        connect=args.connect_timeout,
        ttft=args.ttft_timeout,
        idle=args.idle_timeout,
        total=args.timeout,
    )
    target: Target
    if args.url is None and args.embedded == "baseline":
        if args.api == "tgi":
            raise InvalidArgumentError(
                "the embedded baseline speaks the OpenAI APIs only; use --api chat or "
                "completions, or --embedded sim"
            )
        sim = BaselineServer("tiny", max_batch=args.baseline_max_batch)
        print(
            f"no --url given: measuring the embedded naive baseline (tiny LLaMA preset, CPU, "
            f"static batches of up to {args.baseline_max_batch}) at {sim.url}",
            file=sys.stderr,
        )
        print(
            "note: its model runs in this process, on the client's cores, so stages may be "
            "flagged as not trustworthy; for numbers to rely on, run `llmbench serve` in "
            "another process (or any server) and pass its --url",
            file=sys.stderr,
        )
        target = sim.target(
            args.api,
            name=args.name or "baseline-tiny",
            timeouts=timeouts,
            extra_body=args.extra_body,
        )
    elif args.url is None:
        sim = SimServer(sim_config(args))
        print(
            f"no --url given: measuring the embedded scripted server at {sim.url}", file=sys.stderr
        )
        target = sim.target(
            args.api,
            name=args.name or "llmbench-sim",
            timeouts=timeouts,
            extra_body=args.extra_body,
        )
    elif args.api == "tgi":
        target = TGI(
            args.url,
            name=args.name,
            extra_body=args.extra_body,
            temperature=args.temperature,
            timeouts=timeouts,
            api_key=_api_key(args),
            verify_tls=not args.insecure,
        )
    else:
        target = OpenAI(
            args.url,
            model=args.model,
            api=args.api,
            name=args.name,
            extra_body=args.extra_body,
            temperature=args.temperature,
            continuous_usage=not args.no_continuous_usage,
            include_metrics=args.include_metrics,
            timeouts=timeouts,
            force_output_len=args.force_output_len,
            api_key=_api_key(args),
            verify_tls=not args.insecure,
        )
    return target, sim


DEFAULT_API_KEY_ENV = "LLMBENCH_API_KEY"


def _api_key(args: argparse.Namespace) -> str | None:
    """The API key from the environment: `LLMBENCH_API_KEY` if set, or the variable
    `--api-key-env` names, which must then be set (a typo would send no key, silently)."""
    if args.api_key_env is None:
        return os.environ.get(DEFAULT_API_KEY_ENV) or None
    key = os.environ.get(args.api_key_env)
    if not key:
        raise InvalidArgumentError(
            f"--api-key-env {args.api_key_env}: that environment variable is "
            f"{'empty' if key == '' else 'not set'}, so no API key would be sent"
        )
    return key


def exit_code(res: Results) -> int:
    """0, or 1 for a run in which every request failed (docs/reliability.md)."""
    failed = res.manifest.get("all_failed")
    if failed:
        print(f"llmbench: error: {failed}", file=sys.stderr)
        return 1
    return 0


#: Each sweep setting the command line sets from a flag of its own, and that flag's
#: `dest` (derived from the settings' declarations, `llmbench.SweepOptions`).
SWEEP_OPTION_DESTS = {
    f.name: flag_dest(f.metadata["setting"].flag)
    for f in setting_fields()
    if f.metadata["setting"].flag is not None
}


def _sweep_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The sweep settings of a command: those its flags give, and those several flags
    make together (the SLO, the workload, the cluster) or one flag turns off (progress)."""
    return {
        **sweep_settings(args),
        "progress": not args.quiet,
        "slo": slo_limits(args),
        "workload": workload(args),
        "cluster": cluster(args),
    }


def flag_for(parser: argparse.ArgumentParser, command: str | None, setting: str) -> str:
    """The command-line flag that sets sweep keyword `setting` (the keyword itself if no
    flag does)."""
    dest = SWEEP_OPTION_DESTS.get(setting)
    sub = None
    for action in parser._actions:  # argparse keeps subcommands only here
        if isinstance(action, argparse._SubParsersAction):
            sub = action.choices.get(command or "")
    for action in (sub or parser)._actions if dest else []:
        if action.dest == dest and action.option_strings:
            return max(action.option_strings, key=len)
    return setting


COMMAND_FILE = "command.json"


def save_command(out: str, command: str, argv: Sequence[str]) -> None:
    """Keep the command's arguments beside its results, for `--resume` (API keys are never
    arguments: they come from the environment)."""
    path = writable_folder(Path(out), "--out")
    # A URL's credentials are not kept: resume with `--url` again to give them.
    kept = [_core.redact_url(a) if "://" in a else a for a in argv]
    try:
        (path / COMMAND_FILE).write_text(json.dumps({"command": command, "argv": kept}))
    except OSError as e:
        raise InvalidArgumentError(f"--out {out!r}: cannot write there ({e})") from None


def resumed_args(
    parser: argparse.ArgumentParser, folder: str, url: str | None
) -> argparse.Namespace:
    path = Path(folder) / COMMAND_FILE
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise InvalidArgumentError(f"cannot resume from {folder}: no readable {path} ({e})") from e
    args = parser.parse_args([saved["command"], *saved["argv"]])
    args.out = folder
    args.resume = folder
    if url is not None:
        args.url = url
    return args


def cmd_sweep(args: argparse.Namespace, study: bool) -> int:
    target, sim = _make_target(args)
    kwargs = _sweep_kwargs(args)
    if not study:
        kwargs["resume"] = getattr(args, "resume", None) is not None
    if study and args.model_arch is None and isinstance(sim, SimServer):
        # The scripted server stands in for a LLaMA-2-7B server: size its KV estimate so.
        kwargs["model_arch"] = "llama-2-7b"
    try:
        if study:
            # The study always samples the GPUs (--gpu sets the period).
            kwargs["gpu"] = kwargs["gpu"] or True
            res = kv_cache_study(target, **kwargs)
        else:
            res = run_sweep(target, **kwargs)
    except SweepInterrupted as stop:
        print(f"\n{stop}", file=sys.stderr)
        _print_summary(stop.results)
        _draw_stopped(stop.results, args, study)
        return 130
    finally:
        if sim is not None:
            sim.close()
    _print_summary(res)
    files = (
        "gpu_memory_data.json, gpu_memory_timeline.png"
        if study
        else ("metrics_data.json, metrics_summary.csv, *.png")
    ) + (", report.html" if args.report else "")
    print(f"results written to {args.out}/ ({files})")
    return exit_code(res)


def _draw_stopped(res: Results, args: argparse.Namespace, study: bool) -> None:
    """Draw the plots and report of a stopped run: the sweep saved its measurements and
    returned at once; on the command line the process is ending anyway, so the files a
    whole run has are drawn here, and a second Ctrl-C skips them."""
    print("drawing the plots and report (Ctrl-C again to skip)...", file=sys.stderr)
    try:
        if study:
            write_study(res, args.out, report=args.report)
        else:
            res.save(args.out, report=args.report)
    except ResultsIOError as e:
        print(f"not drawn: {e}", file=sys.stderr)
    except KeyboardInterrupt:
        print(f"skipped: draw them later with `llmbench report {args.out}`", file=sys.stderr)


def cmd_capacity(args: argparse.Namespace) -> int:
    slo = slo_limits(args)
    if slo is None:
        print("llmbench: error: give at least one --slo-*-ms limit", file=sys.stderr)
        return 2
    if args.input_lengths is not None:
        # Each trial is one stage at one load; a sweep over input lengths is not one.
        print("llmbench: error: capacity searches at one input length", file=sys.stderr)
        return 2
    target, sim = _make_target(args)
    kwargs = _sweep_kwargs(args)
    # Each trial is one stage at the load the search picks, with the SLO given; its
    # requests and duration have names of their own; capacity.json is written here.
    for key in (
        "batch_sizes",
        "requests_per_stage",
        "stage_duration_s",
        "rates",
        "slo",
        "max_in_flight",
        "repeats",
        "out_dir",
    ):
        kwargs.pop(key)
    try:
        res = find_capacity(
            target,
            slo,
            mode=args.mode,
            start=args.start,
            limit=args.limit,
            trials=args.trials,
            tolerance=args.tolerance,
            requests_per_trial=args.requests,
            trial_duration_s=args.duration,
            **kwargs,
        )
    finally:
        if sim is not None:
            sim.close()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "capacity.json").write_text(
        json.dumps(
            {
                "capacity": res.capacity,
                "capacity_ci_low": res.capacity_ci_low,
                "capacity_ci_high": res.capacity_ci_high,
                "p_slo_holds": res.p_slo_holds if res.p_slo_holds == res.p_slo_holds else None,
                "first_failing": res.first_failing,
                "mode": res.mode,
                "slo": res.slo,
                "steps": res.steps,
                "statement": res.statement,
            },
            indent=1,
        )
    )
    res.trials.to_csv(out / "capacity_trials.csv", index=False)
    for step in res.steps:
        print(
            f"{step['value']:>10g}: {step['trials_passed']}/{step['trials']} trials met the "
            f"SLO, P(SLO holds) {step['p_slo_holds']:.2f} -> "
            f"{'pass' if step['passed'] else 'fail'}"
        )
    print(res.statement)
    print(f"results written to {out}/ (capacity.json, capacity_trials.csv)")
    return 0


def cmd_ab(args: argparse.Namespace) -> int:
    from ..ab import ab

    targets = []
    for side in ("a", "b"):
        side_args = argparse.Namespace(**vars(args))
        side_args.url = getattr(args, f"url_{side}")
        side_args.model = getattr(args, f"model_{side}") or args.model
        side_args.name = getattr(args, f"name_{side}")
        target, _ = _make_target(side_args)
        targets.append(target)
    kwargs = _sweep_kwargs(args)
    repeats = kwargs.pop("repeats")
    # Rates, when given, replace the batch sizes (whose flag always has a value).
    batch_sizes = kwargs.pop("batch_sizes")
    if args.rates is not None:
        batch_sizes = None
    # The run's files and the A/B table are written together below (`res.save`).
    kwargs.pop("out_dir")
    report = kwargs.pop("report")
    try:
        res = ab(
            targets[0],
            targets[1],
            batch_sizes=batch_sizes,
            repeats=repeats,
            allow_same_url=args.allow_same_url,
            **kwargs,
        )
    except SweepInterrupted as stop:
        print(f"\n{stop}", file=sys.stderr)
        return 130
    written = res.save(args.out, report=report)
    pd = _deps.pandas()
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        cols = ["metric", "a", "b", "diff_pct", "ci_low_pct", "ci_high_pct", "p_value", "verdict"]
        x = [c for c in ("batch_size", "target_rate") if c in res.table]
        print(res.table[x + cols].round(3).to_string(index=False))
    print("\n".join(res.statements()))
    print(f"results written to {args.out}/ ({', '.join(p.name for p in written[-2:])}, ...)")
    return 0


def _wait(for_seconds: float | None) -> None:
    """Keep a server command running until Ctrl-C or for `for_seconds`."""
    deadline = None if for_seconds is None else time.monotonic() + for_seconds
    try:
        while deadline is None or time.monotonic() < deadline:
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass


def cmd_sim(args: argparse.Namespace) -> int:
    cfg = sim_config(args)
    cfg.model = args.model
    with SimServer(cfg, port=args.port) as sim:
        print(
            f"llmbench scripted server on {sim.url} (model {cfg.model!r}): "
            f"{json.dumps(asdict(cfg))}",
            flush=True,
        )
        _wait(args.for_seconds)
        print(f"served {sim.served} requests", flush=True)
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from ..studies.calibrate import calibrate, save, save_default

    on = cluster(args)
    if on is not None:
        return _calibrate_workers(args, on)
    cal = calibrate(
        args.concurrency, args.itl_ms, tokens=args.tokens, tolerance_ms=args.tolerance_ms
    )
    pd = _deps.pandas()
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(cal.table.round(3).to_string(index=False))
    print(cal.statement)
    print(f"written to {save(cal, args.out)}")
    if not args.no_remember:
        print(f"remembered for later runs on this host: {save_default(cal)}")
    return 0


def _calibrate_workers(args: argparse.Namespace, on: Any) -> int:
    """`calibrate --ray`: every worker measures its own host (the scripted server beside
    it, as a local calibration does); one table with a `worker` column."""
    from ..studies.calibrate import calibrate_workers

    per_worker = calibrate_workers(
        on,
        concurrency=args.concurrency,
        itl_ms=args.itl_ms,
        tokens=args.tokens,
        tolerance_ms=args.tolerance_ms,
    )
    pd = _deps.pandas()
    table = pd.DataFrame(
        [
            {"worker": w["worker"], "hostname": w["hostname"], **row}
            for w in per_worker
            for row in w["table"]
        ]
    )
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.round(3).to_string(index=False))
    for w in per_worker:
        print(f"worker {w['worker']} ({w['hostname']}): {w['statement']}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "calibration_workers.json"
    path.write_text(json.dumps({"cluster": on.describe(), "workers": per_worker}, indent=1))
    print(f"written to {path}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from ..compare import compare, comparison_table

    same = {str(Path(r).resolve()) for r in args.runs}
    if len(same) < len(args.runs):
        raise InvalidArgumentError("the same run folder is given twice: compare different runs")
    res = compare(args.runs)
    out = writable_folder(Path(args.out), "--out")
    res.summary.to_csv(out / "comparison_summary.csv", index=False)
    paths = res.plot(out_dir=out, close=True)
    if args.report:
        paths += res.save_report(out)
    pd = _deps.pandas()
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(comparison_table(res).round(2).to_string())
    print(f"comparison written to {out}/ (comparison_summary.csv, {len(paths)} plots)")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from ..compare import compare
    from ..report import REPORT_FILE

    for run in args.runs:
        folder = Path(run)
        if (folder / "gpu_memory_data.json").exists() and not (
            folder / "metrics_data.json"
        ).exists():
            raise InvalidArgumentError(
                f"{run} holds a kv-cache study (gpu_memory_data.json), which writes its own "
                "report.html when run with --report; `llmbench report` reads folders with "
                "metrics_data.json (llmbench metrics, ab, Results.save)"
            )
    if len(args.runs) == 1:
        res = Results.load(args.runs[0])
        default = Path(args.runs[0]) / REPORT_FILE
    else:
        res = compare(args.runs)
        default = Path("comparison_report.html")
    target = Path(args.output or default)
    if target.is_dir():
        raise InvalidArgumentError(f"-o {str(target)!r} is a folder: give a file name")
    try:
        path = res.to_html(target, title=args.title)
    except OSError as e:
        raise InvalidArgumentError(f"cannot write the report to {str(target)!r}: {e}") from None
    size = path.stat().st_size
    print(f"report written to {path} ({size / 1e6:.1f} MB; opens offline in any browser)")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    from ..config import load_config

    spec = load_config(args.config)
    options = {"out_dir": args.out, "progress": not args.quiet, **spec.options}
    try:
        res = spec.run(**options)
    except SweepInterrupted as stop:
        print(f"\n{stop}", file=sys.stderr)
        _print_summary(stop.results)
        return 130
    _print_summary(res)
    if options.get("out_dir"):
        print(f"results written to {options['out_dir']}/")
    return exit_code(res)


def cmd_serve(args: argparse.Namespace) -> int:
    with BaselineServer(
        args.model,
        max_batch=args.max_batch,
        batch_window_ms=args.batch_window_ms,
        dtype=args.dtype,
        device=args.device,
        seed=args.seed,
        tokenizer=args.tokenizer,
        host=args.host,
        port=args.port,
    ) as server:
        info = server.info
        print(
            f"llmbench baseline on {server.url} (model {server.model!r}, {info['dtype']} on "
            f"{info['device']}, {info['parameters'] / 1e6:.1f}M parameters, static batches of "
            f"up to {args.max_batch}, loaded in {info['load_s']:.1f} s)",
            flush=True,
        )
        _wait(args.for_seconds)
        print(f"served {server.served} requests", flush=True)
    return 0
