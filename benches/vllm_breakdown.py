"""Where vLLM's time goes, and whether llmbench's requests change it (docs/breakdown.md).

On the GPU machine, with vLLM 0.24.0 carried as `benches/vllm_real.py` says (its steps 1
and 2), one call under ten minutes:

    PYTHONPATH=python python3 benches/vllm_breakdown.py run --site /tmp/vllm_site --out $OUT

It starts `vllm serve` once (LLaMA-2-7B's shape, random float16 weights, prefix caching off
so that every request pays its whole prefill, `--max-num-seqs 256`) and runs:

1. **A sweep to saturation**: `llmbench metrics` at 1, 16, 64, 256 and 512 in flight,
   128-token prompts (the project's 32k tokenizer), 128 output tokens forced. Above 256 in
   flight vLLM must queue; below it, TTFT can only grow in prefill. The breakdown columns
   (`breakdown_queue_ms`, `breakdown_prefill_ms`, `breakdown_ttft_rest_ms`, ...) say which.
2. **Does llmbench disturb the server?** Two rounds, order rotated, at 1, 16 and 64 in
   flight with the same prompts and request counts: llmbench asking for usage on every
   chunk (`continuous_usage_stats`, its default), llmbench asking for the final usage
   only (`--no-continuous-usage`), and `vllm bench serve` (vLLM's own client, the peer)
   at 16 and 64.
   For each, vLLM's own mean TTFT, queue, prefill and decode times over the run (its
   histograms differenced around it) beside the client's TTFT.

Everything comes back as one tar.gz; here, `report ARCHIVE` prints the tables of
docs/breakdown.md and writes their JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

BENCHES = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCHES))
import vllm_real as vr  # noqa: E402
from gpu_telemetry import wait_ready  # noqa: E402

SATURATION = "1,16,64,256,512"
MAX_NUM_SEQS = 256
DISTURB = (1, 16, 64)
# vLLM's own client at the loads where the question was asked (its start costs ~15 s).
VLLM_BENCH_AT = (16, 64)
IN_TOKENS = 128
OUT_TOKENS = 128
STAGE_S = 12

# The histograms of a request's life this study differences around each run (the
# engine's table of names, newest first: `llmbench.columns.server_times.SERVER_TIMES`).
QUANTITIES = ("ttft", "queue", "prefill", "decode", "e2e")


def histogram_totals(text: str) -> dict[str, tuple[float, float]]:
    """(sum, count) of each of `QUANTITIES` in one /metrics exposition, read by the
    engine's own parser (series summed over their label sets, as a sweep reads them)."""
    from llmbench import _core
    from llmbench.columns.server_times import SERVER_TIMES

    values = json.loads(_core.parse_metrics(text))["values"]
    out = {}
    for q in QUANTITIES:
        name = next((n for n in SERVER_TIMES[q] if f"{n}_count" in values), None)
        out[q] = (values[f"{name}_sum"], values[f"{name}_count"]) if name else (0.0, 0.0)
    return out


def server_means(before: str, after: str) -> dict[str, float]:
    """The server's mean of each histogram over what happened between two scrapes, in ms."""
    a, b = histogram_totals(before), histogram_totals(after)
    out = {}
    for key in QUANTITIES:
        ds, dn = b[key][0] - a[key][0], b[key][1] - a[key][1]
        out[f"server_{key}_mean_ms"] = 1e3 * ds / dn if dn > 0 else float("nan")
        out[f"server_{key}_n"] = dn
    return out


def metrics_text(url: str) -> str:
    return vr.fetch(url + "/metrics")[1].decode()


def gpu_name() -> str:
    try:
        r = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
        )
    except OSError:
        return "unknown"
    return r.stdout.strip().splitlines()[0] if r.stdout.strip() else "unknown"


def workload(n: int) -> str:
    # Distinct prompts, every one exactly IN_TOKENS tokens under the served tokenizer.
    return json.dumps({"kind": "synthetic", "n": n, "input_tokens": IN_TOKENS})


def llmbench_args(url: str, name: str, batch_sizes: str, tok: Path, price: str) -> list[str]:
    return [
        "--url", url, "--model", vr.MODEL_NAME, "--api", "completions", "--name", name,
        "--force-output-len", "vllm", "--batch-sizes", batch_sizes,
        "--max-tokens", str(OUT_TOKENS), "--duration", str(STAGE_S), "--tokenizer", str(tok),
        "--workload", workload(2048), "--gpu-price", price, "--no-report", "--quiet",
        # A scrape between every two stages makes each stage's histogram window exact
        # (columns/scrape_window.py): scrape every 250 ms, rest 0.5 s between stages.
        "--metrics-period", "250", "--cooldown-s", "0.5",
    ]  # fmt: skip


