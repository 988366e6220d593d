"""Measurement fidelity: the server's truth over HTTP on the machine clock, the client's
health in every stage, warnings near the calibrated limit, compact records, parse speed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
import warnings

import llmbench
import numpy as np
import pytest
from conftest import free_port, sim_process
from llmbench import _core


def _sweep(sim: llmbench.SimServer) -> llmbench.Results:
    """Two short stages (1 and 8 streams) against the in-process scripted server."""
    return llmbench.run_sweep(
        sim.target("chat"),
        batch_sizes=[1, 8],
        requests_per_stage=16,
        max_tokens=8,
        progress=False,
        server_metrics=False,
    )


def test_truth_of_a_server_in_another_process_matches_every_chunk():
    port = free_port()
    server = sim_process(
        port, "--ttft-ms", "20", "--itl-ms", "3", "--record-truth", "1", "--for-seconds", "120"
    )
    try:
        target = llmbench.OpenAI(f"http://127.0.0.1:{port}", model="llmbench-sim", api="chat")
        res = llmbench.run_sweep(
            target, batch_sizes=[4], requests_per_stage=12, max_tokens=10, progress=False
        )
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/llmbench/truth") as r:
            truth = json.load(r)
    finally:
        server.terminate()
        server.wait(timeout=20)
    by_id = {t["request_id"]: t for t in truth["records"]}
    shift = res.manifest["clock"]["monotonic_anchor_ns"] - truth["monotonic_anchor_ns"]
    offsets, times = res.chunk_arrays["offsets"], res.chunk_arrays["t_ns"]
    checked = 0
    for i, row in res.all_requests.reset_index(drop=True).iterrows():
        t = by_id[int(row["id"])]  # every request, warm-up included, has its truth
        got = times[int(offsets[i]) : int(offsets[i + 1])].astype(np.int64) + shift
        sent = np.asarray(t["chunk_times"], dtype=np.int64)
        assert len(got) == len(sent) == 10
        # On one machine clock a chunk is never seen before the server sent it, and on
        # loopback it is seen well within a millisecond of it (median over the stream).
        assert (got - sent).min() > -50_000, (got - sent).min()
        assert np.median(got - sent) < 1_000_000, (got - sent).tolist()
        checked += 1
    assert checked == 13


def test_truth_endpoint_says_when_recording_is_off(sim):
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(sim.url + "/llmbench/truth")
    assert e.value.code == 404 and b"record_truth" in e.value.read()


def test_every_stage_reports_the_clients_health(sim):
    s = _sweep(sim).summary
    # The probe's lags are a distribution: ordered, and the process did use CPU.
    assert (0 <= s["client_task_lag_p50_ms"]).all()
    assert (s["client_task_lag_p50_ms"] <= s["client_task_lag_p99_ms"]).all()
    assert (s["client_task_lag_p99_ms"] <= s["client_task_lag_max_ms"]).all()
    assert (s["client_cpu_s"] > 0).all() and (s["client_cpu_share"] > 0).all()
    # The cores this process may run on, as the OS says.
    assert (s["client_cores"] == len(os.sched_getaffinity(0))).all()
    # The verdict follows its reasons: trustworthy exactly when there are none, and each
    # reason names the limit it broke.
    assert ((s["client_trustworthy"] == 1.0) == (s["client_health"] == "")).all()
    for health, lag in zip(s["client_health"], s["client_task_lag_p99_ms"], strict=True):
        assert ("task lag" in health) == (lag > 1.0), (health, lag)
    assert (s["itl_exact_percentiles"] == 1).all()
    # No calibration on record here: the load ratio is unknown, and nothing warns of it.
    assert s["client_load_vs_calibration"].isna().all()


def test_a_load_near_the_calibrated_limit_warns(sim, tmp_path, monkeypatch):
    cal = {
        "tolerance_ms": 1.0,
        "max_streams_within": {"5.0": 4, "1.0": 2},
        "max_tok_s_within": 1e9,
    }
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps(cal))
    monkeypatch.setenv("LLMBENCH_CALIBRATION", str(path))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = _sweep(sim)
    ratio = res.summary["client_load_vs_calibration"]
    # 5 ms per token: compared with the 4 streams calibrated at 5 ms.
    assert ratio.iloc[0] < 0.8
    assert 1.5 < ratio.iloc[1] <= 2.0
    limit = [w for w in caught if issubclass(w.category, llmbench.ClientLimitWarning)]
    assert any("beyond the calibrated limit" in str(w.message) for w in limit)
    assert any("calibrated limit" in w for w in res.manifest["warnings"])
    # One verdict per stage: beyond the calibrated limit is not trustworthy, in the columns
    # as in the warning.
    beyond = res.summary.iloc[1]
    assert beyond["client_trustworthy"] == 0.0
    assert "load is" in beyond["client_health"]
    # Warnings are one plain line, never a line of llmbench's source.
    assert all(w.filename == "llmbench" and w.lineno == 0 for w in limit)


def test_warnings_print_one_plain_line(tmp_path):
    cal = {"tolerance_ms": 1.0, "max_streams_within": {"1.0": 1}, "max_tok_s_within": 1e9}
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps(cal))
    script = textwrap.dedent(
        """
        import llmbench
        with llmbench.SimServer(ttft_ms=5, itl_ms=5) as sim:
            llmbench.run_sweep(sim.target(), batch_sizes=[4], requests_per_stage=8,
                               max_tokens=4, progress=False)
        """
    )
    r = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "LLMBENCH_CALIBRATION": str(path)},
    )
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert lines and all(ln.startswith("llmbench:0: ClientLimitWarning: ") for ln in lines), lines


def test_calibrate_remembers_its_result_for_later_runs(tmp_path, monkeypatch):
    from llmbench.columns.client_health import default_calibration_path, load_calibration
    from llmbench.studies.calibrate import save_default

    monkeypatch.setenv("LLMBENCH_CALIBRATION", str(tmp_path / "remembered.json"))
    cal = llmbench.calibrate(concurrency=(1,), itl_ms=(5,), tokens=4, requests_per_point=4)
    path = save_default(cal)
    assert path == default_calibration_path()
    assert str(path) == os.environ["LLMBENCH_CALIBRATION"]
    assert load_calibration()["max_streams_within"] == {"5.0": cal.max_streams_within[5.0]}


@pytest.mark.parametrize("api", ["chat", "completions", "tgi"])
def test_parse_speed_counts_every_token(api):
    for read_bytes in (0, 5, 16384):
        r = _core.parse_speed(api, 20, 64, read_bytes)
        assert r["tokens"] == 20 * 64
        assert r["seconds"] > 0 and r["tokens_per_s"] > 0
    with pytest.raises(llmbench.InvalidArgumentError):
        _core.parse_speed("grpc", 1, 1, 0)


def test_record_files_keep_plain_chunk_arrays(sim, tmp_path):
    llmbench.run_sweep(
        sim.target("completions"),
        batch_sizes=[2],
        requests_per_stage=4,
        max_tokens=5,
        progress=False,
        out_dir=tmp_path,
    )
    # Any Arrow reader opens the file: plain lists of chunk gaps and token counts.
    import pyarrow.ipc

    (path,) = tmp_path.glob("requests_*.arrows")
    table = pyarrow.ipc.open_stream(path.read_bytes()).read_all()
    rec = table.slice(len(table) - 1).to_pylist()[0]
    assert len(rec["chunk_dt_ns"]) == len(rec["chunk_tokens"]) == 5
    assert all(dt >= 0 for dt in rec["chunk_dt_ns"])
    assert rec["chunk_tokens"] == [1] * 5
    # First: ns from the send to the first chunk; then the gaps.
    assert rec["t_sent_ns"] + sum(rec["chunk_dt_ns"]) == rec["t_last_ns"]
    assert rec["t_sent_ns"] + rec["chunk_dt_ns"][0] == rec["t_first_ns"]
