"""The `llmbench` command.

    llmbench metrics [--url URL --model NAME --api chat|completions|tgi] [options]
    llmbench kv-cache [same options]
    llmbench capacity [same options] --slo-ttft-ms MS [--mode rate|batch_size]
    llmbench sim [--port N] [timings]
    llmbench serve [--model PATH|PRESET] [--port N] [--device cpu|cuda]

Without `--url`, `llmbench metrics` and `llmbench capacity` measure the embedded default
target: the naive baseline's `tiny` preset served in-process on the CPU (`--embedded sim`
picks the scripted server instead); `llmbench kv-cache` uses the scripted server standing
in for a LLaMA-2-7B server. None of them needs a GPU, network or download.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from ._core import InvalidArgumentError, LlmbenchError
from ._redact import redact_url
from .baseline import PRESETS, BaselineServer
from .capacity import find_capacity
from .errors import SweepInterrupted
from .kvstudy import DEFAULT_KV_BATCH_SIZES, kv_cache_study, write_study
from .pricing import GPU_PRICES_USD_PER_HOUR
from .results import KEY_COLUMNS, Results
from .sim import DEFAULT_TARGET_CONFIG, FAULTS, SimConfig, SimServer
from .sweep import DEFAULT_BATCH_SIZES, run_sweep
from .targets import TGI, OpenAI, Target, Timeouts


def _int_list(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("batch sizes must be integers >= 1")
    return values


def _float_list(text: str) -> list[float]:
    try:
        values = [float(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}"
        ) from None
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError("rates must be positive numbers")
    return values


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not valid JSON: {e}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object, e.g. '{\"ignore_eos\": true}'")
    return value


def _price(text: str) -> str | float:
    try:
        return float(text)
    except ValueError:
        return text


def _fault_list(text: str) -> list[str]:
    names = [x.strip() for x in text.split(",") if x.strip()]
    unknown = sorted(set(names) - set(FAULTS))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown faults {unknown}; known: {', '.join(FAULTS)}")
    return names


def _flag(text: str) -> bool:
    """A yes/no option value: 1/0, true/false, yes/no, on/off."""
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected 1/0, true/false, yes/no or on/off, not {text!r}")


def _add_sim_options(p: argparse.ArgumentParser, defaults: SimConfig, prefix: str) -> None:
    g = p.add_argument_group("scripted server timings (ms) and faults")
    for f in fields(SimConfig):
        if f.name == "model":
            continue
        flag = "--" + prefix + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        kind: Any = float if f.name.endswith("_ms") or f.name == "fault_rate" else int
        if f.name == "faults":
            kind = _fault_list
        elif isinstance(default, bool):
            kind = _flag
        g.add_argument(
            flag, dest=f"sim_{f.name}", type=kind, default=default, help=f"(default {default})"
        )


def _sim_config(args: argparse.Namespace) -> SimConfig:
    values = {
        f.name: getattr(args, f"sim_{f.name}") for f in fields(SimConfig) if f.name != "model"
    }
    return SimConfig(model="llmbench-sim", **values)


def _add_run_options(
    m: argparse.ArgumentParser, out: str, batch_sizes: Sequence[int], embedded: str = "baseline"
) -> None:
    """Target and sweep options shared by `metrics` and `kv-cache`."""
    m.add_argument(
        "--url",
        help="server base URL, e.g. http://localhost:8000 (default: the embedded scripted server)",
    )
    m.add_argument("--model", default="", help="model name sent in requests (OpenAI APIs)")
    m.add_argument("--api", choices=["chat", "completions", "tgi"], default="chat")
    m.add_argument("--name", default="", help="target name in tables and plots")
    m.add_argument(
        "--batch-sizes",
        type=_int_list,
        default=list(batch_sizes),
        help="comma-separated (default " + ",".join(map(str, batch_sizes)) + ")",
    )
    m.add_argument(
        "--requests",
        type=int,
        default=None,
        help="requests per batch size (default max(4 x batch size, 16))",
    )
    m.add_argument(
        "--duration",
        type=float,
        default=None,
        help="seconds per batch size (stop starting requests after this)",
    )
    m.add_argument("--max-tokens", type=int, default=128)
    m.add_argument(
        "--prompts",
        default=None,
        help="prompt file, one per line (default: the bundled prompts.txt)",
    )
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--warmup", type=int, default=1, help="warm-up requests (default 1)")
    m.add_argument(
        "--tokenizer",
        default=None,
        help="tokenizer.json for token counts the server does not report",
    )
    m.add_argument(
        "--extra-body",
        type=_json_object,
        default={},
        help="JSON merged into each request, e.g. '{\"ignore_eos\": true}'",
    )
    m.add_argument(
        "--api-key-env",
        default="LLMBENCH_API_KEY",
        metavar="VAR",
        help="environment variable holding the API key (default LLMBENCH_API_KEY); it is "
        "sent only as the Authorization header and never written anywhere",
    )
    m.add_argument(
        "--insecure",
        action="store_true",
        help="do not verify TLS certificates (self-signed test servers only)",
    )
    m.add_argument("--temperature", type=float, default=0.0)
    m.add_argument(
        "--force-output-len",
        choices=["vllm", "transformers"],
        default=None,
        help="make each request generate exactly --max-tokens, the server's way",
    )
    m.add_argument(
        "--no-continuous-usage",
        action="store_true",
        help="do not ask for per-chunk usage (for servers that reject it)",
    )
    m.add_argument(
        "--gpu-price",
        type=_price,
        default=None,
        help="USD per GPU-hour, or a preset: "
        + ", ".join(GPU_PRICES_USD_PER_HOUR)
        + " (default L4, 2.93)",
    )
    m.add_argument("--n-gpus", type=int, default=1)
    m.add_argument(
        "--timeout", type=float, default=Timeouts.total, help="total seconds per request"
    )
    m.add_argument(
        "--ttft-timeout",
        type=float,
        default=Timeouts.ttft,
        help=f"seconds to the first token (default {Timeouts.ttft:g})",
    )
    m.add_argument(
        "--idle-timeout",
        type=float,
        default=Timeouts.idle,
        help=f"longest silence once tokens flow (default {Timeouts.idle:g})",
    )
    m.add_argument(
        "--connect-timeout",
        type=float,
        default=Timeouts.connect,
        help=f"seconds to connect (default {Timeouts.connect:g})",
    )
    m.add_argument("--out", default=out, help=f"output folder (default {out})")
    m.add_argument("--quiet", action="store_true", help="no live progress")
    m.add_argument(
        "--gpu",
        type=float,
        nargs="?",
        const=10.0,
        default=None,
        metavar="PERIOD_MS",
        help="sample GPUs through NVML (default period 10 ms)",
    )
    m.add_argument(
        "--metrics-period",
        type=float,
        default=1000.0,
        metavar="MS",
        help="poll the server's /metrics this often (0: off; default 1000)",
    )
    m.add_argument(
        "--model-arch",
        default=None,
        help="KV-cache architecture: a preset (llama-2-7b, llama-2-13b, llama-3-8b, "
        "mistral-7b, ...), a config.json or a model folder",
    )
    m.add_argument(
        "--rates",
        type=_float_list,
        default=None,
        help="open-loop stages at these request rates (req/s) instead of batch sizes",
    )
    m.add_argument("--arrival", choices=["poisson", "constant", "gamma", "ramp"], default="poisson")
    m.add_argument("--burstiness", type=float, default=1.0, help="gamma shape (1 = Poisson)")
    m.add_argument(
        "--max-in-flight", type=int, default=None, help="cap on open-loop requests in flight"
    )
    _add_slo_options(m)
    m.add_argument(
        "--embedded",
        choices=["baseline", "sim"],
        default=embedded,
        help="the target without --url: the naive baseline's tiny preset on the CPU, or the "
        f"scripted server (default {embedded})",
    )
    m.add_argument(
        "--baseline-max-batch",
        type=int,
        default=64,
        help="largest static batch of the embedded baseline (default 64)",
    )
    _add_sim_options(m, DEFAULT_TARGET_CONFIG, prefix="sim-")


def _add_slo_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("service-level objective (ms; goodput columns when given)")
    for metric in ("ttft", "tpot", "itl", "e2e"):
        g.add_argument(f"--slo-{metric}-ms", type=float, default=None)
    g.add_argument("--slo-percentile", type=float, default=99.0)


def _slo(args: argparse.Namespace) -> dict[str, float] | None:
    limits = {
        f"{m}_ms": v
        for m in ("ttft", "tpot", "itl", "e2e")
        if (v := getattr(args, f"slo_{m}_ms")) is not None
    }
    return {**limits, "percentile": args.slo_percentile} if limits else None


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llmbench", description="Benchmark LLM inference servers."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    m = sub.add_parser(
        "metrics",
        help="sweep batch sizes and write results/metrics_study",
        description="Sweep batch sizes against a server (or the embedded scripted server "
        "when no --url is given) and write metrics_data.json, metrics_summary.csv and plots.",
    )
    _add_run_options(m, os.path.join("results", "metrics_study"), DEFAULT_BATCH_SIZES)
    m.add_argument(
        "--config",
        metavar="TOML",
        default=None,
        help="run the sweep a TOML file describes (targets and run_sweep settings; see "
        "llmbench.config); the other sweep options are then ignored",
    )
    m.add_argument(
        "--resume",
        metavar="DIR",
        default=None,
        help="continue the interrupted run in DIR with its own settings (DIR/command.json): "
        "completed batch sizes are kept, the rest are run",
    )

    k = sub.add_parser(
        "kv-cache",
        help="GPU memory and KV-cache study, written to results/kv_cache_study",
        description="Run concurrent load while sampling GPU memory (NVML) and the server's "
        "/metrics, and write gpu_memory_data.json and gpu_memory_timeline.png.",
    )
    _add_run_options(
        k, os.path.join("results", "kv_cache_study"), DEFAULT_KV_BATCH_SIZES, embedded="sim"
    )

    c = sub.add_parser(
        "capacity",
        help="find the highest rate or batch size meeting an SLO",
        description="Bracket then bisect the request rate (or batch size) at which the "
        "target meets the SLO, with repeated trials at each point; writes every trial.",
    )
    _add_run_options(c, os.path.join("results", "capacity"), DEFAULT_BATCH_SIZES)
    c.add_argument("--mode", choices=["rate", "batch_size"], default="rate")
    c.add_argument("--start", type=float, default=1.0)
    c.add_argument("--limit", type=float, default=None)
    c.add_argument("--trials", type=int, default=3)
    c.add_argument("--tolerance", type=float, default=0.05, help="rates: relative step")

    s = sub.add_parser(
        "sim",
        help="run the scripted server until Ctrl-C",
        description="Serve the scripted OpenAI/TGI-compatible server on "
        "127.0.0.1 (chat, completions, /generate_stream).",
    )
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--model", default="llmbench-sim")
    s.add_argument(
        "--for-seconds",
        type=float,
        default=None,
        help="stop after this many seconds (default: until Ctrl-C)",
    )
    _add_sim_options(s, SimConfig(), prefix="")

    cal = sub.add_parser(
        "calibrate",
        help="measure this host's client timing error against the scripted server's truth",
        description="Run the scripted server (recording when it really sent each chunk) at "
        "rising concurrency and token rates, and report the client's TTFT error and "
        "per-chunk lag against it, and the highest load within the tolerance.",
    )
    cal.add_argument("--concurrency", type=_int_list, default=[1, 16, 64, 256])
    cal.add_argument("--itl-ms", type=_float_list, default=[10.0, 2.0])
    cal.add_argument("--tokens", type=int, default=64)
    cal.add_argument("--tolerance-ms", type=float, default=1.0)
    cal.add_argument("--out", default=os.path.join("results", "calibration"))
    cal.add_argument(
        "--no-remember",
        action="store_true",
        help="do not keep this calibration for later runs' client-limit warnings "
        "(default: kept in $LLMBENCH_CALIBRATION or ~/.cache/llmbench/calibration.json)",
    )

    cmp = sub.add_parser(
        "compare",
        help="compare saved runs (vLLM vs TGI vs the baseline) in one table and plots",
        description="Read result folders written by `llmbench metrics` (or Results.save) and "
        "write one comparison: comparison_summary.csv and the plots, one line per target.",
    )
    cmp.add_argument("runs", nargs="+", metavar="DIR")
    cmp.add_argument("--out", default=os.path.join("results", "comparison"))

    b = sub.add_parser(
        "serve",
        help="serve the naive baseline (candle LLaMA) until Ctrl-C",
        description="Serve the naive baseline as an OpenAI-compatible streaming server "
        "(/v1/completions, /v1/chat/completions) with static batching, so the load "
        "generator can measure it beside vLLM and TGI.",
    )
    b.add_argument(
        "--model",
        default="tiny",
        help="a HuggingFace LLaMA folder or a preset with random weights: "
        + ", ".join(PRESETS)
        + " (default tiny)",
    )
    b.add_argument("--host", default="127.0.0.1")
    b.add_argument("--port", type=int, default=8000)
    b.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    b.add_argument("--dtype", default=None, help="float16, bfloat16 or float32")
    b.add_argument("--max-batch", type=int, default=32)
    b.add_argument("--batch-window-ms", type=float, default=2.0)
    b.add_argument("--tokenizer", default=None, help="tokenizer.json (default: the model's)")
    b.add_argument("--seed", type=int, default=0, help="seed of preset random weights")
    b.add_argument("--for-seconds", type=float, default=None)
    return parser


def _print_summary(res: Results) -> None:
    pd = __import__("pandas")
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
        target = sim.target(
            args.api,
            name=args.name or "baseline-tiny",
            timeouts=timeouts,
            extra_body=args.extra_body,
        )
    elif args.url is None:
        sim = SimServer(_sim_config(args))
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
            api_key=os.environ.get(args.api_key_env) or None,
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
            timeouts=timeouts,
            force_output_len=args.force_output_len,
            api_key=os.environ.get(args.api_key_env) or None,
            verify_tls=not args.insecure,
        )
    return target, sim


def _sweep_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "batch_sizes": args.batch_sizes,
        "requests_per_stage": args.requests,
        "max_tokens": args.max_tokens,
        "prompts": args.prompts,
        "gpu_hourly_usd": args.gpu_price,
        "stage_duration_s": args.duration,
        "seed": args.seed,
        "warmup_requests": args.warmup,
        "tokenizer": args.tokenizer,
        "n_gpus": args.n_gpus,
        "progress": not args.quiet,
        "model_arch": args.model_arch,
        "rates": args.rates,
        "arrival": args.arrival,
        "burstiness": args.burstiness,
        "max_in_flight": args.max_in_flight,
        "slo": _slo(args),
    }


COMMAND_FILE = "command.json"


def _save_command(out: str, command: str, argv: Sequence[str]) -> None:
    """Keep the command's arguments beside its results, for `--resume` (API keys are never
    arguments: they come from the environment)."""
    path = Path(out)
    path.mkdir(parents=True, exist_ok=True)
    # A URL's credentials are not kept: resume with `--url` again to give them.
    kept = [redact_url(a) if "://" in a else a for a in argv]
    (path / COMMAND_FILE).write_text(json.dumps({"command": command, "argv": kept}))


def _resumed_args(
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


def _run(args: argparse.Namespace, study: bool) -> int:
    target, sim = _make_target(args)
    kwargs = _sweep_kwargs(args)
    if not study:
        kwargs["resume"] = getattr(args, "resume", None) is not None
    if study and args.model_arch is None and isinstance(sim, SimServer):
        # The scripted server stands in for a LLaMA-2-7B server: size its KV estimate so.
        kwargs["model_arch"] = "llama-2-7b"
    metrics_period = args.metrics_period or False
    try:
        if study:
            res = kv_cache_study(
                target,
                out_dir=args.out,
                gpu_period_ms=args.gpu or 10.0,
                metrics_period_ms=args.metrics_period or 250.0,
                **kwargs,
            )
        else:
            res = run_sweep(
                target,
                out_dir=args.out,
                gpu=args.gpu or False,
                server_metrics=metrics_period,
                **kwargs,
            )
    except SweepInterrupted as stop:
        print(f"\n{stop}", file=sys.stderr)
        if study:
            write_study(stop.results, args.out)
        _print_summary(stop.results)
        return 130
    finally:
        if sim is not None:
            sim.close()
    _print_summary(res)
    files = (
        "gpu_memory_data.json, gpu_memory_timeline.png"
        if study
        else ("metrics_data.json, metrics_summary.csv, *.png")
    )
    print(f"results written to {args.out}/ ({files})")
    return 0


def _cmd_capacity(args: argparse.Namespace) -> int:
    slo = _slo(args)
    if slo is None:
        print("llmbench: error: give at least one --slo-*-ms limit", file=sys.stderr)
        return 2
    target, sim = _make_target(args)
    kwargs = _sweep_kwargs(args)
    for key in (
        "batch_sizes",
        "requests_per_stage",
        "stage_duration_s",
        "rates",
        "slo",
        "max_tokens",
        "max_in_flight",
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
            max_tokens=args.max_tokens,
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
            f"SLO -> {'pass' if step['passed'] else 'fail'}"
        )
    print(res.statement)
    print(f"results written to {out}/ (capacity.json, capacity_trials.csv)")
    return 0


def _wait(for_seconds: float | None) -> None:
    """Keep a server command running until Ctrl-C or for `for_seconds`."""
    deadline = None if for_seconds is None else time.monotonic() + for_seconds
    try:
        while deadline is None or time.monotonic() < deadline:
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass


def _cmd_sim(args: argparse.Namespace) -> int:
    cfg = _sim_config(args)
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


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from .calibrate import calibrate, save, save_default

    cal = calibrate(
        args.concurrency, args.itl_ms, tokens=args.tokens, tolerance_ms=args.tolerance_ms
    )
    pd = __import__("pandas")
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(cal.table.round(3).to_string(index=False))
    print(cal.statement)
    print(f"written to {save(cal, args.out)}")
    if not args.no_remember:
        print(f"remembered for later runs on this host: {save_default(cal)}")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from .compare import compare, comparison_table

    res = compare(args.runs)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    res.summary.to_csv(out / "comparison_summary.csv", index=False)
    paths = res.plot(out_dir=out, close=True)
    pd = __import__("pandas")
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(comparison_table(res).round(2).to_string())
    print(f"comparison written to {out}/ (comparison_summary.csv, {len(paths)} plots)")
    return 0


def _cmd_config(args: argparse.Namespace) -> int:
    from .config import load_config

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
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `llmbench` command."""
    parser = _build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    # A closed pipe (llmbench ... | head) should end quietly.
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    try:
        if args.command == "sim":
            return _cmd_sim(args)
        if args.command == "serve":
            return _cmd_serve(args)
        if args.command == "compare":
            return _cmd_compare(args)
        if args.command == "calibrate":
            return _cmd_calibrate(args)
        if args.command == "capacity":
            return _cmd_capacity(args)
        if args.command == "metrics" and args.config is not None:
            return _cmd_config(args)
        if args.command == "metrics":
            if args.resume is not None:
                args = _resumed_args(parser, args.resume, args.url)
            else:
                _save_command(args.out, "metrics", argv[1:])
        return _run(args, study=args.command == "kv-cache")
    except LlmbenchError as e:
        print(f"llmbench: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nllmbench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
