"""GPU telemetry on a real GPU: llmbench's NVML sampler against `nvidia-smi` and a Python
pynvml loop, while a real server works.

What it does, in one go (meant for the H100 machine; nothing here needs the internet):

1. Builds a random-init LLaMA-2-7B-architecture model in FP16 (`--model-dir`, with the
   given `tokenizer.json`) and serves it with `transformers serve --continuous-batching`.
2. Runs the KV-cache study against it with the sampler at 1 ms (`llmbench kv-cache`), so
   the timeline shows memory, KV use and load on one clock.
3. While a background sweep keeps the server busy, measures for each period (1, 10,
   100 ms) the achieved sampling rate and the CPU the sampler costs, beside a pynvml
   polling loop reading the same fields on the same schedule, and `nvidia-smi
   --query-gpu=memory.used --format=csv -lms 100`.
4. Checks llmbench's readings against `nvidia-smi`'s taken over the same seconds.

Usage: python benches/gpu_telemetry.py --tokenizer tokenizer.json --out OUT_DIR
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import llmbench
import numpy as np

PERIODS_MS = (1.0, 10.0, 100.0)


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# LLaMA-2-7B's shape in float16 (the benches' real-server model, random weights).
LLAMA_2_7B = dict(
    hidden_size=4096,
    intermediate_size=11008,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=32,
    vocab_size=32000,
    max_position_embeddings=4096,
    torch_dtype="float16",
)


def save_tokenizer(model_dir: Path, tokenizer: Path) -> None:
    """The project's 32k tokenizer and a plain chat template, saved beside a model."""
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(
        tokenizer_file=str(tokenizer), bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    tok.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    tok.save_pretrained(model_dir)


def build_model(model_dir: Path, tokenizer: Path) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    if (model_dir / "config.json").exists():
        return
    t = time.time()
    cfg = LlamaConfig(**LLAMA_2_7B)
    with torch.device("cuda"):
        model = LlamaForCausalLM(cfg).to(torch.float16)
    model.generation_config.do_sample = False
    model.save_pretrained(model_dir)
    save_tokenizer(model_dir, tokenizer)
    del model
    torch.cuda.empty_cache()
    print(f"model built in {time.time() - t:.0f} s", flush=True)


def start_server(model_dir: Path, port: int, log: Path) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "transformers.cli.transformers",
            "serve",
            str(model_dir),
            "--continuous-batching",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--device",
            "cuda",
            "--dtype",
            "float16",
        ],
        stdout=open(log, "w"),
        stderr=subprocess.STDOUT,
        env=env,
    )
    wait_ready(proc, f"http://127.0.0.1:{port}", log, 300)
    return proc


def wait_ready(proc: subprocess.Popen, url: str, log: Path, timeout_s: float) -> None:
    """Until the server at `url` answers `/health`; its log's end in the error if it
    exits first or is not ready within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            urllib.request.urlopen(f"{url}/health", timeout=2).read()
            return
        except OSError:
            time.sleep(1)
    raise RuntimeError(f"server not ready in {timeout_s:.0f} s:\n{log.read_text()[-4000:]}")


def pynvml_loop(period_ms: float, seconds: float, all_fields: bool = True) -> dict:
    """A plain Python polling loop reading the fields llmbench reads, on an absolute
    schedule, in this thread; its CPU is this thread's CPU time."""
    import pynvml

    pynvml.nvmlInit()
    h = pynvml.nvmlDeviceGetHandleByIndex(0)
    period = period_ms / 1e3
    rounds = 0
    c0, t0 = time.thread_time(), time.perf_counter()
    due = t0
    while time.perf_counter() - t0 < seconds:
        pynvml.nvmlDeviceGetMemoryInfo(h)
        if all_fields:
            pynvml.nvmlDeviceGetUtilizationRates(h)
            pynvml.nvmlDeviceGetPowerUsage(h)
            pynvml.nvmlDeviceGetTotalEnergyConsumption(h)
            pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM)
            pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU)
        rounds += 1
        due += period
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        elif delay < -period:
            due = time.perf_counter()
    elapsed = time.perf_counter() - t0
    return {"achieved_hz": rounds / elapsed, "cpu_s_per_s": (time.thread_time() - c0) / elapsed}


