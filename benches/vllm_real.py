"""vLLM for real on the GPU machine: carry vLLM 0.24.0 there, serve a random-weight
LLaMA-2-7B-shaped model in float16 with prefix caching on and off, and run the seed's
study against it with llmbench (docs/real_servers.md).

The GPU machine has no internet and Python 3.12 with torch 2.11.0+cu130; vLLM 0.24.0 is
the newest release that pins that torch. Three steps:

1. Here (with the package index):

       python benches/vllm_real.py prepare .ship/vllm

   works out vLLM's dependency closure without the packages the machine already has
   (`benches/gpu_machine_packages.txt`, from the device tool's KINDS.md), leaves out the
   kernel packages a LLaMA in float16 on a Hopper GPU does not import (`LEAVE_OUT`, each
   with its reason), installs the rest into one folder for CPython 3.12, packs it as one
   xz-compressed tar and splits that into call folders under the per-call limit
   (`ship_wheels.py prepare`: parts, SHA-256 manifest).

2. There, one device call per call folder, back to back (a file outside the repository
   stays while the machine stays warm, 30 s between calls):

       python3 benches/ship_wheels.py collect .ship/vllm/callN /tmp/ship
       python3 benches/vllm_real.py unpack /tmp/ship /tmp/vllm_site     # after the last

   `unpack` reassembles and verifies every part (SHA-256), unpacks the folder and imports
   vLLM's server from it (`--no-check` skips the import). `smoke` then starts vLLM once,
   answers one request and prints the end of its log: start-up checked, and
   torch.compile's cache warm for later starts.

3. There, the study (one call, under 10 minutes):

       python3 benches/vllm_real.py study --site /tmp/vllm_site --out $OUT

   For prefix caching on, then off: starts `vllm serve --load-format dummy` on a
   config-only LLaMA-2-7B folder (the 32k tokenizer from the test fixtures), keeps the raw
   payloads it answers (streams, /metrics, /v1/models, /version, errors) for the fixtures,
   and runs `llmbench metrics` (batch 1 -> 64, prompts.txt, 128 output tokens forced the
   vLLM way), `llmbench kv-cache` (GPU at 10 ms, vLLM's KV use) and a shared-prefix
   workload. `others` runs the same sweep against `transformers serve` and the candle
   baseline served. Everything comes back as one tar.gz per step.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path

BENCHES = Path(__file__).resolve().parent
REPO = BENCHES.parent
sys.path.insert(0, str(BENCHES))
import ship_wheels  # noqa: E402
from gpu_telemetry import wait_ready  # noqa: E402

VLLM = "vllm==0.24.0"

# Versions the first-met closure gets wrong (ship_wheels.closure reports each clash):
# xgrammar 0.2.6 and later want apache-tvm-ffi>=0.1.10 (0.2.9 calls its
# `load_lib_module(extra_lib_paths=...)`, which 0.1.9 lacks: vLLM's import failed so on
# the machine), while vLLM 0.24.0 pins apache-tvm-ffi==0.1.9; xgrammar 0.2.3 asks >=0.1.9.
PINS = ["xgrammar==0.2.3", "opentelemetry-api==1.45.2"]

# The exact versions carried, written by the first `prepare` that resolved cleanly and
# read as pins by every later one: a release of any dependency after that day cannot
# change (or break, as opentelemetry-api 1.45.3 did) what reaches the machine.
# `prepare --relock` resolves afresh and rewrites it.
LOCK = BENCHES / "vllm_lock.txt"

# Kernel packages vLLM 0.24.0 requires unconditionally but imports only on paths a LLaMA in
# float16 on a Hopper GPU does not take (checked against its source: no top-level import on
# the serving path; attention there is vLLM's own FlashAttention 3 build).
LEAVE_OUT = {
    "flashinfer_cubin": "427 MiB of FlashInfer kernels; FlashInfer is an optional backend "
    "(vLLM checks has_flashinfer()); the sampler's use is turned off below",
    "flashinfer_python": "needs flashinfer_cubin to be useful; optional backend",
    "nvidia_cutlass_dsl": "CuTe DSL: FlashAttention 4 (Blackwell), Mamba/DeepSeek kernels",
    "nvidia_cutlass_dsl_libs_base": "nvidia-cutlass-dsl's libraries (71 MiB)",
    "nvidia_cutlass_dsl_libs_cu13": "nvidia-cutlass-dsl's libraries (75 MiB)",
    "nvidia_nvvm": "CUDA compiler parts for the CuTe DSL (72 MiB)",
    "nvidia_cuda_nvcc": "CUDA compiler for the CuTe DSL (45 MiB)",
    "nvidia_cuda_crt": "CUDA compiler parts for the CuTe DSL",
    "nvidia_cuda_cccl": "CUDA headers for the CuTe DSL",
    "quack_kernels": "CuTe DSL kernels (needs nvidia-cutlass-dsl)",
    "humming_kernels": "quantised-GEMM kernels (needs nvidia-cutlass-dsl)",
    "tokenspeed_mla": "MLA attention (DeepSeek-style models)",
    "tokenspeed_triton": "tokenspeed-mla's Triton fork (90 MiB)",
    "tilelang": "TileLang kernels (43 MiB), imported lazily by quantised/MoE paths",
    "z3_solver": "tilelang's solver (28 MiB)",
    "cuda_tile": "tilelang's dependency",
    "cuda_python": "a meta-package over cuda-bindings, which the machine has",
    "nvidia_cudnn_frontend": "cuDNN's Python frontend: only FlashInfer's cuDNN prefill and "
    "FlashAttention-4 benchmarks import it (its 1.32 wants apache-tvm-ffi>=0.1.11 too)",
}

# vLLM's environment on the machine: no FlashInfer sampler (FlashInfer is not carried),
# no usage reporting, no hub.
VLLM_ENV = {
    "VLLM_USE_FLASHINFER_SAMPLER": "0",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
}

MODEL_NAME = "llama-2-7b-dummy"
BATCH_SIZES = "1,8,32,64"
MAX_TOKENS = 128
STAGE_S = 15  # seconds per stage at most (transformers serve is slow at batch 1)


# ---- here -----------------------------------------------------------------------------


def _locked() -> list[str]:
    return [
        line.strip()
        for line in LOCK.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]


def prepare(out: Path, part_mib: float, call_mib: float, relock: bool = False) -> None:
    have_file = BENCHES / "gpu_machine_packages.txt"
    have = {
        ship_wheels.canonical(n.strip())
        for line in have_file.read_text().splitlines()
        if not line.startswith("#")
        for n in line.split(",")
        if n.strip()
    }
    leave_out = set(LEAVE_OUT)
    locked = [] if relock or not LOCK.exists() else _locked()
    pins = locked or PINS
    kept, clashes = ship_wheels.closure([VLLM], have, out / "download", "3.12", pins, leave_out)
    if clashes:
        raise SystemExit("version clashes in the closure (add to PINS): " + "; ".join(clashes))
    print(
        f"{len(kept)} wheels carried ({'from ' + LOCK.name if locked else 'resolved'}); "
        f"left out: {sorted(leave_out)}"
    )
    if not locked:
        lines = sorted(
            f"{n}=={v}" for n, v in (ship_wheels.wheel_requirements(w)[:2] for w in kept)
        )
        LOCK.write_text(
            "# The wheels benches/vllm_real.py carries for vllm==0.24.0 (name==version), "
            "written by `prepare`; `prepare --relock` rewrites it.\n" + "\n".join(lines) + "\n"
        )
        print(f"wrote {LOCK}")
    site = out / "site"
    shutil.rmtree(site, ignore_errors=True)
    platforms = [a for p in ship_wheels.PLATFORMS for a in ("--platform", p)]
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps"),
            *("--no-compile", "--target", str(site), "--python-version", "3.12"),
            *("--only-binary", ":all:", *platforms, *map(str, kept)),
        ],
        check=True,
    )
    packed = out / "vllm_site.tar.xz"
    print(f"packing {site} into {packed} (xz, a few minutes on 2 cores)", flush=True)
    with open(packed, "wb") as dst:
        tar = subprocess.Popen(["tar", "-C", str(site), "-cf", "-", "."], stdout=subprocess.PIPE)
        subprocess.run(["xz", "-T0", "-6"], stdin=tar.stdout, stdout=dst, check=True)
        if tar.wait() != 0:
            raise SystemExit("tar failed")
    manifest = ship_wheels.prepare(out, [packed], part_mib, call_mib)
    (out / "carried.json").write_text(
        json.dumps({"carried": [w.name for w in kept], "left_out": LEAVE_OUT}, indent=1)
    )
    for k, names in enumerate(manifest["calls"], start=1):
        print(f"call{k}: {len(names)} parts")


# ---- there ----------------------------------------------------------------------------


def unpack(src: Path, site: Path, check: bool = True) -> None:
    t0 = time.monotonic()
    (packed,) = ship_wheels.assemble(src, Path("/tmp/vllm_packed"))
    site.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-C", str(site), "-xJf", str(packed)], check=True)
    packed.unlink()
    print(f"unpacked into {site} in {time.monotonic() - t0:.0f} s", flush=True)
    if not check:
        return
    env = {**os.environ, **VLLM_ENV, "PYTHONPATH": str(site)}
    check = "import vllm, vllm.entrypoints.openai.api_server as a; print('vllm', vllm.__version__)"
    r = subprocess.run([sys.executable, "-c", check], env=env, capture_output=True, text=True)
    print(r.stdout[-2000:], r.stderr[-4000:], flush=True)
    print(f"import check exit {r.returncode} at {time.monotonic() - t0:.0f} s", flush=True)


def tokenizer() -> Path:
    """The project's 32k tokenizer.json (unpacked from the test fixtures)."""
    sys.path.insert(0, str(REPO / "tests" / "python"))
    from tiny_model import tokenizer_json

    return tokenizer_json()


