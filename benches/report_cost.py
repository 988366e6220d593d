"""What the HTML report costs: its size, the time to write it and the memory it takes, for
runs of 1,000 to 1,000,000 requests, beside the files every run already writes.

Each size runs in a fresh process: `run_sweep` against the built-in scripted server
(`SimServer(ttft_ms=0.5, itl_ms=0.1, ttft_per_running_ms=0, itl_per_running_ms=0,
max_batch=256)`), batch size 256, 8 tokens per request, saved without the report; then,
from a fresh `Results.load` of that folder (as `llmbench report DIR` does), the report is
written and timed, and `Results.save(report=False)` (metrics_data.json, the CSV, the four
PNGs) is timed in the same process as the yardstick. Peak RSS is the process's high-water
mark (`VmHWM`) before and after the report.

    python benches/report_cost.py --requests 1000,10000,100000,1000000 --out report_cost.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

from _host import cpu_model

CHILD = r"""
import json, sys, time, warnings
from pathlib import Path
warnings.simplefilter("ignore")
import llmbench

def hwm_mib():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")

n, folder = int(sys.argv[1]), Path(sys.argv[2])
with llmbench.SimServer(ttft_ms=0.5, itl_ms=0.1, ttft_per_running_ms=0, itl_per_running_ms=0,
                        max_batch=256) as sim:
    llmbench.run_sweep(sim.target(api="completions"), batch_sizes=[256], requests_per_stage=n,
                       max_tokens=8, out_dir=folder, progress=False, report=False,
                       server_metrics=False)
res = llmbench.Results.load(folder)
before = hwm_mib()
t = time.perf_counter()
path = res.to_html(folder / "report.html")
report_s = time.perf_counter() - t
after = hwm_mib()
t = time.perf_counter()
res.save(folder / "again", report=False)
save_s = time.perf_counter() - t
print(json.dumps({"requests": n, "report_s": report_s, "report_bytes": path.stat().st_size,
                  "save_without_report_s": save_s, "rss_hwm_before_mib": before,
                  "rss_hwm_after_mib": after}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", default="1000,10000,100000,1000000")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    rows = []
    for n in [int(x) for x in args.requests.split(",")]:
        with tempfile.TemporaryDirectory() as tmp:
            out = subprocess.run(
                [sys.executable, "-c", CHILD, str(n), tmp],
                capture_output=True,
                text=True,
                check=True,
            )
        row = json.loads(out.stdout.strip().splitlines()[-1])
        row["report_vs_save"] = row["report_s"] / row["save_without_report_s"]
        rows.append(row)
        print(
            f"{n:>9,} requests: report {row['report_bytes'] / 1e6:.2f} MB in "
            f"{row['report_s']:.2f} s (the other files: {row['save_without_report_s']:.2f} s, "
            f"ratio {row['report_vs_save']:.2f}); peak RSS {row['rss_hwm_before_mib']:.0f} -> "
            f"{row['rss_hwm_after_mib']:.0f} MiB",
            flush=True,
        )
    result = {
        "host": {
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
        },
        "rows": rows,
    }
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