def nvidia_smi(seconds: float, out: Path) -> dict:
    fields = "timestamp,memory.used,power.draw,utilization.gpu"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    proc = subprocess.Popen(
        ["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader,nounits", "-lms", "100"],
        stdout=open(out, "w"),
    )
    time.sleep(seconds)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=10)
    elapsed = time.time() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    rows = [r.split(", ") for r in out.read_text().splitlines() if r.strip()]
    return {"achieved_hz": len(rows) / elapsed, "cpu_s_per_s": cpu / elapsed, "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--model-dir", type=Path, default=Path("/tmp/llama7b"))
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--seconds", type=float, default=8.0)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    report: dict = {"host": platform.node(), "gpus": llmbench.list_gpus()}
    print(json.dumps(report["gpus"]), flush=True)

    build_model(args.model_dir, args.tokenizer)
    server = start_server(args.model_dir, args.port, args.out / "serve.log")
    url = f"http://127.0.0.1:{args.port}"
    target = llmbench.OpenAI(
        url,
        model=str(args.model_dir),
        api="completions",
        name="transformers-serve-7b",
        extra_body={"generation_config": '{"min_new_tokens": 64}'},
    )
    try:
        # 1) The KV-cache study with the sampler at 1 ms.
        t = time.time()
        res = llmbench.kv_cache_study(
            target,
            batch_sizes=[1, 8, 32],
            requests_per_stage=None,
            max_tokens=64,
            out_dir=args.out,
            model_arch=args.model_dir,
            gpu=1.0,
            server_metrics=250.0,
            progress=False,
        )
        cols = [
            "batch_size",
            "n_ok",
            "ttft_p50_ms",
            "tpot_mean_ms",
            "output_tok_s",
            "gpu_mem_used_max_gib",
            "gpu_power_mean_w",
            "j_per_output_token",
            "kv_client_est_gib_max",
        ]
        print(res.summary[[c for c in cols if c in res.summary]].to_string(), flush=True)
        report["kv_study_s"] = time.time() - t
        report["kv_study_sampler"] = res.manifest["telemetry"].get("sampler")

        # 2) Sampler cost and rate at each period, under load, beside the peers. The load
        # runs in its own process so this process's CPU is the samplers' alone.
        load = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "llmbench.cli",
                "metrics",
                "--url",
                url,
                "--model",
                str(args.model_dir),
                "--api",
                "completions",
                "--batch-sizes",
                "16",
                "--requests",
                "100000",
                "--duration",
                "600",
                "--max-tokens",
                "64",
                "--quiet",
                "--metrics-period",
                "0",
                "--out",
                str(args.out / "load_run"),
                "--extra-body",
                json.dumps({"generation_config": json.dumps({"min_new_tokens": 64})}),
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(args.out / "load.log", "w"),
        )
        time.sleep(8)
        rows = []
        for period in PERIODS_MS:
            for label, aux, energy in (
                ("llmbench GpuSampler (defaults)", 50.0, 1000.0),
                ("llmbench GpuSampler (all 6 fields)", period, period),
            ):
                c0 = cpu_s()
                s = llmbench.GpuSampler(
                    period_ms=period,
                    aux_period_ms=aux,
                    energy_period_ms=energy,
                    process_period_ms=0 if aux == period else 200.0,
                )
                time.sleep(args.seconds)
                s.stop()
                st = s.stats()
                report.setdefault("query_us", []).append(st["query_us"])
                rows.append(
                    {
                        "tool": label,
                        "period_ms": period,
                        "achieved_hz": st["achieved_hz"],
                        "overruns": st["overruns"],
                        "cpu_s_per_s": st["cpu_s_per_s"],
                        "process_cpu_s_per_s": (cpu_s() - c0) / args.seconds,
                        "nvml_us_per_round": st["nvml_us_per_round"],
                    }
                )
            if period == 10.0:
                smi_path = args.out / "nvidia_smi_during_sampler.csv"
                # The sampler again with nvidia-smi beside it, for the readings check.
                s2 = llmbench.GpuSampler(period_ms=10.0)
                smi = nvidia_smi(args.seconds, smi_path)
                s2.stop()
                ours = s2.samples
                smi_mem = np.array([float(r[1]) for r in smi["rows"]])
                smi_pow = np.array([float(r[2]) for r in smi["rows"]])
                smi_util = np.array([float(r[3]) for r in smi["rows"]])
                report["check_vs_nvidia_smi"] = {
                    "nvidia_smi_mem_used_mib_median": float(np.median(smi_mem)),
                    "llmbench_mem_used_mib_median": float(ours["mem_used_bytes"].median() / 2**20),
                    "nvidia_smi_power_w_median": float(np.median(smi_pow)),
                    "llmbench_power_w_median": float(ours["power_w"].median()),
                    "nvidia_smi_util_pct_median": float(np.median(smi_util)),
                    "llmbench_util_pct_median": float(ours["util_gpu_pct"].median()),
                    "nvidia_smi_rows": len(smi["rows"]),
                    "llmbench_rows": len(ours),
                }
                rows.append(
                    {
                        "tool": "nvidia-smi -lms 100 (4 fields)",
                        "period_ms": 100.0,
                        "achieved_hz": smi["achieved_hz"],
                        "overruns": None,
                        "cpu_s_per_s": smi["cpu_s_per_s"],
                        "nvml_us_per_round": None,
                    }
                )
            for all_fields, label in (
                (False, "pynvml loop (memory)"),
                (True, "pynvml loop (all 6 fields)"),
            ):
                p = pynvml_loop(period, args.seconds, all_fields)
                rows.append(
                    {
                        "tool": label,
                        "period_ms": period,
                        "achieved_hz": p["achieved_hz"],
                        "overruns": None,
                        "cpu_s_per_s": p["cpu_s_per_s"],
                        "nvml_us_per_round": None,
                    }
                )
        load.send_signal(signal.SIGINT)
        load.wait(timeout=60)
        report["sampler_benchmark"] = rows
        print(
            "mean us per NVML query (all-fields run at 10 ms):", json.dumps(report["query_us"][3])
        )
        print(f"{'tool':<42} {'period':>7} {'achieved Hz':>12} {'CPU s/s':>9} {'us/round':>9}")
        for r in rows:
            us = f"{r['nvml_us_per_round']:.1f}" if r["nvml_us_per_round"] else "-"
            print(
                f"{r['tool']:<42} {r['period_ms']:>7.0f} {r['achieved_hz']:>12.1f} "
                f"{r['cpu_s_per_s']:>9.4f} {us:>9}"
            )
        print(json.dumps(report["check_vs_nvidia_smi"], indent=1))
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    (args.out / "gpu_telemetry_report.json").write_text(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()
