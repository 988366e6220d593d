"""llmbench against the peers, every tool checked against the server's own truth.

The built-in scripted server (`llmbench sim --record-truth 1`, TTFT 50 ms, 10 ms per token,
one token per chunk) runs in its own process on one core; each tool runs on the other core
(`taskset`), against the same server, with the same request shape (chat completions,
streaming, a ~128-token prompt, 64 output tokens, `ignore_eos`; open loop at constant
arrivals, the one process all four offer). After each tool's run the
script takes the server's truth (`GET /llmbench/truth`: when each request arrived and when
each chunk was handed to the socket) and compares it with what the tool reported:

- TTFT p50 / p99: reported minus true (true = first chunk handed to the socket minus the
  request's arrival at the server);
- ITL: the tool's figure against the true figure of the same definition (per-chunk gaps:
  llmbench `itl`, vLLM `itl`, AIPerf `inter_chunk_latency`; per-request mean gap: GuideLLM
  `inter_token_latency`, compared with the true TPOT); see docs/architecture.md, "Metrics",
  on the naming clash;
- achieved request rate (server side) against the target, and the most requests the
  server really had in flight;
- client CPU-seconds per 1,000 streamed tokens: CPU of the tool's whole process tree while
  the server was streaming to it (start-up and report writing excluded);
- streamed tokens per second (server side) while the tool ran.

The tools: llmbench (this checkout); the minimal raw-socket client (`benches/raw_client`,
built here with cargo; closed loop only) in its two modes, `raw` (a connection per request)
and `raw-keepalive` (one kept connection per stream: the floor at high concurrency);
`vllm-bench`, vLLM's Rust benchmark client (a drop-in for `vllm bench serve`, built here
with cargo from its source at the commit measured: `--vllm-bench-src`, a source tarball,
or else its public repository at that commit); AIPerf, GuideLLM and `vllm bench serve`,
each installed by this script in its own virtualenv under `--peers-dir`.

Usage:
    python benches/peers.py [--quick] [--out docs/data/peers.json]
    python benches/peers.py --setup-only
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
from _host import cpu_model

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "python"))

PEERS = {"aiperf": "aiperf==0.13.0", "guidellm": "guidellm==0.8.1", "vllm": "vllm==0.33.0"}
TOOLS = ("llmbench", "raw", "raw-keepalive", "vllm-bench", "vllm", "aiperf", "guidellm")
VLLM_BENCH_REPO = "https://github.com/vllm-project/vllm-bench"
VLLM_BENCH_COMMIT = "f3131823f167aa1e6f31a48be1ae15a18667a534"
VLLM_BENCH_SRC = ROOT.parent / "shared" / "peers" / f"vllm-bench-{VLLM_BENCH_COMMIT[:7]}.tar.gz"
CONCURRENCY = (1, 64, 256, 1024)
RATES = (100, 1000, 5000)
MODEL = "llmbench-sim"
OUTPUT_TOKENS = 64
PROMPT_TOKENS = 128
TTFT_MS, ITL_MS = 50.0, 10.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
# Extra arguments for `llmbench metrics` (--llmbench-no-report).
LLMBENCH_ARGS: list[str] = []


# ---------------------------------------------------------------- setup


def setup_peers(peers_dir: Path, python: str, wanted: list[str]) -> dict[str, Path]:
    """Each peer in its own virtualenv (created and installed once; a marker names the pin)."""
    bins = {}
    for name in wanted:
        spec = PEERS[name]
        venv = peers_dir / name
        marker = venv / f".installed-{spec}"
        if not marker.is_file():
            print(f"installing {spec} into {venv} ...", flush=True)
            subprocess.run([python, "-m", "venv", str(venv)], check=True)
            subprocess.run(
                [str(venv / "bin" / "pip"), "install", "-q", spec], check=True, timeout=3600
            )
            marker.write_text(spec)
        bins[name] = venv / "bin"
    return bins


def build_raw_client() -> Path:
    target = ROOT / "target" / "raw_client"
    binary = target / "release" / "raw-stream-client"
    if shutil.which("cargo") is None and binary.is_file():
        return binary  # built elsewhere and carried here (a machine without Rust)
    subprocess.run(
        [
            "cargo",
            "build",
            "--release",
            "--quiet",
            "--manifest-path",
            str(ROOT / "benches" / "raw_client" / "Cargo.toml"),
            "--target-dir",
            str(target),
        ],
        check=True,
    )
    return target / "release" / "raw-stream-client"


def build_vllm_bench(src: Path) -> Path:
    """vllm-bench at the commit measured, built once under target/ (release, thin LTO as its
    README builds it): from a source tarball when there is one, else from its repository."""
    target = ROOT / "target" / "vllm-bench"
    binary = target / "bin" / "vllm-bench"
    marker = target / f".built-{VLLM_BENCH_COMMIT}"
    if binary.is_file() and marker.is_file():
        return binary
    env = {
        **os.environ,
        "CARGO_PROFILE_RELEASE_LTO": "thin",
        "CARGO_PROFILE_RELEASE_CODEGEN_UNITS": "8",
    }
    where = ["--git", VLLM_BENCH_REPO, "--rev", VLLM_BENCH_COMMIT]
    if src.is_file():
        unpacked = target / "src"
        shutil.rmtree(unpacked, ignore_errors=True)
        unpacked.mkdir(parents=True)
        subprocess.run(["tar", "xzf", str(src), "-C", str(unpacked)], check=True)
        where = ["--path", str(unpacked)]
    print(f"building vllm-bench ({' '.join(where)}) ...", flush=True)
    subprocess.run(
        ["cargo", "install", "--quiet", "--locked", *where, "--root", str(target)],
        check=True,
        env=env,
        timeout=3600,
    )
    marker.write_text(VLLM_BENCH_COMMIT)
    return binary


def tokenizer_dir(where: Path) -> Path:
    """A Hugging Face tokenizer folder (the real 32k LLaMA-2 tokenizer) every tool can load."""
    from tiny_model import tokenizer_json

    where.mkdir(parents=True, exist_ok=True)
    shutil.copy(tokenizer_json(), where / "tokenizer.json")
    (where / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "PreTrainedTokenizerFast",
                "bos_token": "<s>",
                "eos_token": "</s>",
                "unk_token": "<unk>",
                "model_max_length": 4096,
                "chat_template": "{% for m in messages %}{{ m['content'] }}{% endfor %}",
            }
        )
    )
    return where


# ---------------------------------------------------------------- server and truth


class Server:
    """`llmbench sim` with truth recording, in its own process on its own core."""

    def __init__(self, core: int | str, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [
                "taskset",
                "-c",
                str(core),
                sys.executable,
                "-m",
                "llmbench.cli",
                "sim",
                "--port",
                str(port),
                "--ttft-ms",
                str(TTFT_MS),
                "--itl-ms",
                str(ITL_MS),
                "--max-batch",
                "1000000",
                "--record-truth",
                "1",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.proc.stdout.readline()

    def take_truth(self) -> tuple[int, list[dict[str, Any]]]:
        with urllib.request.urlopen(self.url + "/llmbench/truth", timeout=120) as r:
            body = json.load(r)
        return int(body["monotonic_anchor_ns"]), body["records"]

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def truth_stats(anchor: int, records: list[dict[str, Any]]) -> dict[str, Any]:
    """The server's side of a run: true TTFT, gaps and TPOT, window, rate, in flight."""
    recs = [r for r in records if r["chunk_times"]]
    ttft = np.array([(r["chunk_times"][0] - r["t_received"]) / 1e6 for r in recs])
    gaps = np.concatenate([np.diff(r["chunk_times"]) / 1e6 for r in recs]) if recs else []
    tpot = np.array(
        [
            (r["chunk_times"][-1] - r["chunk_times"][0]) / 1e6 / (sum(r["chunk_tokens"]) - 1)
            for r in recs
            if sum(r["chunk_tokens"]) > 1
        ]
    )
    received = np.sort([r["t_received"] for r in records])
    start = int(received[0]) if len(received) else 0
    end = max((r["chunk_times"][-1] for r in recs), default=start)
    tokens = sum(sum(r["chunk_tokens"]) for r in recs)
    # Streams open at the server at once: +1 at arrival, -1 at the last chunk.
    events = sorted(
        [(r["t_received"], 1) for r in recs] + [(r["chunk_times"][-1], -1) for r in recs]
    )
    level = peak = 0
    for _, d in events:
        level += d
        peak = max(peak, level)
    span = (received[-1] - received[0]) / 1e9 if len(received) > 1 else float("nan")
    return {
        "requests": len(records),
        "streams_completed": len(recs),
        "ttft_ms": ttft,
        "gaps_ms": np.asarray(gaps),
        "tpot_ms": tpot,
        "window_ns": (anchor + start, anchor + end),
        "tokens": tokens,
        "tok_s": tokens / ((end - start) / 1e9) if end > start else float("nan"),
        "arrival_rate": (len(received) - 1) / span if span and span > 0 else float("nan"),
        "peak_in_flight": peak,
        "anchor": anchor,
        "records": records,
    }


