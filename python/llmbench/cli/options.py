"""The `llmbench` command's options: one parser, every default and choice read from the
engine's definitions (`llmbench._settings`) or the Python API that takes it over."""

from __future__ import annotations

import argparse
import inspect
import os
from collections.abc import Sequence
from dataclasses import fields
from typing import Any

from .. import _core
from .._core import InvalidArgumentError
from .._settings import BASELINE_SERVER, CHOICES, SLO_DEFAULTS, TARGET
from ..ab_analysis import DEFAULT_BLOCKS
from ..baseline import PRESETS
from ..cluster import RayCluster
from ..datasets import DEFAULT_INPUT_TOKENS, DEFAULT_N_PROMPTS, DEFAULT_TURNS, THINK_TIMES
from ..sim import DEFAULT_TARGET_CONFIG, SimConfig
from ..studies.calibrate import calibrate
from ..studies.kv_cache import DEFAULT_KV_BATCH_SIZES, KV_METRICS_PERIOD_MS
from ..sweep_options import FIELD_DEFAULT, Flag, setting_fields
from ..targets import Timeouts
from .types import PARSERS, fault_list, float_list, int_list, json_object, port, yes_no


def _add_sim_options(p: argparse.ArgumentParser, defaults: SimConfig, prefix: str) -> None:
    g = p.add_argument_group("scripted server timings (ms) and faults")
    for f in fields(SimConfig):
        if f.name == "model":
            continue
        flag = "--" + prefix + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        kind: Any = float if isinstance(default, float) else int
        if f.name == "faults":
            kind = fault_list
        elif isinstance(default, bool):
            kind = yes_no
        g.add_argument(
            flag, dest=f"sim_{f.name}", type=kind, default=default, help=f"(default {default})"
        )


def sim_config(args: argparse.Namespace) -> SimConfig:
    values = {
        f.name: getattr(args, f"sim_{f.name}") for f in fields(SimConfig) if f.name != "model"
    }
    return SimConfig(model="llmbench-sim", **values)


def _add_run_options(
    m: argparse.ArgumentParser,
    out: str,
    defaults: dict[str, Any],
    embedded: str = "baseline",
    report: bool = True,
) -> None:
    """Target and sweep options shared by `metrics`, `kv-cache` and `capacity` (which
    writes no report, so offers no `--report`); `defaults`: the command's own flag
    defaults, by setting."""
    _add_target_options(m)
    _add_load_options(m, defaults)
    _add_output_options(m, out, report, defaults)
    _add_embedded_options(m, embedded)


