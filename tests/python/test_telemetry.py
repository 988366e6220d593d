"""GPU memory and KV-cache study on a CPU machine: the `/metrics` scraper against served
fixtures whose values change over time, the KV arithmetic against hand-computed answers,
the NVML error path, and the `kv-cache` command's files."""

from __future__ import annotations

import http.server
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import llmbench
import numpy as np
import pandas as pd
import pytest
from conftest import http_server, run_cli
from llmbench.columns.kv import inflight_timeline, server_kv, stage_telemetry

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


class _MetricsServer(http.server.BaseHTTPRequestHandler):
    """Serves a fixture's /metrics with one gauge replaced by the request count (so the
    values change over time), or fails on purpose."""

    text = ""
    gauge = ""
    calls = 0
    mode = "ok"

    def do_GET(self) -> None:
        cls = type(self)
        cls.calls += 1
        if self.path != "/metrics" or cls.mode == "404":
            self.send_error(404)
            return
        body = cls.text
        if cls.gauge:
            body = re.sub(
                rf"^({re.escape(cls.gauge)}(?:{{[^}}]*}})?) \S+$",
                lambda m: f"{m.group(1)} {cls.calls}",
                body,
                flags=re.M,
            )
        if cls.mode == "garbage":
            body = "\x00\x01 not prometheus {{{\n"
        data = body.encode()
        self.send_response(200)
        self.send_header("content-type", "text/plain; version=0.0.4")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def metrics_server() -> Iterator[type[_MetricsServer]]:
    handler = type("Handler", (_MetricsServer,), {"calls": 0, "mode": "ok"})
    with http_server(handler) as url:
        handler.url = f"{url}/metrics"  # type: ignore[attr-defined]
        yield handler


@pytest.mark.parametrize(
    "fixture, gauge, kv_key",
    [
        ("vllm_metrics.txt", "vllm:num_requests_running", "vllm:kv_cache_usage_perc"),
        ("vllm_metrics_v0.txt", "vllm:num_requests_running", "vllm:gpu_cache_usage_perc"),
        ("vllm_0_24_metrics.txt", "vllm:num_requests_running", "vllm:kv_cache_usage_perc"),
        ("tgi_metrics.txt", "tgi_batch_current_max_tokens", "tgi_batch_max_total_tokens"),
    ],
)
def test_scraper_follows_changing_values(metrics_server, fixture, gauge, kv_key):
    metrics_server.text = (FIXTURES / fixture).read_text()
    metrics_server.gauge = gauge
    with llmbench.MetricsScraper(metrics_server.url, period_ms=50) as scraper:
        time.sleep(0.6)
    pts = scraper.points
    assert len(pts) >= 5
    assert pts["t_ns"].is_monotonic_increasing
    # Each scrape saw the server's request count: strictly increasing.
    assert pts[gauge].is_monotonic_increasing and pts[gauge].iloc[0] >= 1
    assert kv_key in pts
    assert not any(c.endswith("_created") for c in pts.columns)
    if fixture.startswith("vllm"):
        cache = scraper.output["info"]["vllm:cache_config_info"]
        assert int(cache["block_size"]) > 0 and int(cache["num_gpu_blocks"]) > 0
    assert scraper.output["errors"] == []


@pytest.mark.parametrize("mode", ["404", "garbage"])
def test_scraper_survives_missing_or_broken_endpoints(metrics_server, mode):
    metrics_server.mode = mode
    metrics_server.text = "x 1\n"
    with llmbench.MetricsScraper(metrics_server.url, period_ms=50) as scraper:
        time.sleep(0.3)
    out = scraper.output
    assert out["attempts"] >= 3
    if mode == "404":
        assert out["points"] == [] and "HTTP 404" in out["errors"][0][1]
    else:
        assert all(p["values"] == {} for p in out["points"])


def test_scraper_of_a_dead_port_records_errors():
    with llmbench.MetricsScraper("http://127.0.0.1:9/metrics", period_ms=50) as scraper:
        time.sleep(0.2)
    assert scraper.output["points"] == [] and scraper.output["errors"]


