"""The `llmbench` command.

    llmbench metrics [--url URL --model NAME --api chat|completions|tgi] [options]
    llmbench kv-cache [same options]
    llmbench capacity [same options] --slo-ttft-ms MS [--mode rate|batch_size]
    llmbench ab --url-a URL --url-b URL [--repeats N] [same load options]
    llmbench compare DIR [DIR ...] [--out DIR]
    llmbench report DIR [DIR ...] [-o report.html]
    llmbench sim [--port N] [timings]
    llmbench serve [--model PATH|PRESET] [--port N] [--device cpu|cuda]

Without `--url`, `llmbench metrics` and `llmbench capacity` measure the embedded default
target: the naive baseline's `tiny` preset served in-process on the CPU (`--embedded sim`
picks the scripted server instead); `llmbench kv-cache` uses the scripted server standing
in for a LLaMA-2-7B server. None of them needs a GPU, network or download.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Sequence

from .._core import LlmbenchError
from ..checks import SettingError
from . import commands
from .options import build_parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `llmbench` command."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    # A closed pipe (llmbench ... | head) should end quietly.
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    try:
        if args.command == "sim":
            return commands.cmd_sim(args)
        if args.command == "serve":
            return commands.cmd_serve(args)
        if args.command == "compare":
            return commands.cmd_compare(args)
        if args.command == "report":
            return commands.cmd_report(args)
        if args.command == "calibrate":
            return commands.cmd_calibrate(args)
        if args.command == "capacity":
            return commands.cmd_capacity(args)
        if args.command == "ab":
            return commands.cmd_ab(args)
        if args.command == "metrics" and args.config is not None:
            return commands.cmd_config(args)
        if args.command == "metrics":
            if args.resume is not None:
                args = commands.resumed_args(parser, args.resume, args.url)
            else:
                commands.save_command(args.out, "metrics", argv[1:])
        return commands.cmd_sweep(args, study=args.command == "kv-cache")
    except SettingError as e:
        # In the user's own words: the flag, not the API keyword (a TOML file's key
        # was already named, with its table, when the file was read).
        name = (
            e.setting
            if getattr(args, "config", None)
            else commands.flag_for(parser, args.command, e.setting)
        )
        print(f"llmbench: error: {e.message(name)}", file=sys.stderr)
        return 1
    except LlmbenchError as e:
        print(f"llmbench: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nllmbench: interrupted", file=sys.stderr)
        return 130
