"""Soak: a long run at many concurrent streams against the built-in scripted server, watching
the client for leaks: resident memory, open file descriptors and sockets, sampled every few
seconds while the run goes on, and after it ends.

The scripted server runs in its own process (`llmbench sim`), so the figures are the
client's alone. The engine keeps no record in memory (they go to the record file as the run
goes) and summarizes each stage in bounded memory, so memory should stay flat once the
per-stage distributions have switched to histograms; the report puts any growth beside the
number of records so it stands out. Sockets must stay at the stream count
during the run and return to the baseline after it.

    python benches/soak.py --streams 1024 --duration 600 --out soak.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import llmbench


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def fds() -> tuple[int, int]:
    """Open descriptors, and how many of them are sockets."""
    n = sockets = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        n += 1
        sockets += target.startswith("socket:")
    return n, sockets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--streams", type=int, default=1024)
    ap.add_argument("--duration", type=float, default=600.0)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--ttft-ms", type=float, default=50.0)
    ap.add_argument("--itl-ms", type=float, default=50.0)
    ap.add_argument("--every", type=float, default=5.0, help="sampling period, s")
    ap.add_argument("--port", type=int, default=18795)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    server = subprocess.Popen(
        [sys.executable, "-m", "llmbench.cli", "sim", "--port", str(args.port),
         "--ttft-ms", str(args.ttft_ms), "--itl-ms", str(args.itl_ms),
         "--max-batch", str(args.streams * 2), "--for-seconds", str(args.duration + 300)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert server.stdout is not None
    server.stdout.readline()
    samples = []
    done = threading.Event()
    t0 = time.monotonic()

    def sample() -> None:
        while not done.wait(args.every):
            n, s = fds()
            samples.append({"t_s": time.monotonic() - t0, "rss_mib": rss_mib(), "fds": n,
                            "sockets": s})  # fmt: skip

    base_fds = fds()
    base_rss = rss_mib()
    threading.Thread(target=sample, daemon=True).start()
    target = llmbench.OpenAI(f"http://127.0.0.1:{args.port}", model="llmbench-sim",
                             api="completions", name="soak")  # fmt: skip
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    with tempfile.TemporaryDirectory() as tmp:
        res = llmbench.run_sweep(
            target, batch_sizes=[args.streams], requests_per_stage=10**9,
            stage_duration_s=args.duration, max_tokens=args.tokens, out_dir=tmp,
            progress=False, server_metrics=False,
        )  # fmt: skip
        t_returned = time.monotonic()
        records_bytes = sum(p.stat().st_size for p in Path(tmp).glob("requests_*.arrows"))
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    t_run_end = t_returned - t0
    done.set()
    time.sleep(1.0)
    after_fds = fds()
    after_rss = rss_mib()
    server.terminate()
    server.wait(timeout=30)
    s = res.summary.iloc[0]
    n_requests = int(s["n_requests"])
    # While the engine ran (after the first 30 s of ramp-up); later samples include building
    # the pandas frames of the results, reported apart.
    during = [x for x in samples if 30 < x["t_s"] < args.duration]
    building = [x for x in samples if x["t_s"] >= args.duration]
    report = {
        "machine": {
            "host": platform.node(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "llmbench": llmbench.__version__,
        },
        "settings": vars(args),
        "requests": n_requests,
        "ok": int(s["n_ok"]),
        "failed": int(s["n_failed"]),
        "achieved_concurrency": float(s["achieved_concurrency"]),
        "output_tok_s": float(s["output_tok_s"]),
        "client_cpu_s": (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime),
        "baseline": {"rss_mib": base_rss, "fds": base_fds[0], "sockets": base_fds[1]},
        "during": {
            "sockets_min": min((x["sockets"] for x in during), default=None),
            "sockets_max": max((x["sockets"] for x in during), default=None),
            "fds_max": max((x["fds"] for x in during), default=None),
            "rss_mib_first": during[0]["rss_mib"] if during else None,
            "rss_mib_last": during[-1]["rss_mib"] if during else None,
        },
        "after": {"rss_mib": after_rss, "fds": after_fds[0], "sockets": after_fds[1]},
        "results_build_rss_mib_max": max((x["rss_mib"] for x in building), default=None),
        "engine_end_s": t_run_end,
        "record_file_mib": records_bytes / 2**20,
        "samples": samples,
    }
    if len(during) > 1:
        growth = during[-1]["rss_mib"] - during[0]["rss_mib"]
        span = during[-1]["t_s"] - during[0]["t_s"]
        # Requests completed over the same span (the rate is steady after ramp-up).
        n_span = n_requests * span / args.duration
        report["rss_growth_kib_per_request_during_run"] = growth * 1024 / max(n_span, 1)
    print(json.dumps({k: v for k, v in report.items() if k != "samples"}, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
