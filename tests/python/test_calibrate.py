"""`llmbench calibrate`: the client's own error against the scripted server's truth."""

from __future__ import annotations

import json

import llmbench
from conftest import run_cli


def test_calibration_compares_every_chunk_with_the_truth():
    cal = llmbench.calibrate(concurrency=(1, 4), itl_ms=(5,), tokens=8, requests_per_point=8)
    t = cal.table
    assert list(t["concurrency"]) == [1, 4]
    assert (t["checked_requests"] == 8).all() and (t["requests_ok"] == 8).all()
    # A chunk cannot arrive before the server sent it; on an idle host the lag is small.
    assert (t["ttft_err_p50_ms"] >= 0).all() and (t["chunk_lag_p50_ms"] >= 0).all()
    assert (t["ttft_err_p50_ms"] < 20).all()
    # The statement names, per token interval, the most streams the table marks within
    # the tolerance (or says there is none), and each row's mark follows its p99s.
    within = (t["ttft_err_p99_ms"] <= 1.0) & (t["chunk_lag_p99_ms"] <= 1.0)
    assert (t["within"] == within).all()
    best = t[within]["concurrency"].max() if within.any() else None
    assert cal.max_streams_within == {5.0: best}
    expected = f"{best} streams at 5 ms/token" if best else "no point at 5 ms/token"
    assert expected in cal.statement
    # The health signals a real run reports are calibrated beside the errors.
    assert (t["send_lag_p99_ms"] >= 0).all() and (t["client_task_lag_p99_ms"] >= 0).all()
    assert ((t["client_cpu_share"] >= 0) & (t["client_cpu_share"] <= 1.5)).all()
    assert set(cal.max_streams_within) == {5.0}
    json.dumps(cal.to_dict())


def test_calibrate_command_writes_its_report(tmp_path):
    remembered = tmp_path / "remembered.json"
    r = run_cli(
        "calibrate",
        "--concurrency",
        "2",
        "--itl-ms",
        "5",
        "--tokens",
        "4",
        "--out",
        str(tmp_path),
        env={"LLMBENCH_CALIBRATION": str(remembered)},
    )
    assert r.returncode == 0, r.stderr
    data = json.loads((tmp_path / "calibration.json").read_text())
    assert data["table"][0]["concurrency"] == 2 and "within" in data["statement"]
    # Kept for later runs' client-limit warnings.
    assert json.loads(remembered.read_text()) == data
    assert str(remembered) in r.stdout