# ---------------------------------------------------------------- client CPU


def _tree_ticks(root: int) -> int:
    """utime + stime (clock ticks) of `root` and every live descendant, plus the CPU of
    children they have already waited for (cutime + cstime)."""
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                raw = f.read()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2 :].split()
        pid, ppid = int(entry), int(fields[1])
        children.setdefault(ppid, []).append(pid)
        stats[pid] = fields
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        f = stats.get(pid)
        if f is None:
            continue
        total += sum(int(x) for x in f[11:15])
        todo.extend(children.get(pid, []))
    return total


class CpuWatch:
    """Samples a process tree's CPU time every 20 ms on the machine's monotonic clock."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[tuple[int, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic_ns(), _tree_ticks(self.pid) / CLK_TCK))
            time.sleep(0.02)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def between(self, t0: int, t1: int) -> float:
        """CPU seconds used in [t0, t1] (machine monotonic ns), interpolated."""
        if len(self.samples) < 2:
            return float("nan")
        ts = np.array([s[0] for s in self.samples], dtype=np.float64)
        cpu = np.array([s[1] for s in self.samples])
        return float(np.interp(t1, ts, cpu) - np.interp(t0, ts, cpu))


# ---------------------------------------------------------------- the tools


def _prompt() -> str:
    # About PROMPT_TOKENS tokens with the LLaMA-2 tokenizer (one token per short word).
    words = "the quick brown fox jumps over the lazy dog and keeps running far away".split()
    return " ".join(words[i % len(words)] for i in range(PROMPT_TOKENS - 2))


def cmd_llmbench(url: str, load: dict[str, Any], n: int, work: Path, _: Path) -> list[str]:
    # The command a user runs, with its default outputs (JSON, CSV, record file, plots,
    # report.html), so its whole-command CPU is what a user's run costs.
    (work / "prompts.txt").write_text(_prompt() + "\n")
    mode = (
        ["--batch-sizes", str(load["concurrency"])]
        if "concurrency" in load
        else ["--rates", f"{load['rate']:g}", "--arrival", "constant"]
    )
    return [
        sys.executable,
        "-m",
        "llmbench.cli",
        "metrics",
        "--url",
        url,
        "--model",
        MODEL,
        "--api",
        "chat",
        "--extra-body",
        json.dumps({"ignore_eos": True}),
        "--requests",
        str(n),
        "--max-tokens",
        str(OUTPUT_TOKENS),
        "--prompts",
        str(work / "prompts.txt"),
        "--warmup",
        "0",
        "--metrics-period",
        "0",
        # The same request as the peers': per-chunk usage would make the one-core scripted
        # server write more per chunk for llmbench alone (its tokens per chunk are 1 here).
        "--no-continuous-usage",
        "--out",
        str(work / "out"),
        "--quiet",
        *LLMBENCH_ARGS,
        *mode,
    ]


def chunk_lags(chunks: dict[str, list[int]], to_machine_ns: int, truth: dict[str, Any]) -> Any:
    """Every chunk's arrival at the client minus its hand-off at the server (ms), matched
    by the request id the client sent; `to_machine_ns` turns client times into the
    machine's monotonic clock."""
    by_id = {r["request_id"]: r for r in truth["records"] if r["request_id"] is not None}
    lags: list[float] = []
    for rid, times in chunks.items():
        t = by_id.get(int(rid))
        if t and len(t["chunk_times"]) == len(times):
            sent = np.asarray(t["chunk_times"], dtype=np.int64) + truth["anchor"]
            got = np.asarray(times, dtype=np.int64) + to_machine_ns
            lags.extend(((got - sent) / 1e6).tolist())
    return np.asarray(lags)


