"""Long runs: what a run of N requests costs in memory, time after the last request, and
disk, for this llmbench and (with --before) the previous version measured in the same
invocation, one fresh process per run.

Each run: `run_sweep` against the built-in scripted server in the same process
(`SimServer(ttft_ms=0.5, itl_ms=0.1, ttft_per_running_ms=0, itl_per_running_ms=0,
max_batch=256)`: fast, so the client's own costs dominate), batch size 256, 32 tokens
per request, every other setting the default (report.html written or not: `--report`),
results saved to a temporary folder.
Reported per run: wall time, the time from the last request's end to `run_sweep`
returning (results built and written), peak RSS, RSS sampled every few seconds (flat or
not), and the size of every file written. Also the record file writer's own throughput
(`_core.record_write_speed`).

    python benches/long_run.py --requests 10000,100000,1000000 \\
        --before /path/to/venv-of-the-previous-version/bin/python --out long_run.json
    python benches/long_run.py --requests 10000000 --out long_run_10m.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

from _host import cpu_model

# Runs in the child: works with this version and with the one before the record file.
CHILD = r"""
import json, sys, tempfile, threading, time
from pathlib import Path
import llmbench
from llmbench import _core

n = int(sys.argv[1])
every = float(sys.argv[2])
report = sys.argv[3] == "on"
def status_mib(key):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1]) / 1024
def rss_mib():
    return status_mib("VmRSS:")
samples, stop = [], threading.Event()
t0 = time.monotonic()
def watch():
    while not stop.wait(every):
        samples.append([round(time.monotonic() - t0, 1), round(rss_mib(), 1)])
threading.Thread(target=watch, daemon=True).start()
with tempfile.TemporaryDirectory() as out:
    with llmbench.SimServer(ttft_ms=0.5, itl_ms=0.1, ttft_per_running_ms=0,
                            itl_per_running_ms=0, max_batch=256) as sim:
        t = time.monotonic()
        res = llmbench.run_sweep(sim.target(), batch_sizes=[256], requests_per_stage=n,
                                 max_tokens=32, out_dir=out, progress=False,
                                 report=report)
        returned_ns = _core.now_ns()
        wall = time.monotonic() - t
    stop.set()
    s = res.summary.iloc[0]
    files = {p.name: p.stat().st_size for p in Path(out).iterdir() if p.is_file()}
    print(json.dumps({
        "requests": int(s["n_requests"]),
        "n_ok": int(s["n_ok"]),
        "wall_s": wall,
        "stage_s": float(s["duration_s"]),
        "ready_after_last_request_s": (returned_ns - int(s["t_end_ns"])) / 1e9,
        # VmHWM: this process's own peak (ru_maxrss would carry the parent's across exec).
        "peak_rss_mib": status_mib("VmHWM:"),
        "rss_samples_s_mib": samples,
        "files_bytes": files,
        "files_total_mb": sum(files.values()) / 1e6,
        "output_tok_s": float(s["output_tok_s"]),
        "llmbench": llmbench.__version__,
        "report": report,
    }))
"""


def run(python: str, n: int, every: float, report: str) -> dict:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    with tempfile.TemporaryDirectory() as cwd:
        out = subprocess.run(
            [python, "-c", CHILD, str(n), str(every), report],
            capture_output=True,
            text=True,
            env=env,
            cwd=cwd,
            check=False,
        )
    if out.returncode != 0:
        raise SystemExit(f"{python} at {n} requests failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", default="10000,100000,1000000")
    ap.add_argument("--before", default=None, help="python of the previous version's venv")
    ap.add_argument("--every", type=float, default=5.0, help="RSS sampling period, s")
    ap.add_argument(
        "--report",
        default="on,off",
        help="run each size with report.html written (on), without (off), or both",
    )
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    import llmbench

    report: dict = {
        "host": {
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
        },
        "workload": "run_sweep, SimServer in process (ttft 0.5 ms, itl 0.1 ms, max_batch 256), "
        "batch 256, 32 tokens, defaults",
        "runs": [],
    }
    versions = [("this", sys.executable)] + ([("before", args.before)] if args.before else [])
    for n in [int(x) for x in args.requests.split(",")]:
        for (label, python), with_report in itertools.product(versions, args.report.split(",")):
            r = run(python, n, args.every, with_report)
            r["version"] = label
            report["runs"].append(r)
            print(
                f"{label:>6} report {with_report:>3} {n:>10,} requests: wall {r['wall_s']:7.1f} s, "
                f"ready "
                f"{r['ready_after_last_request_s']:6.2f} s after the last, peak RSS "
                f"{r['peak_rss_mib']:8.0f} MiB, files {r['files_total_mb']:8.1f} MB",
                flush=True,
            )
    # The writer alone, last (its million records in memory would inflate nothing above:
    # each run is its own process, measured by its own high-water mark).
    with tempfile.TemporaryDirectory() as tmp:
        writer = llmbench._core.record_write_speed(Path(tmp) / "w.arrows", 1_000_000, 32)
    report["record_writer"] = {
        "records_per_s": writer["records_per_s"],
        "bytes_per_record": writer["bytes"] / writer["records"],
        "note": "1,000,000 records of 32 tokens handed to the writer as fast as it takes "
        "them, until the last is on disk",
    }
    print(
        f"record writer: {writer['records_per_s']:,.0f} records/s, "
        f"{writer['bytes'] / writer['records']:.0f} bytes/record",
        flush=True,
    )
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