def _add_target_options(m: argparse.ArgumentParser) -> None:
    """The server: where it is, how to talk to it, how long to wait for it."""
    m.add_argument(
        "--url",
        help="server base URL, e.g. http://localhost:8000 (default: the embedded scripted server)",
    )
    m.add_argument("--model", default="", help="model name sent in requests (OpenAI APIs)")
    m.add_argument("--api", choices=CHOICES["api"], default="chat")
    m.add_argument("--name", default="", help="target name in tables and plots")
    m.add_argument(
        "--extra-body",
        type=json_object,
        default={},
        help="JSON merged into each request, e.g. '{\"ignore_eos\": true}'",
    )
    m.add_argument(
        "--api-key-env",
        default=None,
        metavar="VAR",
        help="environment variable holding the API key (default LLMBENCH_API_KEY); it is "
        "sent only as the Authorization header and never written anywhere; a variable named "
        "here that is unset or empty is an error",
    )
    m.add_argument(
        "--insecure",
        action="store_true",
        help="do not verify TLS certificates (self-signed test servers only)",
    )
    m.add_argument("--temperature", type=float, default=TARGET["temperature"])
    m.add_argument(
        "--force-output-len",
        choices=CHOICES["force_output_len"],
        default=None,
        help="make each request generate exactly --max-tokens, the server's way",
    )
    m.add_argument(
        "--no-continuous-usage",
        action="store_true",
        help="do not ask for per-chunk usage (for servers that reject it)",
    )
    m.add_argument(
        "--include-metrics",
        action="store_true",
        help="ask for the server's own queue/prefill/decode times of each request (vLLM "
        ">= 0.33 run with --enable-per-request-metrics)",
    )
    m.add_argument(
        "--timeout",
        type=float,
        default=Timeouts.total,
        help=f"total seconds per request (default {Timeouts.total:g})",
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


def flag_dest(flag: Flag) -> str:
    """The `argparse` dest of a setting's flag (`--gpu-price`: `gpu_price`)."""
    return flag.name.lstrip("-").replace("-", "_")


def _default_text(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def add_sweep_flags(
    groups: dict[str, Any],
    defaults: dict[str, Any] | None = None,
    skip: Sequence[str] = (),
    only: Sequence[str] | None = None,
) -> None:
    """Add the flag of every sweep setting (`llmbench.SweepOptions`) whose flag belongs
    to one of `groups` (group name: the parser or argument group to add it to), its type,
    default and help read from the setting's declaration; `defaults` are the command's
    own flag defaults, by setting name; `skip` and `only` leave settings out."""
    for f in setting_fields():
        meta = f.metadata["setting"]
        flag = meta.flag
        if flag is None or f.name in skip or flag.group not in groups:
            continue
        if only is not None and f.name not in only:
            continue
        if defaults and f.name in defaults:
            default = defaults[f.name]
        else:
            default = f.default if flag.default is FIELD_DEFAULT else flag.default
        if isinstance(default, tuple):
            default = list(default)
        shown = "" if default is None else f" (default {_default_text(default)})"
        kwargs: dict[str, Any] = {
            "dest": flag_dest(flag),
            "default": default,
            # argparse formats help with %: a literal one is doubled.
            "help": (meta.help + shown).replace("%", "%%"),
        }
        if flag.action == "boolean_optional":
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = PARSERS[flag.type]
            for key in ("nargs", "const", "metavar", "choices"):
                if getattr(flag, key) is not None:
                    kwargs[key] = getattr(flag, key)
        groups[flag.group].add_argument(flag.name, **kwargs)


def sweep_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The sweep settings the parsed flags give: one per setting whose flag this command
    has, turned into the setting's value (`Flag.to_setting`)."""
    out = {}
    for f in setting_fields():
        flag = f.metadata["setting"].flag
        if flag is None or not hasattr(args, flag_dest(flag)):
            continue
        value = getattr(args, flag_dest(flag))
        out[f.name] = flag.to_setting(value) if flag.to_setting else value
    return out


def _add_load_options(m: argparse.ArgumentParser, defaults: dict[str, Any]) -> None:
    """What load to send: stages, requests, prompts, arrivals, SLO."""
    add_sweep_flags({"load": m}, defaults)
    _add_workload_options(m)
    _add_cluster_options(m)
    _add_slo_options(m)


def _add_cluster_options(m: argparse.ArgumentParser) -> None:
    """Where the load comes from: this process, or a Ray cluster's workers."""
    g = m.add_argument_group("client machines on Ray (docs/distributed.md; pip install '.[ray]')")
    g.add_argument(
        "--ray",
        metavar="ADDRESS",
        default=None,
        help="send the load from a Ray cluster's workers: host:port of its head, "
        "ray://host:10001, 'auto', or 'local' (a Ray instance on this machine)",
    )
    g.add_argument(
        "--workers",
        type=int,
        default=RayCluster.workers,
        help=f"engine workers on the cluster (default {RayCluster.workers})",
    )
    g.add_argument(
        "--cores-per-worker",
        type=float,
        default=RayCluster.cores_per_worker,
        help=f"CPUs reserved per worker (default {RayCluster.cores_per_worker:g})",
    )


def cluster(args: argparse.Namespace) -> RayCluster | None:
    """The Ray cluster the command line asks for, or None (this process sends the load)."""
    address = getattr(args, "ray", None)
    if address is None:
        return None
    return RayCluster(
        address=None if address == "local" else address,
        workers=args.workers,
        cores_per_worker=args.cores_per_worker,
    )


def _add_workload_options(m: argparse.ArgumentParser) -> None:
    """Workloads beyond single prompts (docs/workloads.md): conversations, shared prefixes,
    a sweep over input lengths, or any `llmbench.datasets` workload as JSON."""
    g = m.add_argument_group("workloads (docs/workloads.md)")
    g.add_argument(
        "--conversations",
        type=int,
        default=None,
        metavar="N",
        help="N synthetic multi-turn conversations; each stage's batch size is then "
        "conversations in flight and --requests counts conversations",
    )
    g.add_argument(
        "--turns",
        type=int,
        default=DEFAULT_TURNS,
        help=f"turns per conversation (default {DEFAULT_TURNS})",
    )
    g.add_argument(
        "--think-time",
        type=float,
        default=0.0,
        metavar="S",
        help="seconds between a turn's end and the next turn's send (default 0)",
    )
    g.add_argument(
        "--think-time-dist",
        choices=THINK_TIMES,
        default="fixed",
        help="fixed, or exponential with --think-time as its mean (seeded)",
    )
    g.add_argument(
        "--shared-prefix",
        type=int,
        default=None,
        metavar="TOKENS",
        help="prompts that share a prefix of exactly TOKENS tokens, in --prefix-groups groups",
    )
    g.add_argument("--prefix-groups", type=int, default=1, help="distinct prefixes (default 1)")
    g.add_argument(
        "--input-tokens",
        type=int,
        default=DEFAULT_INPUT_TOKENS,
        help="tokens of each conversation turn, or of each suffix after a shared prefix "
        f"(words without --tokenizer; default {DEFAULT_INPUT_TOKENS})",
    )
    g.add_argument(
        "--n-prompts",
        type=int,
        default=DEFAULT_N_PROMPTS,
        help=f"distinct prompts of a --shared-prefix workload (default {DEFAULT_N_PROMPTS})",
    )
    add_sweep_flags({"workload": g})
    g.add_argument(
        "--workload",
        type=json_object,
        default=None,
        help="any llmbench.datasets workload as JSON, e.g. "
        '\'{"kind": "sharegpt", "path": "sg.json", "multi_turn": true}\'',
    )


def workload(args: argparse.Namespace) -> dict[str, Any] | None:
    """The `workload` setting the workload flags describe (None: single prompts)."""
    given = [
        flag
        for flag, v in (
            ("--conversations", args.conversations),
            ("--shared-prefix", args.shared_prefix),
            ("--workload", args.workload),
        )
        if v is not None
    ]
    if len(given) > 1:
        raise InvalidArgumentError(f"give one workload, not {' and '.join(given)}")
    if args.workload is not None:
        return dict(args.workload)
    if args.conversations is not None:
        return {
            "kind": "conversations",
            "n": args.conversations,
            "turns": args.turns,
            "input_tokens": args.input_tokens,
            "output_tokens": args.max_tokens,
            "think_time_s": args.think_time,
            "think_time": args.think_time_dist,
        }
    if args.shared_prefix is not None:
        return {
            "kind": "shared_prefix",
            "n": args.n_prompts,
            "groups": args.prefix_groups,
            "prefix_tokens": args.shared_prefix,
            "suffix_tokens": args.input_tokens,
            "output_tokens": args.max_tokens,
        }
    return None


def _add_output_options(
    m: argparse.ArgumentParser,
    out: str,
    report: bool = True,
    defaults: dict[str, Any] | None = None,
) -> None:
    """Where results go (with `report`, whether report.html does), what they cost, what
    is sampled beside them."""
    add_sweep_flags(
        {"output": m}, {"out_dir": out, **(defaults or {})}, skip=() if report else ["report"]
    )
    m.add_argument("--quiet", action="store_true", help="no live progress")


def _add_report_option(m: argparse.ArgumentParser) -> None:
    """`--report` alone, for commands that save no sweep of their own (compare)."""
    add_sweep_flags({"output": m}, only=["report"])


def _add_embedded_options(m: argparse.ArgumentParser, embedded: str) -> None:
    """The target measured when no --url is given."""
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
    g.add_argument("--slo-percentile", type=float, default=SLO_DEFAULTS["percentile"])


def slo_limits(args: argparse.Namespace) -> dict[str, float] | None:
    limits = {
        f"{m}_ms": v
        for m in ("ttft", "tpot", "itl", "e2e")
        if (v := getattr(args, f"slo_{m}_ms")) is not None
    }
    return {**limits, "percentile": args.slo_percentile} if limits else None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llmbench", description="Benchmark LLM inference servers."
    )
    parser.add_argument("--version", action="version", version=f"llmbench {_core.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    m = sub.add_parser(
        "metrics",
        help="sweep batch sizes and write results/metrics_study",
        description="Sweep batch sizes against a server (or the embedded scripted server "
        "when no --url is given) and write metrics_data.json, metrics_summary.csv and plots.",
    )
    _add_run_options(m, os.path.join("results", "metrics_study"), {})
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
        k,
        os.path.join("results", "kv_cache_study"),
        {"batch_sizes": DEFAULT_KV_BATCH_SIZES, "server_metrics": KV_METRICS_PERIOD_MS},
        embedded="sim",
    )

    c = sub.add_parser(
        "capacity",
        help="find the highest rate or batch size meeting an SLO",
        description="Bracket then bisect the request rate (or batch size) at which the "
        "target meets the SLO, with repeated trials at each point; writes every trial.",
    )
    _add_run_options(c, os.path.join("results", "capacity"), {}, report=False)
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
    s.add_argument("--port", type=port, default=8000)
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
    cal_defaults = {name: p.default for name, p in inspect.signature(calibrate).parameters.items()}
    for name, kind in (
        ("concurrency", int_list),
        ("itl_ms", float_list),
        ("tokens", int),
        ("tolerance_ms", float),
    ):
        default = cal_defaults[name]
        cal.add_argument(
            "--" + name.replace("_", "-"),
            type=kind,
            default=list(default) if isinstance(default, tuple) else default,
            help=f"(default {_default_text(default)})",
        )
    _add_cluster_options(cal)
    cal.add_argument("--out", default=os.path.join("results", "calibration"))
    cal.add_argument(
        "--no-remember",
        action="store_true",
        help="do not keep this calibration for later runs' client-limit warnings "
        "(default: kept in $LLMBENCH_CALIBRATION or ~/.cache/llmbench/calibration.json)",
    )

    ab = sub.add_parser(
        "ab",
        help="A/B test two servers on one schedule: differences with 95%% intervals",
        description="Run targets A and B on the same seeded schedule in alternating blocks "
        "(A B B A ...), then report per stage and metric the difference B - A with its 95% "
        "interval, p-value and verdict; writes ab_table.csv, ab.json and the run's files.",
    )
    ab.add_argument("--url-a", required=True, help="server A's base URL")
    ab.add_argument("--url-b", required=True, help="server B's base URL")
    ab.add_argument("--model-a", default=None, help="model name for A (default --model)")
    ab.add_argument("--model-b", default=None, help="model name for B (default --model)")
    ab.add_argument("--name-a", default="A", help="A's name in tables (default A)")
    ab.add_argument("--name-b", default="B", help="B's name in tables (default B)")
    _add_target_options(ab)
    _add_load_options(ab, {"repeats": DEFAULT_BLOCKS})
    _add_output_options(ab, os.path.join("results", "ab"))
    ab.add_argument(
        "--allow-same-url",
        action="store_true",
        help="allow A and B to be the same server (an A/A check of the method)",
    )

    cmp = sub.add_parser(
        "compare",
        help="compare saved runs (vLLM vs TGI vs the baseline) in one table and plots",
        description="Read result folders written by `llmbench metrics` (or Results.save) and "
        "write one comparison: comparison_summary.csv and the plots, one line per target.",
    )
    cmp.add_argument("runs", nargs="+", metavar="DIR")
    cmp.add_argument("--out", default=os.path.join("results", "comparison"))
    _add_report_option(cmp)

    rep = sub.add_parser(
        "report",
        help="write one self-contained HTML report of saved runs",
        description="Read result folders written by `llmbench metrics`, `ab` (or "
        "Results.save; any folder with metrics_data.json) and write one HTML page that opens "
        "offline in any browser: one run, or for several folders one comparison. "
        "`llmbench kv-cache` writes its own report.html (--report).",
    )
    rep.add_argument("runs", nargs="+", metavar="DIR")
    rep.add_argument(
        "-o",
        "--output",
        default=None,
        help="the HTML file (default DIR/report.html for one folder, comparison_report.html "
        "here for several)",
    )
    rep.add_argument("--title", default=None, help="the page's title")

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
    b.add_argument("--port", type=port, default=8000)
    b.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    b.add_argument("--dtype", default=None, help="float16, bfloat16 or float32")
    b.add_argument("--max-batch", type=int, default=BASELINE_SERVER["max_batch"])
    b.add_argument("--batch-window-ms", type=float, default=BASELINE_SERVER["batch_window_ms"])
    b.add_argument("--tokenizer", default=None, help="tokenizer.json (default: the model's)")
    b.add_argument("--seed", type=int, default=0, help="seed of preset random weights")
    b.add_argument("--for-seconds", type=float, default=None)
    return parser
