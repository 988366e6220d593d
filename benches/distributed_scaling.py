"""Scaling with client workers on Ray, against one process on the same cores.

On one machine of at least 2 x max(workers) cores: the scripted server (`llmbench sim
--record-truth 1`, TTFT 50 ms, 10 ms per token, 64 tokens, completions API) runs pinned to
the first half of the cores; for each W in `--workers` the load comes from W cores of the
other half, once from one llmbench process pinned to them and once from W Ray workers (a
Ray head pinned to the same cores, one engine of one core each). Each run is one
closed-loop stage of `--streams-per-core` x W streams and twice as many requests.

Per run: streamed tokens per second at the server (its truth), the TTFT p50 and p99
reported against the server's truth (error in ms), the client's verdict, and for the
cluster the clock residual. Results go to `--out` (JSON) and a table on stdout
(docs/distributed.md). Needs `ray` importable (`pip install '.[ray]'`, or on the GPU
machine the wheels shipped with `benches/ship_wheels.py`).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from _host import cpu_model
from peers import Server, truth_stats

TOKENS = 64


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on {port} (exit {proc.poll()})") from None
            time.sleep(0.3)


def served(server: Server) -> dict[str, Any]:
    """The server's side of what it served since the last call (`peers.truth_stats`)."""
    truth = truth_stats(*server.take_truth())
    return {
        "requests": truth["streams_completed"],
        "tok_s": truth["tok_s"],
        "ttft_p50": float(np.percentile(truth["ttft_ms"], 50)),
        "ttft_p99": float(np.percentile(truth["ttft_ms"], 99)),
    }


SINGLE = """
import json, sys, llmbench
url, streams = sys.argv[1], int(sys.argv[2])
res = llmbench.run_sweep(llmbench.OpenAI(url, model="llmbench-sim", api="completions"),
    batch_sizes=[streams], requests_per_stage=2 * streams, max_tokens=TOKENS, warmup_requests=0,
    server_metrics=False, progress=False)
print(json.dumps(res.summary.iloc[0].to_dict(), default=str))
""".replace("TOKENS", str(TOKENS))


def run_single(url: str, cores: str, streams: int) -> dict[str, Any]:
    out = subprocess.run(
        ["taskset", "-c", cores, sys.executable, "-c", SINGLE, url, str(streams)],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_cluster(url: str, cores: str, workers: int, streams: int) -> dict[str, Any]:
    import llmbench

    port = free_port()
    head = subprocess.Popen(
        [
            *("taskset", "-c", cores, sys.executable, "-m", "ray.scripts.scripts", "start"),
            *("--head", "--block", f"--port={port}", f"--num-cpus={workers}"),
            *("--include-dashboard=false", "--disable-usage-stats", "--node-ip-address=127.0.0.1"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, "RAY_AUTH_MODE": "disabled"},
    )
    try:
        wait_port(port, head)
        res = llmbench.run_sweep(
            llmbench.OpenAI(url, model="llmbench-sim", api="completions"),
            batch_sizes=[streams],
            requests_per_stage=2 * streams,
            max_tokens=TOKENS,
            warmup_requests=0,
            server_metrics=False,
            progress=False,
            cluster=llmbench.RayCluster(f"127.0.0.1:{port}", workers=workers),
        )
        row = res.summary.iloc[0].to_dict()
        import ray

        ray.shutdown()
        return row
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workers", default="1,2,4,8")
    ap.add_argument("--streams-per-core", type=int, default=512)
    ap.add_argument("--out", type=Path, default=Path("distributed_scaling.json"))
    args = ap.parse_args()
    workers = [int(w) for w in args.workers.split(",")]
    half = (os.cpu_count() or 2) // 2
    if max(workers) > half:
        sys.exit(f"{os.cpu_count()} cores: at most {half} client cores")
    server_cores = f"0-{half - 1}"
    # The driver shares the server's cores: it only plans and merges.
    os.sched_setaffinity(0, set(range(half)))
    server = Server(server_cores, free_port())
    rows = []
    try:
        for w in workers:
            cores = f"{half}-{half + w - 1}"
            streams = args.streams_per_core * w
            for how in ("one process", "ray workers"):
                server.take_truth()  # clear
                t = time.monotonic()
                if how == "one process":
                    rep = run_single(server.url, cores, streams)
                else:
                    rep = run_cluster(server.url, cores, w, streams)
                wall = time.monotonic() - t
                truth = served(server)
                row = {
                    "client_cores": w,
                    "how": how,
                    "streams": streams,
                    "requests": truth["requests"],
                    "server_tok_s": truth["tok_s"],
                    "ttft_err_p50_ms": float(rep["ttft_p50_ms"]) - truth["ttft_p50"],
                    "ttft_err_p99_ms": float(rep["ttft_p99_ms"]) - truth["ttft_p99"],
                    "client_trustworthy": rep.get("client_trustworthy"),
                    "client_task_lag_p99_ms": rep.get("client_task_lag_p99_ms"),
                    "clock_residual_max_ms": rep.get("clock_residual_max_ms"),
                    "client_health": rep.get("client_health"),
                    "wall_s": wall,
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
    finally:
        server.stop()
    host = {"cpu_count": os.cpu_count(), "platform": sys.platform, "cpu": cpu_model()}
    args.out.write_text(json.dumps({"host": host, "rows": rows}, indent=1))
    print(
        f"{'cores':>5} {'how':<12} {'streams':>7} {'tok/s':>9} {'TTFT p50 err':>12} {'p99 err':>8}"
    )
    for r in rows:
        print(
            f"{r['client_cores']:>5} {r['how']:<12} {r['streams']:>7} {r['server_tok_s']:>9.0f} "
            f"{r['ttft_err_p50_ms']:>+12.1f} {r['ttft_err_p99_ms']:>+8.1f}"
        )


if __name__ == "__main__":
    main()