def fresh_dir(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def config_only_model(model_dir: Path) -> Path:
    """LLaMA-2-7B's shape in float16 with the project's 32k tokenizer, no weights (vLLM's
    `--load-format dummy` makes random ones)."""
    from gpu_telemetry import LLAMA_2_7B, save_tokenizer
    from transformers import LlamaConfig

    if (model_dir / "config.json").exists():
        return model_dir
    LlamaConfig(**LLAMA_2_7B, architectures=["LlamaForCausalLM"]).save_pretrained(model_dir)
    save_tokenizer(model_dir, tokenizer())
    return model_dir


def start_vllm(
    site: Path, model: Path, port: int, prefix_caching: bool, log: Path, extra: tuple = ()
):
    env = {**os.environ, **VLLM_ENV, "PYTHONPATH": f"{site}:{os.environ.get('PYTHONPATH', '')}"}
    cmd = [sys.executable, "-m", "vllm.entrypoints.cli.main", "serve", str(model)]
    cmd += ["--load-format", "dummy", "--dtype", "float16", "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--served-model-name", MODEL_NAME, "--max-model-len", "4096"]
    cmd += ["--gpu-memory-utilization", "0.85", "--seed", "0"]
    cmd += ["--enable-prefix-caching" if prefix_caching else "--no-enable-prefix-caching"]
    cmd += list(extra)
    print(" ".join(cmd), flush=True)
    return subprocess.Popen(
        cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env, start_new_session=True
    )


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=30)
    except (subprocess.TimeoutExpired, ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def fetch(url: str, body: dict | None = None) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def capture_payloads(url: str, out: Path) -> None:
    """What this vLLM answers, raw: for the fixtures and the parsers' check."""
    out.mkdir(parents=True, exist_ok=True)
    prompt = "The capital of France is"
    cont = {"include_usage": True, "continuous_usage_stats": True}
    bodies = {
        "completions_stream.sse": ("/v1/completions", {"prompt": prompt, "stream": True}),
        "completions_stream_continuous_usage.sse": (
            "/v1/completions",
            {"prompt": prompt, "stream": True, "stream_options": cont},
        ),
        "chat_stream_continuous_usage.sse": (
            "/v1/chat/completions",
            {
                "messages": [{"role": "user", "content": prompt}],
                "stream": True,
                "stream_options": cont,
            },
        ),
        "http_404_model_error.json": (
            "/v1/completions",
            {"prompt": prompt, "model": "no-such-model", "max_tokens": 4},
        ),
        "http_400_error.json": ("/v1/completions", {"prompt": prompt, "max_tokens": 100000}),
    }
    for name, (path, body) in bodies.items():
        body = {"model": MODEL_NAME, "max_tokens": 6, "temperature": 0, **body}
        status, raw = fetch(url + path, body)
        (out / f"vllm_0_24_{name}").write_bytes(raw)
        print(f"{name}: HTTP {status}, {len(raw)} bytes", flush=True)
    for name, path in (("models.json", "/v1/models"), ("version.json", "/version")):
        status, raw = fetch(url + path)
        (out / f"vllm_0_24_{name}").write_bytes(raw)
    _, raw = fetch(url + "/metrics")
    (out / "vllm_0_24_metrics.txt").write_bytes(raw)


def llmbench_cli(*args: str, log: Path) -> int:
    cmd = [sys.executable, "-m", "llmbench.cli", *args]
    print(" ".join(cmd), flush=True)
    with open(log, "a") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        r = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT)
    print(f"  exit {r.returncode}", flush=True)
    return r.returncode