def _lag_pcts(lags: Any) -> dict[str, float]:
    if not len(lags):
        return {"chunk_lag_p50": float("nan"), "chunk_lag_p99": float("nan")}
    return {
        "chunk_lag_p50": float(np.percentile(lags, 50)),
        "chunk_lag_p99": float(np.percentile(lags, 99)),
        "chunk_lag_max": float(lags.max()),
    }


def read_llmbench(work: Path, truth: dict[str, Any]) -> dict[str, Any]:
    import llmbench

    res = llmbench.Results.load(work / "out")
    s = res.summary.iloc[0]
    chunks = res.chunk_arrays
    # Every request's chunk times (client clock), for the per-chunk lag matched by id.
    chunk_times = {}
    for i, row in res.all_requests.reset_index(drop=True).iterrows():
        if row["ok"] and not row["warmup"]:
            a, b = int(chunks["offsets"][i]), int(chunks["offsets"][i + 1])
            chunk_times[int(row["id"])] = chunks["t_ns"][a:b].tolist()
    anchor = res.manifest["clock"]["monotonic_anchor_ns"]
    return {
        "ttft_p50": float(s["ttft_p50_ms"]),
        "ttft_p99": float(s["ttft_p99_ms"]),
        "itl_p50": float(s["itl_p50_ms"]),
        "itl_p99": float(s["itl_p99_ms"]),
        "itl_kind": "chunk",
        "ok": int(s["n_ok"]),
        **_lag_pcts(chunk_lags(chunk_times, anchor, truth)),
        "client_task_lag_p99": float(s.get("client_task_lag_p99_ms", float("nan"))),
        "client_trustworthy": bool(s.get("client_trustworthy", True)),
    }