def test_kv_arithmetic_by_hand(tmp_path):
    assert llmbench.model_arch("llama-2-7b")["bytes_per_token"] == 512 * 1024
    assert llmbench.model_arch("llama-2-13b")["bytes_per_token"] == 2 * 40 * 40 * 128 * 2
    cfg = {
        "hidden_size": 4096,
        "num_attention_heads": 32,
        "num_hidden_layers": 32,
        "num_key_value_heads": 8,
        "torch_dtype": "bfloat16",
    }
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    assert llmbench.model_arch(tmp_path)["bytes_per_token"] == 131072
    with pytest.raises(llmbench.InvalidArgumentError, match="unknown model preset"):
        llmbench.model_arch("not-a-model")
    # vLLM: usage fraction x blocks x block size.
    points = pd.DataFrame({"t_ns": [1, 2], "vllm:kv_cache_usage_perc": [0.25, 0.5]})
    info = {"vllm:cache_config_info": {"num_gpu_blocks": "27153", "block_size": "16"}}
    kv = server_kv(points, info, None)
    assert kv["kv_tokens"].tolist() == [108612.0, 217224.0]
    assert kv["kv_capacity_tokens"].tolist() == [434448.0, 434448.0]
    # TGI before 2.3: capacity from /info, use from the current-max-tokens gauge.
    points = pd.DataFrame({"t_ns": [1], "tgi_batch_current_max_tokens": [8192.0]})
    kv = server_kv(points, {}, {"info": {"max_batch_total_tokens": 32768}})
    assert kv["kv_usage_frac"].tolist() == [0.25]


def _synthetic_requests():
    ms = 1_000_000
    # Request A: sent at 0 with 10 prompt tokens, chunks of 1 token at 10, 20 ms, done 25.
    # Request B: sent at 5 with 4 prompt tokens, chunk of 2 tokens at 15, done 30.
    req = pd.DataFrame(
        {
            "target": ["t", "t"],
            "t_sched_ns": [0, 5 * ms],
            "t_sent_ns": [0, 5 * ms],
            "t_done_ns": [25 * ms, 30 * ms],
            "n_in": pd.array([10, 4], dtype="Int64"),
        }
    )
    chunks = {
        "offsets": np.array([0, 2, 3], dtype=np.uint64),
        "t_ns": np.array([10 * ms, 20 * ms, 15 * ms], dtype=np.uint64),
        "tokens": np.array([1, 1, 2], dtype=np.uint32),
    }
    return req, chunks


def test_inflight_timeline_by_hand():
    req, chunks = _synthetic_requests()
    tl = inflight_timeline(req, chunks).set_index("t_ns")
    ms = 1_000_000
    want = {
        0: (1, 10),
        5 * ms: (2, 14),
        10 * ms: (2, 15),
        15 * ms: (2, 17),
        20 * ms: (2, 18),
        25 * ms: (1, 6),
        30 * ms: (0, 0),
    }
    for t, (n, tokens) in want.items():
        assert (tl.loc[t, "in_flight"], tl.loc[t, "tokens"]) == (n, tokens), t


def test_stage_energy_and_memory_columns_by_hand():
    ms = 1_000_000
    # One GPU, energy rising 100 J per second (100 W), memory 10 then 20 GiB.
    t = np.arange(0, 2001, 10) * ms
    gpu = pd.DataFrame(
        {
            "t_ns": t,
            "gpu": 0,
            "energy_j": 1000.0 + 100.0 * t / 1e9,
            "mem_used_bytes": np.where(t < 1000 * ms, 10, 20) * 2.0**30,
            "util_gpu_pct": 50.0,
            "power_w": 100.0,
        }
    )
    row = {"t_start_ns": 500 * ms, "t_end_ns": 1500 * ms, "n_out_total": 400, "n_ok": 4}
    out = stage_telemetry({**row, "kv_client_est_tokens_max": 18.0}, gpu, None, 524288)
    assert out["gpu_energy_j"] == pytest.approx(100.0)
    assert out["j_per_output_token"] == pytest.approx(0.25)
    assert out["j_per_request"] == pytest.approx(25.0)
    assert out["gpu_mem_used_max_gib"] == pytest.approx(20.0)
    assert out["gpu_power_mean_w"] == pytest.approx(100.0)
    assert out["kv_bytes_per_token"] == 524288
    assert out["kv_client_est_gib_max"] == pytest.approx(18 * 524288 / 2**30)
    # Without energy-counter readings in the window, power integrated over time: 100 W
    # for 1 s; NaN power rows (read on another cadence) are skipped, not taken as 0 W.
    gpu2 = gpu.assign(energy_j=np.nan)
    gpu2.loc[gpu2.index % 5 != 0, "power_w"] = np.nan
    out = stage_telemetry(row, gpu2, None, None)
    assert out["gpu_energy_j"] == pytest.approx(100.0, rel=1e-6)
    assert out["gpu_power_mean_w"] == pytest.approx(100.0)
    # A counter read once a second still gives the window's energy (interpolated).
    gpu3 = gpu.copy()
    gpu3.loc[gpu3["t_ns"] % (1000 * ms) != 0, "energy_j"] = np.nan
    out = stage_telemetry(row, gpu3, None, None)
    assert out["gpu_energy_j"] == pytest.approx(100.0)


