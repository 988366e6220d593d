"""The naive baseline from Python: the in-process study's known answers (token counts,
KV-cache bytes against the formula, TTFT = prefill), the served baseline measured by the
load generator, the golden fixture through HTTP, the `serve` command, and clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import llmbench
import pytest
from conftest import popen, run_cli

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "baseline"


def test_in_process_run_has_the_sweep_shape_and_exact_kv_bytes(tmp_path):
    res = llmbench.baseline.run(
        "tiny",
        batch_sizes=[1, 3],
        prompt_tokens=16,
        max_new_tokens=5,
        batches_per_stage=2,
        out_dir=tmp_path,
    )
    s = res.summary
    assert s["batch_size"].tolist() == [1, 3]
    assert s["n_ok"].tolist() == [2, 6]
    req = res.requests
    assert (req["n_out"] == 5).all() and (req["n_in"] == 16).all()
    assert set(req["n_out_source"]) == {"model"}
    # tiny: 2 x 4 layers x 4 kv heads x 32 head_dim x 4 B (float32) = 4096 B/token; the
    # cache holds 16 + 5 - 1 tokens per row.
    assert res.manifest["model_arch"]["bytes_per_token"] == 4096
    assert s["kv_cache_bytes"].tolist() == [4096 * 20 * 1, 4096 * 20 * 3]
    assert (s["kv_cache_bytes"] == s["kv_cache_formula_bytes"]).all()
    # TTFT is the prefill: every row of a batch gets its first token at the same time.
    assert s["ttft_mean_ms"].iloc[1] == pytest.approx(s["prefill_ms"].iloc[1], rel=1e-6)
    # Decode rate = batch / step time.
    assert s["decode_tok_s"].iloc[1] == pytest.approx(3000 / s["decode_step_ms"].iloc[1])
    assert (s["decode_step_ms"] > 0).all() and (s["host_rss_peak_gib"] > 0).all()
    # Saved like a sweep, loadable, with the live records on disk.
    back = llmbench.Results.load(tmp_path)
    assert back.summary["kv_cache_bytes"].tolist() == s["kv_cache_bytes"].tolist()
    live = llmbench.records.read_file(tmp_path / "requests_baseline.arrows")
    # Measured rows + one warm-up batch at each batch size (1 and 3 rows).
    assert len(live) == 8 + 1 + 3
    assert len(res.warmup) == 1 + 3 and set(res.warmup["batch_size"]) == {1, 3}
    assert (tmp_path / "throughput_vs_batch_size.png").is_file()


def test_golden_model_over_http_gives_transformers_greedy_tokens():
    expected = json.loads((GOLDEN / "expected.json").read_text())
    folder = str(GOLDEN / "tiny-llama")
    with llmbench.baseline.BaselineServer(folder) as server:
        assert server.info["parameters"] > 0 and server.info["dtype"] == "float32"
        body = {
            "model": folder,
            "prompt": expected["prompts"][1],
            "max_tokens": 8,
            "temperature": 0,
            "ignore_eos": True,
        }
        req = urllib.request.Request(
            f"{server.url}/v1/completions",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=60) as r:
            out = json.loads(r.read())
    assert out["llmbench_token_ids"] == expected["greedy"][1]
    assert out["usage"] == {"prompt_tokens": 4, "completion_tokens": 8, "total_tokens": 12}


def _server_metric(url: str, name: str) -> float:
    text = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
    values = json.loads(llmbench._core.parse_metrics(text))["values"]
    return float(values[name])


def test_served_baseline_measured_by_the_load_generator():
    with llmbench.baseline.serve("tiny", max_batch=4, batch_window_ms=100) as server:
        res = llmbench.run_sweep(
            server.target(),
            batch_sizes=[1, 4],
            requests_per_stage=8,
            max_tokens=6,
            progress=False,
        )
        served = server.served
        batches = _server_metric(server.url, "llmbench_baseline_batches_total")
    # Static batching, counted by the server: the warm-up alone, eight batches of one,
    # then two waves of four requests that arrive together, each one static batch.
    assert batches == 1 + 8 + 2
    s = res.summary
    assert s["n_ok"].tolist() == [8, 8] and (s["n_failed"] == 0).all()
    assert (res.requests["n_out"] == 6).all()
    assert served == 8 + 8 + 1  # and the warm-up request
    # Static batching: at batch size 4 the four requests of a wave get their first token
    # together (one prefill), so their TTFTs are close; e2e grows with the batch.
    assert s["e2e_p50_ms"].iloc[1] > 0


def test_serve_command_answers_and_stops(tmp_path):
    port = 18791
    proc = popen(
        [sys.executable, "-m", "llmbench.cli", "serve", "--port", str(port), "--for-seconds", "60"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert f"llmbench baseline on http://127.0.0.1:{port}" in line, line
        r = run_cli(
            "metrics",
            "--url",
            f"http://127.0.0.1:{port}",
            "--model",
            "tiny",
            "--api",
            "completions",
            "--force-output-len",
            "vllm",
            "--batch-sizes",
            "2",
            "--requests",
            "4",
            "--max-tokens",
            "4",
            "--out",
            str(tmp_path),
            "--quiet",
        )
        assert r.returncode == 0, r.stderr
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_model_errors_are_clear(tmp_path):
    with pytest.raises(llmbench.ModelError, match=r"config\.json"):
        llmbench.baseline.run(str(tmp_path), prompt_tokens=4, max_new_tokens=1)
    with pytest.raises(llmbench.InvalidArgumentError, match="unknown baseline preset"):
        llmbench.baseline.run("llama-9", prompt_tokens=4, max_new_tokens=1)
    with pytest.raises(llmbench.ModelError, match="make build-cuda"):
        llmbench.baseline.run("tiny", device="cuda", prompt_tokens=4, max_new_tokens=1)
    with pytest.raises(llmbench.InvalidArgumentError, match="one of prompts"):
        llmbench.baseline.run("tiny", prompt_tokens=4, prompt_ids=[[1, 2]])


@pytest.mark.parametrize("dtype,size", [("float32", 4), ("float16", 2), ("bfloat16", 2)])
def test_every_dtype_runs_and_sizes_its_cache_by_it(dtype, size):
    res = llmbench.baseline.run(
        "tiny", dtype=dtype, batch_sizes=[2], prompt_tokens=8, max_new_tokens=4, warmup_batches=0
    )
    s = res.summary.iloc[0]
    assert s["n_ok"] == 2 and res.manifest["servers"]["baseline"]["dtype"] == dtype
    # 2 × 4 layers × 4 kv heads × 32 head_dim × dtype bytes, 8 + 4 − 1 tokens, 2 rows.
    assert s["kv_cache_bytes"] == s["kv_cache_formula_bytes"] == 2 * 4 * 4 * 32 * size * 11 * 2


def test_served_baseline_reports_its_kv_cache_bytes_in_the_summary():
    # One prompt for every request: each static batch of four rows holds the prompt and
    # all but the last new token per row in its cache.
    with llmbench.baseline.serve("tiny", max_batch=4, batch_window_ms=100) as server:
        res = llmbench.run_sweep(
            server.target(),
            batch_sizes=[4],
            requests_per_stage=8,
            max_tokens=6,
            prompts=["the quick brown fox jumps"],
            server_metrics=20,
            progress=False,
        )
        per_token = server.info["kv_bytes_per_token"]
    (n_in,) = res.requests["n_in"].unique()
    expected = 4 * (int(n_in) + 6 - 1) * per_token
    assert res.summary["kv_server_gib_max"].iloc[0] * 2**30 == expected


def test_a_batch_whose_kv_cache_cannot_fit_is_refused_before_allocating():
    # The tiny preset keeps 4 KiB per token: 4,096 rows of 1,999 tokens ask for 31 GiB,
    # more than this machine has; the error says so, and what would fit, at once.
    with pytest.raises(llmbench.ModelError, match=r"largest batch whose cache fits is \d+"):
        llmbench.baseline.run(
            "tiny",
            batch_sizes=[4096],
            prompt_tokens=1000,
            max_new_tokens=1000,
            warmup_batches=0,
        )