def cmd_raw(
    url: str, load: dict[str, Any], n: int, work: Path, binary: Path, mode: str = "close"
) -> list[str]:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": _prompt()}],
        "max_tokens": OUTPUT_TOKENS,
        "stream": True,
        "ignore_eos": True,
    }
    (work / "body.json").write_text(json.dumps(body))
    hostport = url.removeprefix("http://")
    return [
        str(binary),
        hostport,
        "/v1/chat/completions",
        str(work / "body.json"),
        str(load["concurrency"]),
        str(n),
        mode,
    ]


def cmd_raw_keepalive(
    url: str, load: dict[str, Any], n: int, work: Path, binary: Path
) -> list[str]:
    return cmd_raw(url, load, n, work, binary, "keepalive")


def read_raw(work: Path, truth: dict[str, Any]) -> dict[str, Any]:
    d = json.loads((work / "stdout.txt").read_text())
    return {
        "ttft_p50": float(np.percentile(d["ttft_ms"], 50)),
        "ttft_p99": float(np.percentile(d["ttft_ms"], 99)),
        "itl_p50": float(np.percentile(d["gaps_ms"], 50)),
        "itl_p99": float(np.percentile(d["gaps_ms"], 99)),
        "itl_kind": "chunk",
        "ok": d["ok"],
        **_lag_pcts(chunk_lags(d["chunks"], 0, truth)),
    }


def cmd_vllm(url: str, load: dict[str, Any], n: int, work: Path, bins: Path) -> list[str]:
    return [str(bins / "vllm"), "bench", "serve", *_vllm_bench_args(url, load, n, work)]


def cmd_vllm_bench(url: str, load: dict[str, Any], n: int, work: Path, binary: Path) -> list[str]:
    # The same flags (a drop-in for `vllm bench serve`) and the same result file.
    return [str(binary), *_vllm_bench_args(url, load, n, work)]


def _vllm_bench_args(url: str, load: dict[str, Any], n: int, work: Path) -> list[str]:
    # A gamma process of huge shape is vLLM's way to constant arrivals.
    rate = (
        ["--request-rate", str(load["rate"]), "--burstiness", "1000000"]
        if "rate" in load
        else ["--request-rate", "inf"]
    )
    conc = ["--max-concurrency", str(load["concurrency"])] if "concurrency" in load else []
    return [
        "--backend",
        "openai-chat",
        "--base-url",
        url,
        "--endpoint",
        "/v1/chat/completions",
        "--model",
        MODEL,
        "--tokenizer",
        str(work.parent / "tokenizer"),
        "--dataset-name",
        "random",
        "--random-input-len",
        str(PROMPT_TOKENS),
        "--random-output-len",
        str(OUTPUT_TOKENS),
        "--num-prompts",
        str(n),
        "--ignore-eos",
        "--num-warmups",
        "0",
        "--percentile-metrics",
        "ttft,tpot,itl,e2el",
        "--metric-percentiles",
        "50,99",
        "--disable-tqdm",
        "--save-result",
        "--result-dir",
        str(work),
        "--result-filename",
        "vllm.json",
        "--seed",
        "0",
        *rate,
        *conc,
    ]


def read_vllm(work: Path, _: dict[str, Any]) -> dict[str, Any]:
    d = json.loads((work / "vllm.json").read_text())
    return {
        "ttft_p50": d["p50_ttft_ms"],
        "ttft_p99": d["p99_ttft_ms"],
        "itl_p50": d["p50_itl_ms"],
        "itl_p99": d["p99_itl_ms"],
        "itl_kind": "chunk",
        "ok": d["completed"],
    }


