"""Known-answer tests: sweeps against the scripted server, whose timings are set.

Tolerances: the scripted server's deadlines are absolute, but its tokio timer rounds each
sleep up to the next millisecond and a loaded 2-core CI machine can wake it late; it is
never early. So TTFT is checked in [scripted, scripted + 10 ms], mean ITL within 0.5 ms,
token counts and the arithmetic between columns exactly. How closely the client's times
follow what the server really sent is checked against the server's own record of it
(`record_truth`), which does not depend on the machine's load.
"""

from __future__ import annotations

import math

import llmbench
import numpy as np
import pytest

TTFT_MS, ITL_MS, N_OUT = 40.0, 5.0, 20
TTFT_SLACK_MS = 10.0
ITL_TOL_MS = 0.5


@pytest.mark.parametrize("api", ["chat", "completions", "tgi"])
def test_sweep_reports_the_scripted_timings(sim, api):
    prompts = ["one two three", "four five six seven eight"]
    res = llmbench.run_sweep(
        sim.target(api),
        batch_sizes=[1, 4],
        requests_per_stage=8,
        max_tokens=N_OUT,
        prompts=prompts,
        gpu_hourly_usd=3.6,
        progress=False,
    )
    s = res.summary.set_index("batch_size")
    assert list(s.index) == [1, 4]
    for bs, row in s.iterrows():
        assert row["n_ok"] == 8 and row["n_failed"] == 0
        assert TTFT_MS <= row["ttft_p50_ms"] <= TTFT_MS + TTFT_SLACK_MS, row["ttft_p50_ms"]
        assert TTFT_MS <= row["ttft_min_ms"]
        assert abs(row["itl_mean_ms"] - ITL_MS) <= ITL_TOL_MS
        # One token per chunk: per-token ITL mean and per-request TPOT agree exactly.
        assert row["itl_mean_ms"] == pytest.approx(row["tpot_mean_ms"], rel=1e-9)
        e2e = TTFT_MS + (N_OUT - 1) * ITL_MS
        assert e2e <= row["e2e_p50_ms"] <= e2e + TTFT_SLACK_MS + 2
        # Throughput against the script: `bs` requests at a time, each streaming for
        # TTFT + (N_OUT - 1) x ITL, so the stage can deliver at most bs x N_OUT tokens in
        # that time; the client's own gaps between waves cost at most a few per cent.
        scripted = bs * N_OUT / (e2e / 1e3)
        assert 0.93 * scripted <= row["output_tok_s"] <= scripted, (row["output_tok_s"], scripted)
        # Throughput and cost columns follow from the other columns exactly.
        assert row["output_tok_s"] == pytest.approx(8 * N_OUT / row["duration_s"])
        assert row["req_s"] == pytest.approx(8 / row["duration_s"])
        n_in = row["n_in_total"]
        assert row["total_tok_s"] == pytest.approx((8 * N_OUT + n_in) / row["duration_s"])
        assert row["usd_per_1m_output_tokens"] == pytest.approx(
            3.6 / 3600 / row["output_tok_s"] * 1e6
        )
        assert row["achieved_concurrency"] == pytest.approx(bs, rel=0.15)
    req = res.requests
    assert len(req) == 16 and req["ok"].all()
    assert (req["n_out"] == N_OUT).all() and (req["n_out_streamed"] == N_OUT).all()
    # The scripted server counts prompt words: the records carry its usage.
    words = req["prompt_index"].map(lambda i: len(prompts[i].split()))
    assert (req["n_in"] == words).all()
    expected_source = "tgi_tokens" if api == "tgi" else "continuous_usage"
    assert set(req["chunk_token_source"]) == {expected_source}
    assert set(req["n_out_source"]) == {"server_usage"}
    assert len(res.warmup) == 1 and res.warmup["ok"].all()


def test_multi_token_chunks_give_zero_itl_samples_and_exact_tpot():
    with llmbench.SimServer(ttft_ms=20, itl_ms=2, tokens_per_chunk=4, record_truth=True) as sim:
        res = llmbench.run_sweep(
            sim.target("chat"),
            batch_sizes=[2],
            requests_per_stage=4,
            max_tokens=16,
            progress=False,
        )
        truth = sim.take_truth().set_index("request_id")
    req = res.requests
    assert (req["n_chunks"] == 4).all()
    for rid, t_sent in zip(req["id"], req["t_sent_ns"], strict=True):
        ch = res.chunks(rid)
        assert list(ch["tokens"]) == [4, 4, 4, 4]
        # Chunks leave every 4 tokens x 2 ms, give or take the server's timer waking late
        # on a loaded machine (the next gap is then shorter: deadlines are absolute).
        gaps = np.diff(ch["t_ms"].to_numpy())
        assert np.all(np.abs(gaps - 8.0) < 6.0), gaps
        assert abs(gaps.sum() - 24.0) < 6.0
        # ...and the client sees the gaps the server really made.
        sent_ms = (truth.loc[rid, "chunk_t_ns"].astype(np.int64) - t_sent) / 1e6
        assert np.abs(gaps - np.diff(sent_ms)).max() < 1.0
        tpot_true = (sent_ms[-1] - sent_ms[0]) / 15
        row = req[req["id"] == rid].iloc[0]
        assert row["tpot_ms"] == pytest.approx(tpot_true, abs=0.1)
    row = res.summary.iloc[0]
    # tpot = (t_last - t_first) / 15 = 24 / 15 ms as scripted; mean(itl) equals it exactly.
    assert row["tpot_mean_ms"] == pytest.approx(24 / 15, abs=0.2)
    assert row["itl_mean_ms"] == pytest.approx(row["tpot_mean_ms"], rel=1e-9)
    assert row["itl_p50_ms"] == pytest.approx(2.0, abs=0.5)  # 12 of 15 samples are ~2 ms
    assert row["itl_min_ms"] == 0.0  # the first chunk's extra 3 tokens