def sweep_args(url: str, model: str, name: str, force: str, model_dir: Path, tok: Path):
    return [
        "--url", url, "--model", model, "--api", "completions", "--name", name,
        "--force-output-len", force, "--batch-sizes", BATCH_SIZES,
        "--max-tokens", str(MAX_TOKENS), "--duration", str(STAGE_S), "--tokenizer", str(tok),
        "--gpu-price", "H200", "--model-arch", str(model_dir), "--gpu", "10", "--no-report",
        "--quiet",
    ]  # fmt: skip


def prefix_args(url: str, name: str, tok: Path):
    return [
        "--url", url, "--model", MODEL_NAME, "--api", "completions", "--name", name,
        "--force-output-len", "vllm", "--shared-prefix", "1024", "--prefix-groups", "4",
        "--input-tokens", "64", "--n-prompts", "128", "--batch-sizes", "8,32",
        "--max-tokens", "32", "--tokenizer", str(tok), "--gpu-price", "H200",
        "--no-report", "--quiet",
    ]  # fmt: skip


def pack(folder: Path, dest: Path) -> None:
    with tarfile.open(dest, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    print(f"{dest}: {dest.stat().st_size / 2**20:.1f} MiB", flush=True)


def study(site: Path, out: Path, port: int) -> None:
    t0 = time.monotonic()
    work = fresh_dir(Path("/tmp/vllm_study"))
    model = config_only_model(Path("/tmp/llama7b_config"))
    tok = tokenizer()
    url = f"http://127.0.0.1:{port}"
    log = work / "llmbench.log"
    timings = {}
    try:
        for on in (True, False):
            tag = "prefix_on" if on else "prefix_off"
            slog = work / f"vllm_{tag}.log"
            proc = start_vllm(site, model, port, on, slog)
            try:
                wait_ready(proc, url, slog, 420 if on else 300)
                timings[f"{tag}_ready_s"] = round(time.monotonic() - t0, 1)
                print(f"vLLM ({tag}) ready at {timings[f'{tag}_ready_s']} s", flush=True)
                if on:
                    capture_payloads(url, work / "payloads")
                    sweep = sweep_args(url, MODEL_NAME, "vllm", "vllm", model, tok)
                    llmbench_cli(
                        "metrics",
                        *sweep,
                        "--out",
                        str(work / "metrics_vllm"),
                        log=log,
                    )
                    llmbench_cli(
                        "kv-cache",
                        *sweep,
                        "--metrics-period",
                        "100",
                        "--out",
                        str(work / "kv_cache_vllm"),
                        log=log,
                    )
                llmbench_cli(
                    "metrics",
                    *prefix_args(url, f"vllm-{tag}", tok),
                    "--out",
                    str(work / f"shared_prefix_{tag}"),
                    log=log,
                )
                _, raw = fetch(url + "/metrics")
                (work / f"vllm_metrics_after_{tag}.txt").write_bytes(raw)
                timings[f"{tag}_done_s"] = round(time.monotonic() - t0, 1)
            finally:
                stop(proc)
    finally:
        (work / "timings.json").write_text(json.dumps(timings, indent=1))
        out.mkdir(parents=True, exist_ok=True)
        pack(work, out / "vllm_study.tar.gz")
        print(f"study done in {time.monotonic() - t0:.0f} s", flush=True)


def smoke(site: Path, port: int) -> None:
    """Start vLLM once (prefix caching on), answer one request, stop: start-up checked
    and torch.compile's cache (~/.cache/vllm) warm for the study's starts."""
    t0 = time.monotonic()
    model = config_only_model(Path("/tmp/llama7b_config"))
    url = f"http://127.0.0.1:{port}"
    log = Path("/tmp/vllm_smoke.log")
    proc = start_vllm(site, model, port, True, log)
    try:
        wait_ready(proc, url, log, 420)
        print(f"vLLM ready at {time.monotonic() - t0:.0f} s", flush=True)
        body = {"model": MODEL_NAME, "prompt": "Hello", "max_tokens": 8, "temperature": 0}
        print(fetch(url + "/v1/completions", body), flush=True)
    finally:
        stop(proc)
        text = log.read_text()
        print("\n".join(line[:300] for line in text.splitlines()[-40:]), flush=True)
    print(f"smoke done in {time.monotonic() - t0:.0f} s", flush=True)


def others(out: Path, port: int, cuda_site: Path) -> None:
    """The same sweep against `transformers serve` and the candle baseline served."""
    from gpu_telemetry import build_model, start_server

    t0 = time.monotonic()
    work = fresh_dir(Path("/tmp/others_study"))
    tok = tokenizer()
    log = work / "llmbench.log"
    arch = Path("/tmp/llama7b")
    try:
        build_model(arch, tok)
        url = f"http://127.0.0.1:{port}"
        proc = start_server(arch, port, work / "transformers_serve.log")
        try:
            print(f"transformers serve ready at {time.monotonic() - t0:.0f} s", flush=True)
            sweep = sweep_args(url, str(arch), "transformers", "transformers", arch, tok)
            llmbench_cli(
                "metrics",
                *sweep,
                "--out",
                str(work / "metrics_transformers"),
                log=log,
            )
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        print(f"transformers done at {time.monotonic() - t0:.0f} s", flush=True)
        # The baseline on the GPU needs the CUDA build of the extension (docs/baseline.md):
        # it serves from its own install in its own process; the client is this one.
        blog = work / "baseline_serve.log"
        env = {**os.environ, "PYTHONPATH": str(cuda_site)}
        cmd = [sys.executable, "-m", "llmbench.cli", "serve", "--model", "llama-2-7b"]
        cmd += ["--device", "cuda", "--dtype", "float16", "--max-batch", "64"]
        cmd += ["--tokenizer", str(tok), "--port", str(port + 1), "--for-seconds", "400"]
        bproc = subprocess.Popen(cmd, stdout=open(blog, "w"), stderr=subprocess.STDOUT, env=env)
        burl = f"http://127.0.0.1:{port + 1}"
        try:
            wait_ready(bproc, burl, blog, 240)
            print(f"baseline ready at {time.monotonic() - t0:.0f} s", flush=True)
            _, raw = fetch(burl + "/v1/models")
            name = json.loads(raw)["data"][0]["id"]
            sweep = sweep_args(burl, name, "baseline", "vllm", arch, tok)
            llmbench_cli(
                "metrics",
                *sweep,
                "--out",
                str(work / "metrics_baseline"),
                log=log,
            )
        finally:
            bproc.terminate()
            bproc.wait(timeout=30)
        print(f"baseline done at {time.monotonic() - t0:.0f} s", flush=True)
    finally:
        out.mkdir(parents=True, exist_ok=True)
        pack(work, out / "others_study.tar.gz")


def report(tars: list[Path], json_out: Path, png_out: Path | None) -> None:
    """Here: the table of docs/real_servers.md from the study's archives."""
    import pandas as pd

    work = Path("/tmp/real_servers_report")
    shutil.rmtree(work, ignore_errors=True)
    for t in tars:
        with tarfile.open(t) as tar:
            tar.extractall(work, filter="data")
    cols = [
        "target", "batch_size", "n_ok", "n_failed", "output_tok_s", "ttft_p50_ms",
        "ttft_p99_ms", "itl_mean_ms", "tpot_mean_ms", "e2e_p50_ms",
        "usd_per_1m_output_tokens", "kv_client_est_tokens_max", "kv_server_gib_max",
        "prefix_cache_hit_rate", "client_trustworthy",
    ]  # fmt: skip
    rows = []
    for csv in sorted(work.glob("*/*/metrics_summary.csv")):
        df = pd.read_csv(csv)
        df = df.assign(study=csv.parent.name)
        rows.append(df[[c for c in ["study", *cols] if c in df.columns]])
    table = pd.concat(rows, ignore_index=True)
    kv = {}
    for data in sorted(work.glob("*/*/gpu_memory_data.json")):
        d = json.loads(data.read_text())
        kv[data.parent.name] = {
            "summary": d.get("summary"),
            "server_kv": {
                k: {f: v[f] for f in v if f != "t_ns"} for k, v in d["server_kv"].items()
            },
            "gpus": d["nvml"].get("gpus"),
        }
        png = data.parent / "gpu_memory_timeline.png"
        if png_out and png.exists():
            shutil.copyfile(png, png_out)
    timings = {}
    for t in sorted(work.glob("*/timings.json")):
        timings[t.parent.name] = json.loads(t.read_text())
    json_out.parent.mkdir(parents=True, exist_ok=True)
    records = json.loads(table.to_json(orient="records"))
    doc = {"table": records, "kv_cache": kv, "timings": timings}
    json_out.write_text(json.dumps(doc, indent=1))
    pd.set_option("display.width", 250)
    print(table.round(2).to_string(index=False))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="here: closure, install, pack, split")
    p.add_argument("out", type=Path)
    p.add_argument("--part-mib", type=float, default=50.0)
    p.add_argument("--call-mib", type=float, default=55.0)
    p.add_argument("--relock", action="store_true", help="resolve afresh, rewrite the lock")
    u = sub.add_parser("unpack", help="there: reassemble, verify, unpack, import check")
    u.add_argument("src", type=Path)
    u.add_argument("site", type=Path)
    u.add_argument("--no-check", action="store_true", help="skip the import check")
    s = sub.add_parser("study", help="there: vLLM with prefix caching on and off")
    s.add_argument("--site", type=Path, default=Path("/tmp/vllm_site"))
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--port", type=int, default=8000)
    k = sub.add_parser("smoke", help="there: start vLLM once, one request, stop")
    k.add_argument("--site", type=Path, default=Path("/tmp/vllm_site"))
    k.add_argument("--port", type=int, default=8000)
    o = sub.add_parser("others", help="there: transformers serve and the baseline served")
    o.add_argument("--out", type=Path, required=True)
    o.add_argument("--port", type=int, default=8001)
    o.add_argument("--cuda-site", type=Path, default=Path("/tmp/lbcuda"), help="the CUDA build")
    r = sub.add_parser("report", help="here: the docs table from the archives")
    r.add_argument("tars", type=Path, nargs="+")
    r.add_argument("--json", type=Path, required=True)
    r.add_argument("--png", type=Path, default=None, help="where to copy the GPU timeline")
    args = ap.parse_args()
    # A `timeout` around a step sends SIGTERM: leave through the `finally` blocks, so the
    # servers stop and what was measured is packed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.command == "report":
        report(args.tars, args.json, args.png)
    elif args.command == "prepare":
        prepare(args.out, args.part_mib, args.call_mib, args.relock)
    elif args.command == "unpack":
        unpack(args.src, args.site, check=not args.no_check)
    elif args.command == "smoke":
        smoke(args.site, args.port)
    elif args.command == "study":
        study(args.site, args.out, args.port)
    else:
        others(args.out, args.port, args.cuda_site)


if __name__ == "__main__":
    main()