def cmd_aiperf(url: str, load: dict[str, Any], n: int, work: Path, bins: Path) -> list[str]:
    mode = (
        ["--concurrency", str(load["concurrency"])]
        if "concurrency" in load
        else ["--request-rate", str(load["rate"]), "--arrival-pattern", "constant"]
    )
    return [
        str(bins / "aiperf"),
        "profile",
        "--model",
        MODEL,
        "--url",
        url,
        "--endpoint-type",
        "chat",
        "--streaming",
        "--request-count",
        str(n),
        "--isl",
        str(PROMPT_TOKENS),
        "--osl",
        str(OUTPUT_TOKENS),
        "--extra-inputs",
        "ignore_eos:true",
        "--use-server-token-count",
        "--tokenizer",
        str(work.parent / "tokenizer"),
        "--artifact-dir",
        str(work / "aiperf"),
        "--ui",
        "none",
        "--no-server-metrics",
        "--no-gpu-telemetry",
        "--random-seed",
        "0",
        *mode,
    ]


def read_aiperf(work: Path, _: dict[str, Any]) -> dict[str, Any]:
    d = json.loads((work / "aiperf" / "profile_export_aiperf.json").read_text())
    return {
        "ttft_p50": d["time_to_first_token"]["p50"],
        "ttft_p99": d["time_to_first_token"]["p99"],
        "itl_p50": d["inter_chunk_latency"]["p50"],
        "itl_p99": d["inter_chunk_latency"]["p99"],
        "itl_kind": "chunk",
        "ok": int(d["request_count"]["avg"]),
    }


def cmd_guidellm(url: str, load: dict[str, Any], n: int, work: Path, bins: Path) -> list[str]:
    profile = (
        {"kind": "concurrent", "streams": [load["concurrency"]]}
        if "concurrency" in load
        else {"kind": "constant", "rate": [load["rate"]]}
    )
    scenario = {
        "spec": {
            "backend": {
                "kind": "openai_http",
                "target": url,
                "model": MODEL,
                "request_format": "/v1/chat/completions",
            },
            "profile": profile,
            "data": [
                {
                    "kind": "synthetic_text",
                    "prompt_tokens": PROMPT_TOKENS,
                    "output_tokens": OUTPUT_TOKENS,
                }
            ],
            "tokenizer": {"kind": "huggingface_auto", "model": str(work.parent / "tokenizer")},
            "constraints": [{"kind": "max_requests", "count": n}],
            "outputs": [{"kind": "json", "path": str(work / "guidellm.json")}],
        }
    }
    (work / "scenario.json").write_text(json.dumps(scenario))
    return [
        str(bins / "guidellm"),
        "run",
        "-c",
        str(work / "scenario.json"),
        "--disable-console-interactive",
    ]


def read_guidellm(work: Path, _: dict[str, Any]) -> dict[str, Any]:
    d = json.loads((work / "guidellm.json").read_text())
    m = d["benchmarks"][0]["metrics"]

    def p(name: str, q: str) -> float:
        return float(m[name]["successful"]["percentiles"][q])

    return {
        "ttft_p50": p("time_to_first_token_ms", "p50"),
        "ttft_p99": p("time_to_first_token_ms", "p99"),
        # Per request: (last − first) / (tokens − 1), i.e. TPOT in llmbench's terms.
        "itl_p50": p("inter_token_latency_ms", "p50"),
        "itl_p99": p("inter_token_latency_ms", "p99"),
        "itl_kind": "request_mean",
        "ok": int(m["request_totals"]["successful"]),
    }


COMMANDS = {
    "llmbench": (cmd_llmbench, read_llmbench),
    "raw": (cmd_raw, read_raw),
    "raw-keepalive": (cmd_raw_keepalive, read_raw),
    "vllm-bench": (cmd_vllm_bench, read_vllm),
    "vllm": (cmd_vllm, read_vllm),
    "aiperf": (cmd_aiperf, read_aiperf),
    "guidellm": (cmd_guidellm, read_guidellm),
}


# ---------------------------------------------------------------- one measurement


