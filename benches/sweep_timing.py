"""How long a 1,000-request sweep at batch size 128 takes against the built-in scripted
server, and how far the reported TTFT / ITL are from the truth.

Two errors are reported apart: the client's (its TTFT and chunk times minus when the
server really sent each chunk, recorded by the server on the same clock) and the
scripted server's own lateness (when it sent the first chunk minus when the script said).

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
import numpy as np
from llmbench.studies.calibrate import client_errors


def server_lateness(res, truth):
    """When the server sent each request's first chunk after receiving it (ms)."""
    t = truth.set_index("request_id").loc[res.requests["id"]]
    return (t["t_first_ns"].astype(np.int64) - t["t_received_ns"].astype(np.int64)) / 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--ttft-ms", type=float, default=50.0)
    ap.add_argument("--itl-ms", type=float, default=10.0)
    ap.add_argument("--max-tokens", type=int, default=64)
    args = ap.parse_args()

    print(
        f"machine: {platform.node()} {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, "
        f"llmbench {llmbench.__version__}"
    )
    rows = []
    with llmbench.SimServer(
        ttft_ms=args.ttft_ms, itl_ms=args.itl_ms, max_batch=100_000, record_truth=True
    ) as sim:
        for bs, n in [(1, 20), (16, 200), (args.batch_size, args.requests)]:
            t0 = time.perf_counter()
            res = llmbench.run_sweep(
                sim.target("chat"),
                batch_sizes=[bs],
                requests_per_stage=n,
                max_tokens=args.max_tokens,
                progress=False,
            )
            wall = time.perf_counter() - t0
            s = res.summary.iloc[0]
            truth = sim.take_truth()
            ttft_err, lags = client_errors(res, truth)
            assert len(ttft_err) == len(res.requests)
            errs = (ttft_err, lags, server_lateness(res, truth).to_numpy())
            per_request = (args.ttft_ms + (args.max_tokens - 1) * args.itl_ms) / 1e3
            ideal = math.ceil(n / bs) * per_request
            rows.append((bs, n, wall, ideal, s, errs))
    print(f"\nscripted: TTFT {args.ttft_ms} ms, ITL {args.itl_ms} ms, {args.max_tokens} tokens")
    print("wall includes the warm-up request and the server-info queries")
    print(
        f"{'batch':>6} {'requests':>8} {'wall s':>8} {'ideal s':>8} {'wall/ideal':>10} "
        f"{'reported TTFT-script p50/p99':>29} {'ITL mean-script':>16} "
        f"{'client TTFT err p50/p99':>24} {'chunk lag p50/p99':>18} {'server late p50/p99':>20}"
    )
    for bs, n, wall, ideal, s, (ttft_err, lags, late) in rows:
        rep50, rep99 = s["ttft_p50_ms"] - args.ttft_ms, s["ttft_p99_ms"] - args.ttft_ms
        late50, late99 = (np.percentile(late, q) - args.ttft_ms for q in (50, 99))
        print(
            f"{bs:>6} {n:>8} {wall:>8.2f} {ideal:>8.2f} {wall / ideal:>10.3f} "
            f"{rep50:>+13.2f} /{rep99:>+7.2f} ms "
            f"{s['itl_mean_ms'] - args.itl_ms:>+13.3f} ms "
            f"{np.percentile(ttft_err, 50):>10.3f} /{np.percentile(ttft_err, 99):>7.3f} ms "
            f"{np.percentile(lags, 50):>7.3f} /{np.percentile(lags, 99):>6.3f} ms "
            f"{late50:>+8.2f} /{late99:>+6.2f} ms"
        )


if __name__ == "__main__":
    main()