def test_natural_stop_before_max_tokens():
    with llmbench.SimServer(ttft_ms=5, itl_ms=1, output_tokens=7) as sim:
        for api, reason in [("chat", "stop"), ("tgi", "eos_token")]:
            res = llmbench.run_sweep(
                sim.target(api),
                batch_sizes=[1],
                requests_per_stage=3,
                max_tokens=50,
                progress=False,
            )
            req = res.requests
            assert (req["n_out"] == 7).all(), api
            assert set(req["finish_reason"]) == {reason}
            assert (req["n_out_streamed"] == 7).all()


def test_queueing_beyond_capacity_raises_ttft():
    with llmbench.SimServer(ttft_ms=20, itl_ms=2, max_batch=2) as sim:
        res = llmbench.run_sweep(
            sim.target(),
            batch_sizes=[2, 4],
            requests_per_stage=8,
            max_tokens=10,
            progress=False,
        )
    s = res.summary.set_index("batch_size")
    # At 4 in flight with room for 2, half the requests wait a whole request (38 ms).
    assert s.loc[2, "ttft_p99_ms"] < 36  # no queue at 2 in flight: 20 ms, plus any late wake-up
    assert s.loc[4, "ttft_max_ms"] > 55
    assert s.loc[4, "output_tok_s"] == pytest.approx(s.loc[2, "output_tok_s"], rel=0.25)


def test_results_roundtrip_and_plots(sim, tmp_path):
    res = llmbench.run_sweep(
        sim.target(),
        batch_sizes=[1, 2, 4],
        requests_per_stage=4,
        max_tokens=8,
        out_dir=tmp_path,
        progress=False,
    )
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(
        [
            "metrics_data.json",
            "metrics_summary.csv",
            "requests_sim-chat.arrows",
            "throughput_vs_batch_size.png",
            "ttft_vs_batch_size.png",
            "itl_vs_batch_size.png",
            "cost_vs_batch_size.png",
            # The scripted server reports its queue and prefill times.
            "breakdown_vs_batch_size.png",
            "report.html",
        ]
    )
    # The live record file holds every request, warm-up included.
    live = llmbench.records.read_file(tmp_path / "requests_sim-chat.arrows")
    assert len(live) == 1 + 12
    loaded = llmbench.Results.load(tmp_path)
    assert list(loaded.summary["batch_size"]) == [1, 2, 4]
    assert loaded.summary["ttft_p50_ms"].tolist() == pytest.approx(
        res.summary["ttft_p50_ms"].tolist()
    )
    assert len(loaded.requests) == 12 and len(loaded.warmup) == 1
    rid = int(res.requests["id"][0])
    assert loaded.chunks(rid)["t_ms"].tolist() == pytest.approx(res.chunks(rid)["t_ms"].tolist())
    assert loaded.manifest["prompts"]["n"] >= 100
    figs = res.plot()
    assert set(figs) == {"throughput", "ttft", "itl", "cost", "breakdown"}
    ax = figs["throughput"].axes[0]
    (line,) = ax.get_lines()
    assert list(line.get_xdata()) == [1, 2, 4]
    assert list(line.get_ydata()) == pytest.approx(res.summary["output_tok_s"].tolist())
    assert ax.get_xlabel().startswith("batch size")
    # Batch sizes read as people write them, not as powers of two.
    figs["throughput"].canvas.draw()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "4"]
    assert all(t.get_text() == "" for t in ax.get_xticklabels(minor=True))
    ttft_lines = figs["ttft"].axes[0].get_lines()
    assert [ln.get_label() for ln in ttft_lines] == ["sim-chat p50", "sim-chat p99"]
    cost = figs["cost"].axes[0].get_lines()[0]
    assert list(cost.get_ydata()) == pytest.approx(res.summary["usd_per_1m_output_tokens"].tolist())


def test_two_targets_in_one_summary(sim):
    res = llmbench.run_sweep(
        [sim.target("chat"), sim.target("tgi")],
        batch_sizes=[1, 2],
        requests_per_stage=2,
        max_tokens=4,
        progress=False,
    )
    assert list(res.summary["target"]) == ["sim-chat", "sim-chat", "sim-tgi", "sim-tgi"]
    assert set(res.requests["target"]) == {"sim-chat", "sim-tgi"}
    assert len(res.summary["ttft_p50_ms"].dropna()) == 4