def measure(
    tool: str,
    load: dict[str, Any],
    n: int,
    server: Server,
    client_core: int | str,
    work: Path,
    extra: Any,
    timeout_s: float,
) -> dict[str, Any]:
    cmd_fn, read_fn = COMMANDS[tool]
    work.mkdir(parents=True, exist_ok=True)
    server.take_truth()  # clear
    cmd = ["taskset", "-c", str(client_core), *cmd_fn(server.url, load, n, work, extra)]
    t0 = time.monotonic()
    with open(work / "stdout.txt", "w") as out, open(work / "stderr.txt", "w") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=work, start_new_session=True)
        watch = CpuWatch(proc.pid)
        rc, command_cpu, max_rss_mib = _wait_with_cpu(proc, timeout_s)
        watch.stop()
    wall = time.monotonic() - t0
    anchor, records = server.take_truth()
    row: dict[str, Any] = {"tool": tool, **load, "requests": n, "rc": rc, "wall_s": wall}
    if not records:
        return {**row, "error": f"no request reached the server (rc {rc})"}
    truth = truth_stats(anchor, records)
    cpu = watch.between(*truth["window_ns"])
    row.update(
        {
            "true_ttft_p50": float(np.percentile(truth["ttft_ms"], 50)),
            "true_ttft_p99": float(np.percentile(truth["ttft_ms"], 99)),
            "true_gap_p50": float(np.percentile(truth["gaps_ms"], 50)),
            "true_gap_p99": float(np.percentile(truth["gaps_ms"], 99)),
            "true_tpot_p50": float(np.percentile(truth["tpot_ms"], 50)),
            "true_tpot_p99": float(np.percentile(truth["tpot_ms"], 99)),
            "server_requests": truth["requests"],
            "server_peak_in_flight": truth["peak_in_flight"],
            "server_arrival_rate": truth["arrival_rate"],
            "server_tok_s": truth["tok_s"],
            "tokens": truth["tokens"],
            "client_cpu_s": cpu,
            "command_cpu_s": command_cpu,
            "command_max_rss_mib": max_rss_mib,
            "cpu_s_per_1k_tokens": cpu / (truth["tokens"] / 1000) if truth["tokens"] else None,
        }
    )
    try:
        rep = read_fn(work, truth)
    except (OSError, KeyError, ValueError, IndexError, TypeError) as e:
        return {**row, "error": f"cannot read the tool's report: {type(e).__name__}: {e}"}
    row.update({f"reported_{k}" if k not in ("itl_kind",) else k: v for k, v in rep.items()})
    true_itl = "gap" if rep["itl_kind"] == "chunk" else "tpot"
    for q in ("p50", "p99"):
        row[f"ttft_err_{q}_ms"] = rep[f"ttft_{q}"] - row[f"true_ttft_{q}"]
        row[f"ttft_err_{q}_pct"] = 100 * row[f"ttft_err_{q}_ms"] / row[f"true_ttft_{q}"]
        row[f"itl_err_{q}_ms"] = rep[f"itl_{q}"] - row[f"true_{true_itl}_{q}"]
        row[f"itl_err_{q}_pct"] = 100 * row[f"itl_err_{q}_ms"] / row[f"true_{true_itl}_{q}"]
    return row


