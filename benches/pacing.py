"""Open-loop pacing precision: send lag (sent minus scheduled) and delivered rate at 100,
1,000 and 5,000 requests per second, with the client on one core and the scripted server
(a separate process) on another.

Usage: python benches/pacing.py [--seconds 5] [--arrival constant|poisson]
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import subprocess
import sys
import time

import llmbench

RATES = (100, 1000, 5000)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--arrival", default="constant")
    ap.add_argument("--port", type=int, default=18801)
    args = ap.parse_args()
    cores = sorted(os.sched_getaffinity(0))
    server_core, client_core = cores[-1], cores[0]
    print(
        f"machine: {platform.node()}, {os.cpu_count()} cores; client on core {client_core}, "
        f"server on core {server_core}; llmbench {llmbench.__version__}"
    )
    server = subprocess.Popen(
        [
            "taskset",
            "-c",
            str(server_core),
            sys.executable,
            "-m",
            "llmbench.cli",
            "sim",
            "--port",
            str(args.port),
            "--ttft-ms",
            "1",
            "--itl-ms",
            "1",
            "--max-batch",
            "100000",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        server.stdout.readline()
        os.sched_setaffinity(0, {client_core})
        target = llmbench.OpenAI(
            f"http://127.0.0.1:{args.port}", model="llmbench-sim", api="completions"
        )
        print(
            f"{'rate':>6} {'requests':>8} {'sent/s':>9} {'error':>8} {'lag p50':>9} "
            f"{'lag p99':>9} {'lag max':>9} {'late>1ms':>9}"
        )
        for rate in RATES:
            t = time.perf_counter()
            res = llmbench.run_sweep(
                target,
                rates=[rate],
                arrival=args.arrival,
                stage_duration_s=args.seconds,
                requests_per_stage=10**7,
                max_tokens=2,
                progress=False,
                server_metrics=False,
            )
            s = res.summary.iloc[0]
            err = s["sent_rate_req_s"] / rate - 1
            print(
                f"{rate:>6} {int(s['n_requests']):>8} {s['sent_rate_req_s']:>9.1f} "
                f"{err:>+8.2%} {s['send_lag_p50_ms']:>7.3f}ms {s['send_lag_p99_ms']:>7.3f}ms "
                f"{s['send_lag_max_ms']:>7.2f}ms {int(s['late_sends_1ms']):>9}"
                f"   ({time.perf_counter() - t:.1f} s, {int(s['n_failed'])} failed)"
            )
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=20)


if __name__ == "__main__":
    main()
