"""How long a 1,000-request sweep at batch size 128 takes against the built-in scripted
server, and how far the reported TTFT / ITL are from the scripted values.

The scripted server and llmbench's client run in one process here (the server on the
same tokio runtime), so this measures the whole loop on this machine. The ideal time is
what the script alone implies: ceil(1000 / 128) waves of (TTFT + (n - 1) x ITL).

Usage: python benches/sweep_timing.py [--requests 1000] [--batch-size 128]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time

import llmbench


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--ttft-ms", type=float, default=50.0)
    ap.add_argument("--itl-ms", type=float, default=10.0)
    ap.add_argument("--max-tokens", type=int, default=64)
    args = ap.parse_args()

    print(f"machine: {platform.node()} {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}, "
          f"llmbench {llmbench.__version__}")
    rows = []
    with llmbench.SimServer(ttft_ms=args.ttft_ms, itl_ms=args.itl_ms, max_batch=100_000) as sim:
        for bs, n in [(1, 20), (16, 200), (args.batch_size, args.requests)]:
            t0 = time.perf_counter()
            res = llmbench.run_sweep(
                sim.target("chat"), batch_sizes=[bs], requests_per_stage=n,
                max_tokens=args.max_tokens, progress=False,
            )
            wall = time.perf_counter() - t0
            s = res.summary.iloc[0]
            per_request = (args.ttft_ms + (args.max_tokens - 1) * args.itl_ms) / 1e3
            ideal = math.ceil(n / bs) * per_request
            rows.append((bs, n, wall, ideal, s))
    print(f"\nscripted: TTFT {args.ttft_ms} ms, ITL {args.itl_ms} ms, {args.max_tokens} tokens")
    print(f"{'batch':>6} {'requests':>8} {'wall s':>8} {'ideal s':>8} {'wall/ideal':>10} "
          f"{'TTFT p50 err':>13} {'TTFT p99 err':>13} {'ITL mean err':>13} {'send lag p99':>13}")
    for bs, n, wall, ideal, s in rows:
        print(f"{bs:>6} {n:>8} {wall:>8.2f} {ideal:>8.2f} {wall / ideal:>10.3f} "
              f"{s['ttft_p50_ms'] - args.ttft_ms:>+10.2f} ms {s['ttft_p99_ms'] - args.ttft_ms:>+10.2f} ms "
              f"{s['itl_mean_ms'] - args.itl_ms:>+10.3f} ms {s['send_lag_p99_ms']:>10.3f} ms")


if __name__ == "__main__":
    main()