def vllm_bench(site: Path, url: str, model: Path, conc: int, work: Path, log: Path) -> int:
    """`vllm bench serve` at `conc` in flight, as many requests as llmbench's stage sends
    (max(4 × batch, 16)), 128 in / 128 out, the completions API."""
    n = max(4 * conc, 16)
    cmd = [
        sys.executable, "-m", "vllm.entrypoints.cli.main", "bench", "serve",
        "--backend", "vllm", "--base-url", url, "--endpoint", "/v1/completions",
        "--model", vr.MODEL_NAME, "--tokenizer", str(model), "--dataset-name", "random",
        "--random-input-len", str(IN_TOKENS), "--random-output-len", str(OUT_TOKENS),
        "--num-prompts", str(n), "--ignore-eos", "--max-concurrency", str(conc),
        "--request-rate", "inf", "--percentile-metrics", "ttft,tpot,itl,e2el",
        "--metric-percentiles", "50,99", "--save-result", "--result-dir", str(work),
        "--result-filename", f"vllm_bench_c{conc}.json", "--seed", "0", "--disable-tqdm",
    ]  # fmt: skip
    env = {**os.environ, **vr.VLLM_ENV, "PYTHONPATH": str(site)}
    with open(log, "a") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        r = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, timeout=240)
    print(f"  vllm bench serve c={conc}: exit {r.returncode}", flush=True)
    return r.returncode


def run(site: Path, out: Path, port: int) -> None:
    t0 = time.monotonic()
    work = vr.fresh_dir(Path("/tmp/vllm_breakdown"))
    model = vr.config_only_model(Path("/tmp/llama7b_config"))
    tok = vr.tokenizer()
    url = f"http://127.0.0.1:{port}"
    log = work / "clients.log"
    gpu = gpu_name()
    price = "H200" if "H200" in gpu else "H100"
    meta = {"gpu": gpu, "price": price, "max_num_seqs": MAX_NUM_SEQS, "runs": []}
    slog = work / "vllm.log"
    extra = ("--max-num-seqs", str(MAX_NUM_SEQS))
    proc = vr.start_vllm(site, model, port, False, slog, extra)
    try:
        wait_ready(proc, url, slog, 420)
        meta["ready_s"] = round(time.monotonic() - t0, 1)
        print(f"vLLM ready at {meta['ready_s']} s on {gpu}", flush=True)
        # What vLLM 0.24 does with a field it does not know (llmbench's include_metrics).
        body = {"model": vr.MODEL_NAME, "prompt": "Hi", "max_tokens": 4, "stream": True}
        status, raw = vr.fetch(url + "/v1/completions", {**body, "include_metrics": True})
        (work / "include_metrics_answer.sse").write_bytes(raw)
        meta["include_metrics_status"] = status

        def measured(kind: str, rnd: int, step) -> None:
            before = metrics_text(url)
            s0 = time.monotonic()
            rc = step()
            entry = {"kind": kind, "round": rnd, "rc": rc, "s": round(time.monotonic() - s0, 1)}
            entry.update(server_means(before, metrics_text(url)))
            meta["runs"].append(entry)
            print(f"{kind} round {rnd}: {entry}", flush=True)

        measured(
            "saturation",
            0,
            lambda: vr.llmbench_cli(
                "metrics",
                *llmbench_args(url, "vllm", SATURATION, tok, price),
                "--out",
                str(work / "saturation"),
                log=log,
            ),
        )
        sizes = ",".join(map(str, DISTURB))
        steps = {
            "llmbench_usage_every_chunk": lambda d: vr.llmbench_cli(
                "metrics", *llmbench_args(url, "vllm", sizes, tok, price), "--out", d, log=log
            ),
            "llmbench_final_usage_only": lambda d: vr.llmbench_cli(
                "metrics",
                *llmbench_args(url, "vllm", sizes, tok, price),
                "--no-continuous-usage",
                "--out",
                d,
                log=log,
            ),
        }
        order = [*steps, "vllm_bench_serve"]
        for rnd in (1, 2):
            for kind in order if rnd == 1 else order[::-1]:
                if kind == "vllm_bench_serve":
                    for c in VLLM_BENCH_AT:
                        d = work / f"{kind}_r{rnd}"
                        d.mkdir(exist_ok=True)
                        measured(
                            f"{kind}_c{c}",
                            rnd,
                            lambda c=c, d=d: vllm_bench(site, url, model, c, d, log),
                        )
                else:
                    d = str(work / f"{kind}_r{rnd}")
                    measured(kind, rnd, lambda kind=kind, d=d: steps[kind](d))
        (work / "vllm_metrics_end.txt").write_text(metrics_text(url))
    finally:
        vr.stop(proc)
        meta["total_s"] = round(time.monotonic() - t0, 1)
        (work / "meta.json").write_text(json.dumps(meta, indent=1))
        out.mkdir(parents=True, exist_ok=True)
        vr.pack(work, out / "vllm_breakdown.tar.gz")
        print(f"done in {meta['total_s']} s", flush=True)


