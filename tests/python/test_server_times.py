"""The server's own queue, prefill and decode times per stage, from its histograms:
known answers on hand-made histograms, the captured vLLM 0.24 `/metrics` replayed, and a
sweep of the scripted server, whose times are scripted."""

from __future__ import annotations

import json
import math
from pathlib import Path

import llmbench
import numpy as np
import pandas as pd
import pytest
from llmbench import _core
from llmbench.columns import server_times

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def test_quantiles_interpolate_inside_their_bucket_as_histogram_quantile_does():
    bounds = np.array([0.1, 0.2, 0.4, np.inf])
    cumulative = np.array([10.0, 20.0, 20.0, 24.0])
    q = server_times.quantile
    assert q(bounds, cumulative, 0.25) == pytest.approx(0.06)  # rank 6 of 10 in [0, 0.1]
    assert q(bounds, cumulative, 0.5) == pytest.approx(0.12)  # rank 12: 2 of 10 in (0.1, 0.2]
    # Rank 22 lies in the +Inf bucket: the highest finite bound.
    assert q(bounds, cumulative, 0.9) == pytest.approx(0.4)
    assert math.isnan(q(bounds, np.zeros(4), 0.5))


def _points(*texts: str) -> pd.DataFrame:
    rows = []
    for i, text in enumerate(texts):
        values = json.loads(_core.parse_metrics(text))["values"]
        rows.append({"t_ns": (i + 1) * 1_000_000_000, **values})
    return pd.DataFrame(rows)


def test_captured_vllm_0_24_metrics_give_the_means_its_sums_and_counts_say():
    text = (FIXTURES / "vllm_0_24_metrics.txt").read_text()
    values = json.loads(_core.parse_metrics(text))["values"]
    # A stage from an empty server to the capture: its share is the whole capture.
    empty = {k: 0.0 for k in values}
    pts = pd.DataFrame([{"t_ns": 1, **empty}, {"t_ns": 3, **values}])
    cols = server_times.stage_columns(pts, 2, 2)
    for q, fam in [
        ("queue", "vllm:request_queue_time_seconds"),
        ("prefill", "vllm:request_prefill_time_seconds"),
        ("decode", "vllm:request_decode_time_seconds"),
        ("ttft", "vllm:time_to_first_token_seconds"),
        ("itl", "vllm:inter_token_latency_seconds"),
        ("e2e", "vllm:e2e_request_latency_seconds"),
    ]:
        want = 1e3 * values[f"{fam}_sum"] / values[f"{fam}_count"]
        assert cols[f"server_{q}_mean_ms"] == pytest.approx(want), q
        assert cols[f"server_{q}_p50_ms"] <= cols[f"server_{q}_p99_ms"], q
    assert server_times.sources(pts)["itl"] == "vllm:inter_token_latency_seconds"
    assert cols["server_step_tokens_mean"] > 0
    assert cols["server_preemptions"] == values["vllm:num_preemptions_total"]
    # Without scrapes around it, a stage has NaN, never a guess.
    assert all(math.isnan(v) for v in server_times.stage_columns(pts, 10, 20).values())


def test_a_sweep_of_the_scripted_server_reads_back_its_scripted_times():
    # One slot for two clients: every request but the first waits for the other's whole
    # stream. Prefill is the scripted 20 ms; decode 7 gaps of 2 ms.
    with llmbench.SimServer(ttft_ms=20, itl_ms=2, max_batch=1) as sim:
        res = llmbench.run_sweep(
            sim.target(),
            batch_sizes=[1, 2],
            requests_per_stage=12,
            max_tokens=8,
            warmup_requests=0,
            cooldown_s=0.3,
            server_metrics=50,
            progress=False,
        )
    s = res.summary.set_index("batch_size")
    assert res.manifest["server_times"]["sim-chat"]["queue"] == "vllm:request_queue_time_seconds"
    for b in (1, 2):
        row = s.loc[b]
        assert row["server_prefill_mean_ms"] == pytest.approx(20, abs=2), b
        assert row["server_decode_mean_ms"] == pytest.approx(14, abs=2), b
        # The server's TTFT is its queue plus its prefill, to the microsecond.
        parts = row["server_queue_mean_ms"] + row["server_prefill_mean_ms"]
        assert row["server_ttft_mean_ms"] == pytest.approx(parts, abs=0.01), b
        # The client waits at least what the server says, and little more on loopback.
        assert 0 <= row["ttft_mean_ms"] - row["server_ttft_mean_ms"] < 5, b
    # Alone, a request never queues; with two clients and one slot, it waits for the
    # other's stream (~34 ms) nearly every time.
    assert s.loc[1, "server_queue_mean_ms"] < 1
    assert s.loc[2, "server_queue_mean_ms"] > 20
    assert s.loc[2, "server_waiting_peak"] >= 1


def test_the_client_server_gap_is_a_column_and_flags_what_nothing_explains():
    summary = pd.DataFrame(
        {
            "target": ["a", "a", "a", "b"],
            "stage": [0, 1, 2, 0],
            "ttft_mean_ms": [21.0, 52.0, 90.0, 10.0],
            "server_ttft_mean_ms": [20.0, 50.5, 60.0, 12.5],
            "client_task_lag_p99_ms": [0.1, 0.2, 0.3, 0.1],
        }
    )
    messages = server_times.check_gap(summary, tolerance_ms=1.0)
    assert summary["ttft_gap_ms"].tolist() == pytest.approx([1.0, 1.5, 30.0, -2.5])
    # Stage 1's 1.5 ms is within the lightest stage's 1 ms + lag + tolerance; stage 2's
    # 30 ms is not; target b's client saw less than its server: impossible.
    assert len(messages) == 2, messages
    assert messages[0].startswith("a stage 2") and "30.0 ms" in messages[0]
    assert messages[1].startswith("b stage 0") and "below the server's own" in messages[1]
