"""SLOs, goodput and capacity search, with known answers."""

from __future__ import annotations

import llmbench
import pytest

# The per-stage SLO arithmetic (censored percentiles, failures in the denominator) is
# tested with known answers where it lives, in `src/metrics/slo.rs`.


def test_slo_columns_on_a_scripted_stage(sim):
    # Scripted: TTFT 40 ms, 5 ms per token, 10 tokens: TPOT 5 ms, E2E 85 ms.
    res = llmbench.run_sweep(
        sim.target(),
        batch_sizes=[2],
        requests_per_stage=6,
        max_tokens=10,
        progress=False,
        slo={"ttft_ms": 60, "tpot_ms": 7, "itl_ms": 12, "e2e_ms": 120, "percentile": 90},
    )
    row = res.summary.iloc[0]
    assert row["slo_met"] and row["n_good"] == 6 and row["good_fraction"] == 1.0
    assert row["goodput_req_s"] == pytest.approx(row["req_s"])
    assert 40 <= row["slo_ttft_p90_ms"] <= 60
    res = llmbench.run_sweep(
        sim.target(),
        batch_sizes=[2],
        requests_per_stage=4,
        max_tokens=10,
        progress=False,
        slo=llmbench.SLO(tpot_ms=3),
    )
    row = res.summary.iloc[0]
    assert not row["slo_met"] and row["n_good"] == 0 and row["goodput_req_s"] == 0.0
    assert res.manifest["slo"]["limits_ms"] == {"tpot": 3.0}


def test_bad_slos():
    with pytest.raises(llmbench.InvalidArgumentError, match="at least one limit"):
        llmbench.SLO()
    with pytest.raises(llmbench.InvalidArgumentError, match="unknown SLO keys"):
        llmbench.SLO.of({"ttft": 5})
    with pytest.raises(llmbench.InvalidArgumentError, match="positive"):
        llmbench.SLO(ttft_ms=-1)


def test_capacity_search_finds_the_configured_batch_capacity():
    # Six requests run at once; a seventh waits a whole request (10 + 9 x 1 ms), so its
    # TTFT goes from ~10 ms to ~29 ms: a 20 ms p99 limit holds up to exactly 6.
    with llmbench.SimServer(ttft_ms=10, itl_ms=1, max_batch=6) as sim:
        res = llmbench.find_capacity(
            sim.target(),
            {"ttft_ms": 20, "percentile": 99},
            mode="batch_size",
            start=1,
            max_tokens=10,
            server_metrics=False,
        )
    assert res.capacity == 6 and res.first_failing == 7
    assert [s["value"] for s in res.steps] == [1, 2, 4, 8, 6, 7]
    assert len(res.trials) == 6 * 3 and "slo_met" in res.trials
    assert res.statement.startswith("capacity 6 requests in flight")


def test_capacity_search_by_rate_brackets_the_saturation_point():
    # Four slots, ~19 ms per request: constant arrivals saturate near 4 / 0.019 = 210/s.
    with llmbench.SimServer(ttft_ms=10, itl_ms=1, max_batch=4) as sim:
        res = llmbench.find_capacity(
            sim.target(),
            {"ttft_ms": 25, "percentile": 90},
            mode="rate",
            start=50,
            limit=800,
            trials=1,
            requests_per_trial=200,
            tolerance=0.1,
            max_tokens=10,
            arrival="constant",
            server_metrics=False,
        )
    assert res.capacity is not None and res.first_failing is not None
    assert 120 <= res.capacity <= 230, res.steps
    assert res.first_failing <= res.capacity * 1.1 + 1e-9
    assert all(s["trials"] == 1 for s in res.steps)
