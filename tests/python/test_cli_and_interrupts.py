"""The `llmbench` command (outputs, errors), Ctrl-C handling and interpreter exit."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time

import llmbench
import pandas as pd
from conftest import REPO, popen, run_cli, sim_process

SUMMARY_COLUMNS = {
    "batch_size",
    "n_ok",
    "n_failed",
    "ttft_p50_ms",
    "ttft_p99_ms",
    "itl_mean_ms",
    "tpot_mean_ms",
    "e2e_p50_ms",
    "output_tok_s",
    "total_tok_s",
    "req_s",
    "usd_per_1m_output_tokens",
}


def test_metrics_on_the_embedded_default_target(tmp_path):
    out = tmp_path / "metrics_study"
    r = run_cli(
        "metrics",
        "--batch-sizes",
        "1,2,4",
        "--requests",
        "6",
        "--max-tokens",
        "8",
        "--out",
        str(out),
        "--quiet",
    )
    assert r.returncode == 0, r.stderr
    assert "embedded naive baseline" in r.stderr
    # Why its stages may be flagged, and what to do, in one plain line; every warning is
    # one plain line too, never a line of llmbench's source.
    assert "pass its --url" in r.stderr
    for line in r.stderr.splitlines():
        assert "_finish(" not in line and not line.startswith("    "), line
    for name in (
        "metrics_data.json",
        "metrics_summary.csv",
        "throughput_vs_batch_size.png",
        "ttft_vs_batch_size.png",
        "cost_vs_batch_size.png",
    ):
        assert (out / name).is_file(), name
    summary = pd.read_csv(out / "metrics_summary.csv")
    assert SUMMARY_COLUMNS <= set(summary.columns)
    assert summary["batch_size"].tolist() == [1, 2, 4]
    assert (summary["n_ok"] == 6).all()
    data = json.loads((out / "metrics_data.json").read_text())
    assert data["manifest"]["llmbench_version"]
    server = data["manifest"]["servers"]["baseline-tiny"]
    assert server["models"]["data"][0]["id"] == "tiny"
    assert server["info"]["server"] == "llmbench-baseline"
    # The baseline reports exact token counts, and every request produced --max-tokens.
    assert (summary["n_out_source"] == "server_usage").all()
    assert all(r["n_out"] == 8 for r in data["requests"])
    assert len([r for r in data["requests"] if not r["warmup"]]) == 18
    assert "output_tok_s" in r.stdout  # the summary table


def test_metrics_against_a_separately_started_server(tmp_path):
    port = 18765
    sim = sim_process(port, "--ttft-ms", "10", "--itl-ms", "1", "--for-seconds", "60")
    try:
        r = run_cli(
            "metrics",
            "--url",
            f"http://127.0.0.1:{port}",
            "--model",
            "llmbench-sim",
            "--api",
            "tgi",
            "--batch-sizes",
            "2",
            "--requests",
            "4",
            "--max-tokens",
            "5",
            "--out",
            str(tmp_path),
            "--quiet",
        )
        assert r.returncode == 0, r.stderr
        summary = pd.read_csv(tmp_path / "metrics_summary.csv")
        assert summary["n_ok"].tolist() == [4]
        assert summary["n_out_source"].tolist() == ["server_usage"]
    finally:
        sim.send_signal(signal.SIGINT)
        sim.wait(timeout=10)
    assert sim.returncode == 0


def test_version():
    r = run_cli("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"llmbench {llmbench.__version__}"


def test_cli_errors_are_one_clear_line():
    r = run_cli("metrics", "--url", "http://127.0.0.1:9", "--model", "m", "--quiet")
    assert r.returncode == 1
    assert r.stderr.startswith("llmbench: error: cannot reach")
    assert "Traceback" not in r.stderr
    r = run_cli("metrics", "--batch-sizes", "0,1")
    assert r.returncode == 2 and "--batch-sizes: expected integers >= 1" in r.stderr
    r = run_cli("metrics", "--extra-body", "{not json")
    assert r.returncode == 2 and "JSON" in r.stderr


INTERRUPTED_SWEEP = textwrap.dedent(
    """
    import sys, llmbench
    with llmbench.SimServer(ttft_ms=20, itl_ms=20) as sim:
        try:
            llmbench.run_sweep(sim.target(), batch_sizes=[4, 8], requests_per_stage=10_000,
                               max_tokens=50, out_dir=sys.argv[1], progress=False)
        except llmbench.SweepInterrupted as stop:
            print(stop, flush=True)
            print("kept", len(stop.results.requests), flush=True)
            sys.exit(3)
    """
)


def test_ctrl_c_cancels_promptly_and_keeps_every_completed_request(tmp_path):
    proc = popen(
        [sys.executable, "-c", INTERRUPTED_SWEEP, str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(4)  # requests take ~1 s each: several have completed
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    elapsed = time.monotonic() - sent
    assert proc.returncode == 3, err
    assert elapsed < 5, f"took {elapsed:.1f} s to stop"
    kept = int(out.split()[-1])
    assert kept >= 4
    # Every completed request is on disk: live records and the saved results agree.
    live = llmbench.records.read_file(tmp_path / "requests_sim-chat.arrows")
    completed = live[~live["warmup"] & (live["error_kind"] != "cancelled")]
    data = json.loads((tmp_path / "metrics_data.json").read_text())
    saved_ok = [r for r in data["requests"] if not r["warmup"] and r["ok"]]
    assert len(completed) == len(saved_ok) >= 4
    assert data["manifest"]["interrupted"] is True
    assert data["summary"][0]["interrupted"] is True
    # The stop returned without drawing (that took most of a stop's time), and said how to
    # draw them; drawing them from what was saved gives the whole run's files.
    assert "llmbench report" in out
    assert not (tmp_path / "report.html").exists() and not list(tmp_path.glob("*.png"))
    written = llmbench.Results.load(tmp_path).save(tmp_path)
    assert tmp_path / "report.html" in written and list(tmp_path.glob("*.png"))


def test_cli_ctrl_c_exits_130_with_results(tmp_path):
    proc = popen(
        [
            sys.executable,
            "-m",
            "llmbench.cli",
            "metrics",
            "--requests",
            "100000",
            "--quiet",
            "--out",
            str(tmp_path),
            "--batch-sizes",
            "4",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    time.sleep(4)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "sweep interrupted" in err
    assert (tmp_path / "metrics_data.json").is_file()


ASYNC_THEN_EXIT = textwrap.dedent(
    """
    import asyncio, llmbench
    with llmbench.SimServer(ttft_ms=1, itl_ms=1) as sim:
        res = asyncio.run(llmbench.run_sweep_async(sim.target(), batch_sizes=[2],
                                                   requests_per_stage=2, max_tokens=2))
    print(int(res.summary.iloc[0]["n_ok"]))
    """
)


def test_interpreter_exits_cleanly_right_after_an_async_call():
    # pyo3-async-runtimes can abort the interpreter at exit while a future settles
    # (its issue #40): run the pattern many times.
    for _ in range(8):
        r = subprocess.run(
            [sys.executable, "-c", ASYNC_THEN_EXIT], capture_output=True, text=True, timeout=60
        )
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == "2"


def test_rate_sweep_and_capacity_commands(tmp_path):
    r = run_cli(
        "metrics",
        "--embedded",
        "sim",
        "--rates",
        "20,60",
        "--arrival",
        "constant",
        "--requests",
        "20",
        "--max-tokens",
        "4",
        "--out",
        str(tmp_path / "m"),
        "--quiet",
        "--slo-ttft-ms",
        "500",
    )
    assert r.returncode == 0, r.stderr
    summary = pd.read_csv(tmp_path / "m" / "metrics_summary.csv")
    assert summary["target_rate"].tolist() == [20.0, 60.0]
    assert summary["slo_met"].all() and (summary["good_fraction"] == 1.0).all()
    assert (tmp_path / "m" / "throughput_vs_rate.png").is_file()
    r = run_cli(
        "capacity",
        "--embedded",
        "sim",
        "--mode",
        "batch_size",
        "--slo-ttft-ms",
        "40",
        "--sim-max-batch",
        "4",
        "--max-tokens",
        "8",
        "--trials",
        "1",
        "--out",
        str(tmp_path / "c"),
        "--quiet",
        "--metrics-period",
        "0",
    )
    assert r.returncode == 0, r.stderr
    data = json.loads((tmp_path / "c" / "capacity.json").read_text())
    assert data["capacity"] == 4 and data["first_failing"] == 5
    assert "capacity 4 requests in flight" in r.stdout
    r = run_cli("capacity", "--quiet")
    assert r.returncode == 2 and "--slo" in r.stderr


def test_help_of_the_command_and_of_every_subcommand_prints():
    # argparse %-formats every help string: a bare "95% intervals" in one subcommand's
    # help made `llmbench --help` itself fail with a TypeError.
    from llmbench.cli.options import build_parser

    parser = build_parser()
    assert "ab" in parser.format_help()
    (subcommands,) = (a for a in parser._actions if hasattr(a, "choices") and a.choices)
    for name, sub in subcommands.choices.items():
        assert sub.format_help().startswith("usage: "), name
    top = run_cli("--help", timeout=60)
    assert top.returncode == 0 and "metrics" in top.stdout, top.stderr