def test_duration_bounded_stage_and_censored_percentiles(sim):
    res = llmbench.run_sweep(
        sim.target(),
        batch_sizes=[2],
        stage_duration_s=0.5,
        requests_per_stage=10_000,
        max_tokens=4,
        progress=False,
    )
    row = res.summary.iloc[0]
    # Each request takes ~55 ms; 2 in flight for 0.5 s -> about 18 requests.
    assert 8 <= row["n_ok"] <= 24
    assert math.isfinite(row["ttft_p99_censored_ms"])
    assert row["ttft_p99_censored_ms"] == pytest.approx(row["ttft_p99_ms"])


def test_async_twin(sim):
    import asyncio

    res = asyncio.run(
        llmbench.run_sweep_async(sim.target(), batch_sizes=[1], requests_per_stage=2, max_tokens=4)
    )
    assert res.summary.iloc[0]["n_ok"] == 2
    # The same arguments as run_sweep: rates and an SLO.
    res = asyncio.run(
        llmbench.run_sweep_async(
            sim.target(),
            rates=[50],
            requests_per_stage=5,
            max_tokens=2,
            slo={"ttft_ms": 500},
            progress=False,
        )
    )
    row = res.summary.iloc[0]
    assert row["target_rate"] == 50 and row["slo_met"] and row["n_good"] == 5
    with pytest.raises(llmbench.InvalidArgumentError, match="unexpected keyword"):
        asyncio.run(llmbench.run_sweep_async(sim.target(), batch_size=[1]))


@pytest.mark.parametrize("api", ["chat", "completions", "tgi"])
def test_client_times_match_the_servers_truth(api):
    """Each chunk's client arrival time against when the server really sent it."""
    with llmbench.SimServer(ttft_ms=20, itl_ms=4, record_truth=True) as sim:
        res = llmbench.run_sweep(
            sim.target(api),
            batch_sizes=[1, 8],
            requests_per_stage=16,
            max_tokens=16,
            progress=False,
        )
        truth = sim.take_truth().set_index("request_id")
    req = res.all_requests
    assert set(truth.index) == set(req["id"])
    lags = []
    ttft_err = []
    for _, r in req.iterrows():
        t = truth.loc[r["id"]]
        client = res.chunks(r["id"])
        assert list(client["tokens"]) == list(t["chunk_tokens"])
        c_ns = client["t_ms"].to_numpy() * 1e6 + r["t_sent_ns"]
        lag_ms = (c_ns - t["chunk_t_ns"].astype(np.float64)) / 1e6
        assert (lag_ms > -1e-3).all(), "no chunk is seen before it was sent"
        lags.extend(lag_ms)
        true_ttft = (t["t_first_ns"] - r["t_sent_ns"]) / 1e6
        ttft_err.append(r["ttft_ms"] - true_ttft)
    # Loopback in one process: the client's error is tiny next to any server's timings.
    assert np.median(lags) < 0.5, np.median(lags)
    assert np.median(ttft_err) < 0.5, np.median(ttft_err)


def test_client_tokenizer_counts_when_the_server_reports_no_usage(sim, tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from tiny_model import tokenizer_json

    tok_path = tokenizer_json()
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tok_path))
    prompts = ["The quick brown fox jumps over the lazy dog", "Hello world"]
    target = sim.target("completions", include_usage=False)
    res = llmbench.run_sweep(
        target,
        batch_sizes=[2],
        requests_per_stage=4,
        max_tokens=6,
        prompts=prompts,
        tokenizer=tok_path,
        progress=False,
    )
    req = res.requests
    assert set(req["n_in_source"]) == {"tokenizer"}
    assert set(req["n_out_source"]) == {"tokenizer"}
    assert set(req["chunk_token_source"]) == {"tokenizer"}
    want_in = [
        len(tok.encode(prompts[i], add_special_tokens=False).ids) for i in req["prompt_index"]
    ]
    assert req["n_in"].tolist() == want_in
    # The output is counted whole (the scripted server's first six words), and the chunk
    # counts are apportioned to that total.
    text = " the quick brown fox jumps over"
    n_text = len(tok.encode(text, add_special_tokens=False).ids)
    assert (req["n_out"] == n_text).all()
    assert (req["n_out_streamed"] == n_text).all()
    # Without usage or tokenizer: one token per chunk, flagged.
    res = llmbench.run_sweep(
        target,
        batch_sizes=[1],
        requests_per_stage=2,
        max_tokens=6,
        progress=False,
        out_dir=tmp_path,
    )
    assert set(res.requests["n_out_source"]) == {"one_per_chunk"}
    assert set(res.requests["n_in_source"]) == {"unknown"}
    assert res.requests["n_in"].isna().all()
    assert np.isnan(res.summary.iloc[0]["total_tok_s"])
    # Unknown prompt sizes are saved as null and read back as missing.
    loaded = llmbench.Results.load(tmp_path)
    assert loaded.requests["n_in"].isna().all() and len(loaded.requests) == 2