def _wait_with_cpu(proc: subprocess.Popen[Any], timeout_s: float) -> tuple[Any, float, float]:
    """Wait for the tool's process; its exit code, the whole command's CPU seconds (user +
    system of the process and every child it waited for: start-up, run and report included)
    and its peak resident memory (MiB, the largest process of the tree), from the kernel's
    accounting at exit."""
    deadline = time.monotonic() + timeout_s
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            break
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            _, _, usage = os.wait4(proc.pid, 0)
            proc.returncode = None
            break
        time.sleep(0.01)
    rc = "timeout" if proc.returncode is None else proc.returncode
    return rc, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def requests_for(load: dict[str, Any], quick: bool) -> int:
    if "concurrency" in load:
        c = load["concurrency"]
        return max(2 * c, 16) if quick else max(4 * c, 32)
    return int(load["rate"] * (1 if quick else 4))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tools", default=",".join(TOOLS))
    ap.add_argument("--concurrency", default=",".join(map(str, CONCURRENCY)))
    ap.add_argument("--rates", default=",".join(map(str, RATES)))
    ap.add_argument("--quick", action="store_true", help="fewer requests per point")
    ap.add_argument("--peers-dir", type=Path, default=ROOT / "benches" / ".peers")
    ap.add_argument("--python", default=sys.executable, help="interpreter for the peers' venvs")
    ap.add_argument("--port", type=int, default=18931)
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument(
        "--vllm-bench-src",
        type=Path,
        default=VLLM_BENCH_SRC,
        help="vllm-bench's source tarball (else it is built from its repository)",
    )
    ap.add_argument(
        "--server-cores",
        default=None,
        help="taskset core list for the scripted server (default: the last core)",
    )
    ap.add_argument(
        "--client-cores",
        default=None,
        help="';'-separated taskset core lists, one measurement set each "
        "(default: the first core), e.g. '8;8-9;8-11;8-15'",
    )
    ap.add_argument(
        "--per-core",
        action="store_true",
        help="scale each concurrency by the client's core count (streams per client core)",
    )
    ap.add_argument(
        "--llmbench-no-report",
        action="store_true",
        help="run `llmbench metrics` with --no-report (a machine without bokeh)",
    )
    ap.add_argument("--setup-only", action="store_true")
    ap.add_argument(
        "--report",
        type=Path,
        nargs="+",
        help="print the tables of saved runs (several: the range of each figure) and stop",
    )
    args = ap.parse_args()
    if args.report:
        print(report([json.loads(p.read_text()) for p in args.report]))
        return

    tools = [t for t in args.tools.split(",") if t]
    bins = setup_peers(args.peers_dir, args.python, [t for t in tools if t in PEERS])
    raw = build_raw_client() if {"raw", "raw-keepalive"} & set(tools) else None
    vllm_bench = build_vllm_bench(args.vllm_bench_src) if "vllm-bench" in tools else None
    if args.setup_only:
        return
    cores = sorted(os.sched_getaffinity(0))
    server_core = args.server_cores or str(cores[-1])
    client_sets = [c for c in (args.client_cores or str(cores[0])).split(";") if c]
    if args.llmbench_no_report:
        LLMBENCH_ARGS.append("--no-report")
    import llmbench

    machine = {
        "host": platform.node(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "server_core": server_core,
        "client_core": client_sets[0] if len(client_sets) == 1 else client_sets,
        "llmbench": llmbench.__version__,
        "peers": PEERS,
        "python": platform.python_version(),
    }
    print(json.dumps(machine))
    loads = [{"concurrency": int(c)} for c in args.concurrency.split(",") if c] + [
        {"rate": float(r)} for r in args.rates.split(",") if r
    ]
    rows = []
    with tempfile.TemporaryDirectory(prefix="llmbench-peers-") as tmp:
        tokenizer_dir(Path(tmp) / "tokenizer")
        server = Server(server_core, args.port)
        try:
            for client_cores, base in [(c, b) for c in client_sets for b in loads]:
                k = _core_count(client_cores)
                load = dict(base)
                if args.per_core:
                    load = {key: v * k for key, v in base.items()}
                if len(client_sets) > 1:
                    load["client_cores"] = k
                for tool in tools:
                    if tool.startswith("raw") and "rate" in load:
                        continue  # closed loop only
                    extra = {"raw": raw, "raw-keepalive": raw, "vllm-bench": vllm_bench}.get(
                        tool, bins.get(tool)
                    )
                    n = requests_for(load, args.quick)
                    name = "_".join(f"{k}{v:g}" for k, v in load.items())
                    row = measure(
                        tool,
                        load,
                        n,
                        server,
                        client_cores,
                        Path(tmp) / f"{tool}_{name}",
                        extra,
                        args.timeout,
                    )
                    rows.append(row)
                    print(_line(row), flush=True)
                    if args.out:
                        _save(args.out, machine, rows)
        finally:
            server.stop()
    if args.out:
        _save(args.out, machine, rows)
        print(f"written to {args.out}")


def report(runs: list[dict[str, Any]]) -> str:
    """One or more saved runs as Markdown tables: each figure per tool and load (over
    several runs, its range: lowest … highest), with each peer's figure as a ratio to
    llmbench's (ranges: the ratio of the medians over the runs)."""
    rows = [r for d in runs for r in d["rows"] if "error" not in r]
    tools = [t for t in TOOLS if any(r["tool"] == t for r in rows)]
    loads: list[str] = []
    for r in rows:
        if _load(r) not in loads:
            loads.append(_load(r))
    cells: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        cells.setdefault((r["tool"], _load(r)), []).append(r)

    def span(values: list[float], fmt: str) -> str:
        lo, hi = min(values), max(values)
        a, b = fmt.format(lo), fmt.format(hi)
        return a if a == b else f"{a} … {b}"

    def table(title: str, parts: list[tuple[str, str]], ratio_key: str | None = None) -> str:
        """Per tool and load, each (key, format) part's range, joined by " / "; with
        `ratio_key`, each peer's median of that key as a multiple of llmbench's."""
        head = "| load | " + " | ".join(tools) + " |"
        out = [f"**{title}**", "", head, "|" + "---|" * (len(tools) + 1)]
        for load in loads:
            ours = cells.get(("llmbench", load))
            line = []
            for t in tools:
                rs = cells.get((t, load))
                got = [
                    [r[k] for r in rs or [] if r.get(k) is not None and r[k] == r[k]]
                    for k, _ in parts
                ]
                if not rs or not all(got):
                    line.append("—")
                    continue
                text = " / ".join(span(v, f) for v, (_, f) in zip(got, parts, strict=True))
                if ratio_key and ours and t != "llmbench":
                    a = np.median([r[ratio_key] for r in rs if r.get(ratio_key) is not None])
                    b = np.median([r[ratio_key] for r in ours if r.get(ratio_key) is not None])
                    if a == a and b:
                        text += f" ({a / b:.1f}×)"
                line.append(text)
            out.append(f"| {load} | " + " | ".join(line) + " |")
        return "\n".join(out)

    tables = [
        table("TTFT p50: reported − true (ms)", [("ttft_err_p50_ms", "{:+.2f}")]),
        table("TTFT p99: reported − true (ms)", [("ttft_err_p99_ms", "{:+.2f}")]),
        table("ITL p50: reported − true (ms)", [("itl_err_p50_ms", "{:+.3f}")]),
        table("ITL p99: reported − true (ms)", [("itl_err_p99_ms", "{:+.2f}")]),
        table(
            "Per-chunk lag behind the server's hand-off, matched by request id, p50 / p99 "
            "(ms; — where the tool sends no id or stamps several chunks at once)",
            [("reported_chunk_lag_p50", "{:.3f}"), ("reported_chunk_lag_p99", "{:.2f}")],
        ),
        table(
            "Requests in flight at the server (peak) / arrival rate (server side, req/s)",
            [("server_peak_in_flight", "{:.0f}"), ("server_arrival_rate", "{:.0f}")],
        ),
        table(
            "Client CPU-seconds per 1,000 streamed tokens (peer ÷ llmbench)",
            [("cpu_s_per_1k_tokens", "{:.4f}")],
            ratio_key="cpu_s_per_1k_tokens",
        ),
        table(
            "Whole-command CPU-seconds, start-up, run and report / peak memory, MiB "
            "(peer ÷ llmbench: CPU)",
            [("command_cpu_s", "{:.2f}"), ("command_max_rss_mib", "{:.0f}")],
            ratio_key="command_cpu_s",
        ),
        table(
            "Streamed tokens per second while the tool ran (server side; peer ÷ llmbench)",
            [("server_tok_s", "{:,.0f}")],
            ratio_key="server_tok_s",
        ),
    ]
    failed = [r for d in runs for r in d["rows"] if "error" in r]
    if failed:
        tables.append(
            "**Runs that produced no comparable figures**\n\n"
            + "\n".join(f"- {r['tool']} at {_load(r)}: {r['error']}" for r in failed)
        )
    return "\n\n".join(tables) + "\n"


def _core_count(cores: str) -> int:
    """How many cores a taskset list (`8`, `8-11`, `0,2-3`) names."""
    n = 0
    for part in cores.split(","):
        lo, _, hi = part.partition("-")
        n += int(hi or lo) - int(lo) + 1
    return n


def _load(r: dict[str, Any]) -> str:
    cores = f"{r['client_cores']} client core(s), " if r.get("client_cores") else ""
    if r.get("concurrency") is not None:
        n = r["concurrency"]
        return cores + f"{n} stream" + ("s" if n != 1 else "")
    return cores + f"{r['rate']:g} req/s"


def _line(r: dict[str, Any]) -> str:
    load = f"c={r['concurrency']}" if "concurrency" in r else f"rate={r['rate']:g}"
    if r.get("client_cores"):
        load = f"{r['client_cores']}c {load}"
    if "error" in r:
        return f"{r['tool']:>9} {load:>10}: {r['error']}"
    return (
        f"{r['tool']:>9} {load:>10}: ok {r.get('reported_ok')}/{r['requests']} "
        f"TTFT err p50 {r['ttft_err_p50_ms']:+8.2f} ms p99 {r['ttft_err_p99_ms']:+8.2f} ms | "
        f"ITL err p50 {r['itl_err_p50_ms']:+7.3f} ms p99 {r['itl_err_p99_ms']:+7.2f} | "
        f"in flight {r['server_peak_in_flight']} | rate {r['server_arrival_rate']:.0f}/s | "
        f"{r['server_tok_s']:.0f} tok/s | CPU {r['cpu_s_per_1k_tokens']:.4f} s/1k tok, "
        f"{r.get('command_cpu_s', float('nan')):.2f} s whole command"
    )


def _save(path: Path, machine: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    clean = [
        {k: (None if isinstance(v, float) and v != v else v) for k, v in r.items()} for r in rows
    ]
    path.write_text(json.dumps({"machine": machine, "rows": clean}, indent=1, default=str))


if __name__ == "__main__":
    main()