# ---- here -----------------------------------------------------------------------------


SAT_COLS = [
    "batch_size", "n_ok", "n_failed", "output_tok_s", "ttft_mean_ms", "ttft_p99_ms",
    "breakdown_queue_ms", "breakdown_prefill_ms", "breakdown_ttft_rest_ms",
    "breakdown_decode_ms", "breakdown_e2e_rest_ms", "e2e_mean_ms", "server_waiting_peak",
    "server_preemptions", "server_step_tokens_mean", "out_tokens_gap_pct",
]  # fmt: skip
DISTURB_COLS = [
    "batch_size", "n_ok", "output_tok_s", "ttft_mean_ms", "server_ttft_mean_ms",
    "server_queue_mean_ms", "server_prefill_mean_ms", "server_decode_mean_ms", "itl_mean_ms",
]  # fmt: skip


def report(archive: Path, json_out: Path) -> None:
    """Here: the tables of docs/breakdown.md from the archive."""
    import pandas as pd

    work = Path("/tmp/vllm_breakdown_report")
    shutil.rmtree(work, ignore_errors=True)
    with tarfile.open(archive) as tar:
        tar.extractall(work, filter="data")
    root = work / "vllm_breakdown"
    meta = json.loads((root / "meta.json").read_text())
    pd.set_option("display.width", 250)
    sat = pd.read_csv(root / "saturation" / "metrics_summary.csv")
    sat = sat[[c for c in SAT_COLS if c in sat.columns]]
    print(f"GPU: {meta['gpu']}; vLLM ready in {meta.get('ready_s')} s")
    print(f"include_metrics on vLLM 0.24: HTTP {meta.get('include_metrics_status')}")
    print("\nSaturation\n" + sat.round(2).to_string(index=False))
    rows = []
    for rnd in (1, 2):
        for kind in ("llmbench_usage_every_chunk", "llmbench_final_usage_only"):
            csv = root / f"{kind}_r{rnd}" / "metrics_summary.csv"
            if csv.exists():
                df = pd.read_csv(csv)
                df = df[[c for c in DISTURB_COLS if c in df.columns]]
                rows.append(df.assign(client=kind, round=rnd))
        for c in VLLM_BENCH_AT:
            f = root / f"vllm_bench_serve_r{rnd}" / f"vllm_bench_c{c}.json"
            run = next(
                (
                    r
                    for r in meta["runs"]
                    if r["kind"] == f"vllm_bench_serve_c{c}" and r["round"] == rnd
                ),
                None,
            )
            if f.exists() and run:
                d = json.loads(f.read_text())
                rows.append(
                    pd.DataFrame(
                        [
                            {
                                "batch_size": c,
                                "n_ok": d.get("completed"),
                                "output_tok_s": d.get("output_throughput"),
                                "ttft_mean_ms": d.get("mean_ttft_ms"),
                                "server_ttft_mean_ms": run["server_ttft_mean_ms"],
                                "server_queue_mean_ms": run["server_queue_mean_ms"],
                                "server_prefill_mean_ms": run["server_prefill_mean_ms"],
                                "server_decode_mean_ms": run["server_decode_mean_ms"],
                                "itl_mean_ms": d.get("mean_itl_ms"),
                                "client": "vllm_bench_serve",
                                "round": rnd,
                            }
                        ]
                    )
                )
    table = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
    if not table.empty:
        table["client_minus_server_ttft_ms"] = table.ttft_mean_ms - table.server_ttft_mean_ms
        table = table.sort_values(["batch_size", "client", "round"])
        print("\nDisturbance\n" + table.round(2).to_string(index=False))
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(
        json.dumps(
            {
                "meta": meta,
                "saturation": json.loads(sat.to_json(orient="records")),
                "disturbance": json.loads(table.to_json(orient="records")),
            },
            indent=1,
        )
    )
    print(f"\nwrote {json_out}; the saturation run's folder is {root / 'saturation'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="there: the saturation sweep and the disturbance rounds")
    r.add_argument("--site", type=Path, default=Path("/tmp/vllm_site"))
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--port", type=int, default=8000)
    p = sub.add_parser("report", help="here: the tables from the archive")
    p.add_argument("archive", type=Path)
    p.add_argument("--json", type=Path, required=True)
    args = ap.parse_args()
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.command == "run":
        run(args.site, args.out, args.port)
    else:
        report(args.archive, args.json)


if __name__ == "__main__":
    main()