def test_without_nvml_the_sampler_says_so_and_sweeps_run_on(sim):
    try:
        llmbench.list_gpus()
    except llmbench.NvmlUnavailableError:
        pass
    else:
        pytest.skip("this machine has an NVIDIA driver")
    with pytest.raises(llmbench.NvmlUnavailableError, match="no NVIDIA driver"):
        llmbench.GpuSampler(period_ms=1)
    with pytest.warns(RuntimeWarning, match="GPU telemetry off"):
        res = llmbench.run_sweep(
            sim.target(),
            batch_sizes=[2],
            requests_per_stage=4,
            max_tokens=4,
            gpu=True,
            progress=False,
        )
    assert res.summary.iloc[0]["n_ok"] == 4
    assert not any(c.startswith("gpu_") for c in res.summary.columns)
    assert res.gpu is None
    assert any("GPU telemetry off" in w for w in res.manifest["warnings"])


def test_kv_cache_command_on_the_default_target(tmp_path):
    r = run_cli(
        "kv-cache",
        "--batch-sizes",
        "1,8",
        "--requests",
        "8",
        "--max-tokens",
        "8",
        "--out",
        str(tmp_path),
        "--quiet",
        "--metrics-period",
        "50",
    )
    assert r.returncode == 0, r.stderr
    data = json.loads((tmp_path / "gpu_memory_data.json").read_text())
    assert (tmp_path / "gpu_memory_timeline.png").stat().st_size > 10_000
    assert data["kv"]["model_arch"]["bytes_per_token"] == 524288
    assert [s["batch_size"] for s in data["stages"]] == [1, 8]
    est = data["inflight_estimate"]["llmbench-sim"]
    assert max(est["in_flight"]) == 8
    assert est["kv_bytes"][est["tokens"].index(max(est["tokens"]))] == max(est["tokens"]) * 524288
    # The scripted server's own gauges were scraped on the same clock.
    sm = data["server_metrics"]
    assert max(sm["llmbench_sim_running"]) >= 1
    assert (
        data["summary"][1]["kv_client_est_tokens_max"]
        > data["summary"][0]["kv_client_est_tokens_max"]
    )
    # The engine's running estimate (1 ms bins) against the exact timeline of the records.
    for stage, row in zip(data["stages"], data["summary"], strict=True):
        t = np.asarray(est["t_ns"])
        window = (t >= stage["t_start_ns"]) & (t <= stage["t_end_ns"])
        exact = max(np.asarray(est["tokens"])[window])
        assert 0.9 * exact <= row["kv_client_est_tokens_max"] <= exact


def test_timeline_figure_data(sim):
    from llmbench.studies.kv_cache import timeline_figure

    res = llmbench.run_sweep(
        sim.target(),
        batch_sizes=[1, 4],
        requests_per_stage=4,
        max_tokens=6,
        server_metrics=False,
        model_arch="llama-2-7b",
        progress=False,
    )
    fig = timeline_figure(res)
    ax_mem, ax_kv, ax_req = fig.axes
    if res.gpu is None:
        assert "no GPU telemetry" in ax_mem.texts[0].get_text()
    assert ax_kv.get_ylabel() == "KV cache (GiB)"
    (line,) = ax_kv.get_lines()
    tl = res.kv_timeline()
    assert max(line.get_ydata()) == pytest.approx(tl["kv_gib"].max())
    (req_line,) = ax_req.get_lines()
    assert max(req_line.get_ydata()) == 4
    assert ax_req.get_xlabel() == "time since start (s)"
