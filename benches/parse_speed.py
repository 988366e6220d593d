"""Streamed tokens parsed and timestamped per second on one client core, without a socket.

The scripted server's exact bytes for a 64-token stream go through llmbench's SSE parser
and per-request accumulator (`llmbench._core.parse_speed`: one clock reading per read,
event parsing, JSON decoding, token attribution, the finished record) on this thread,
pinned to one core. The peer measured in the same run is the loop the Python tools
(vLLM's `bench serve`, AIPerf, GuideLLM) run per event: split the bytes into lines, take
the `data:` ones, `json.loads` each (orjson where installed, as AIPerf uses) and read the
text delta, with one `time.perf_counter_ns()` per read.

Usage: python benches/parse_speed.py [--requests 20000] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import llmbench
from _host import cpu_model
from llmbench import _core

try:  # the fastest JSON decoder a Python peer could use
    import orjson

    loads = orjson.loads
    DECODER = f"orjson {orjson.__version__}"
except ImportError:  # pragma: no cover - depends on the environment
    loads = json.loads
    DECODER = "json (stdlib)"


def stream_bytes(api: str, tokens: int) -> bytes:
    """The scripted server's bytes for one stream, taken from a real server run."""
    import urllib.request

    with llmbench.SimServer(ttft_ms=0, itl_ms=0) as sim:
        if api == "chat":
            path, body = "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}
        else:
            path, body = "/v1/completions", {"prompt": "hi"}
        body.update(
            model="llmbench-sim",
            max_tokens=tokens,
            stream=True,
            stream_options={"include_usage": True},
        )
        req = urllib.request.Request(
            sim.url + path, json.dumps(body).encode(), {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req) as r:
            return r.read()


def python_peer(api: str, data: bytes, requests: int) -> dict[str, Any]:
    """The per-event work of the Python peers, one event per read."""
    reads = [e + b"\n\n" for e in data.split(b"\n\n") if e]
    key = "delta" if api == "chat" else None
    tokens = 0
    t0 = time.perf_counter_ns()
    for _ in range(requests):
        times = []
        for read in reads:
            t = time.perf_counter_ns()
            for line in read.split(b"\n"):
                if not line.startswith(b"data:"):
                    continue
                payload = line[5:].strip()
                if payload == b"[DONE]":
                    continue
                obj = loads(payload)
                choices = obj.get("choices") or []
                if choices:
                    c = choices[0]
                    text = c[key].get("content") if key else c.get("text")
                    if text:
                        tokens += 1
                        times.append(t)
    seconds = (time.perf_counter_ns() - t0) / 1e9
    return {"tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    core = sorted(os.sched_getaffinity(0))[0]
    os.sched_setaffinity(0, {core})
    machine = {
        "host": platform.node(),
        "cpu": cpu_model(),
        "core": core,
        "llmbench": llmbench.__version__,
        "python": platform.python_version(),
        "peer_decoder": DECODER,
    }
    print(json.dumps(machine))
    rows = []
    for api in ("chat", "completions", "tgi"):
        for read_bytes, label in ((0, "one event per read"), (16384, "16 KiB reads")):
            r = _core.parse_speed(api, args.requests, args.tokens, read_bytes)
            rows.append({"api": api, "reads": label, **r})
        if api != "tgi":
            peer = python_peer(api, stream_bytes(api, args.tokens), max(args.requests // 10, 1))
            ours = next(x for x in rows if x["api"] == api and x["reads"] == "one event per read")
            rows.append(
                {
                    "api": api,
                    "reads": "one event per read",
                    "tool": f"python loop ({DECODER})",
                    **peer,
                    "llmbench_ratio": ours["tokens_per_s"] / peer["tokens_per_s"],
                }
            )
    for r in rows:
        tool = r.get("tool", "llmbench")
        ratio = f"  llmbench is {r['llmbench_ratio']:.1f}x" if "llmbench_ratio" in r else ""
        print(
            f"{tool:>28} {r['api']:>12} {r['reads']:>20}: "
            f"{r['tokens_per_s']:>12,.0f} tokens/s{ratio}"
        )
    if args.out:
        args.out.write_text(json.dumps({"machine": machine, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
