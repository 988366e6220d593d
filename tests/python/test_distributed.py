"""Distributed sweeps on a real local Ray cluster (`ray start --head`, started here with a
generated auth token and stopped at the end): the workers' union equals a single-process
run, merged statistics equal those of the union of records, the server sees the stage's
concurrency, open-loop schedules are dealt out exactly, a killed worker's requests are
accounted for as `worker_lost`, and a misconfigured cluster fails before any load."""

from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import llmbench
import numpy as np
import pytest
from llmbench import RayCluster
from llmbench._core import InvalidArgumentError, UnreachableError

ray = pytest.importorskip("ray")

CLUSTER_CPUS = 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def ray_address(tmp_path_factory):
    """A real Ray head on this machine (4 logical CPUs), bound to 127.0.0.1. Token
    authentication is off: the head listens on the loopback only, and Ray reads its auth
    settings when it is imported, before a fixture could give this process the token."""
    folder = tmp_path_factory.mktemp("ray")
    port = _free_port()
    ray_cli = Path(sys.executable).parent / "ray"
    head = subprocess.Popen(
        [
            str(ray_cli),
            "start",
            "--head",
            "--block",
            f"--port={port}",
            f"--num-cpus={CLUSTER_CPUS}",
            "--include-dashboard=false",
            "--disable-usage-stats",
            "--node-ip-address=127.0.0.1",
            f"--temp-dir={folder}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, "RAY_AUTH_MODE": "disabled"},
    )
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or head.poll() is not None:
                raise RuntimeError("the Ray head did not start") from None
            time.sleep(0.5)
    try:
        yield address
    finally:
        if ray.is_initialized():
            ray.shutdown()
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)


def _server_concurrency(truth) -> list[int]:
    """The most requests the server held at once, per burst of activity (stages are apart
    by the cool-down), from its own receive and last-chunk times."""
    starts = truth["t_received_ns"].to_numpy().astype(np.int64)
    ends = truth["t_last_ns"].to_numpy().astype(np.int64)
    order = np.argsort(starts)
    starts, ends = starts[order], ends[order]
    bursts, cur = [], [0]
    for i in range(1, len(starts)):
        if starts[i] - ends[cur].max() > 150_000_000:
            bursts.append(cur)
            cur = []
        cur.append(i)
    bursts.append(cur)
    peaks = []
    for b in bursts:
        ev = sorted(
            [(starts[i], 1) for i in b] + [(ends[i], -1) for i in b], key=lambda e: (e[0], e[1])
        )
        peaks.append(int(np.max(np.cumsum([e[1] for e in ev]))))
    return peaks


def _measured(res):
    r = res.requests
    return r[~r["warmup"]]


@pytest.mark.parametrize("workers", [2, 4])
def test_closed_loop_on_workers_equals_one_process(ray_address, workers):
    settings = dict(
        batch_sizes=[1, 4, 6],
        requests_per_stage=24,
        max_tokens=12,
        warmup_requests=1,
        cooldown_s=0.4,
        server_metrics=False,
        progress=False,
        seed=7,
    )
    with llmbench.SimServer(ttft_ms=15, itl_ms=3, output_tokens=12, record_truth=True) as sim:
        one = llmbench.run_sweep(sim.target(), **settings)
        sim.take_truth()
        res = llmbench.run_sweep(
            sim.target(), cluster=RayCluster(ray_address, workers=workers), **settings
        )
        truth = sim.take_truth()
    a, b = _measured(one), _measured(res)
    # Every request recorded once, with the same prompts per stage and the same counts.
    assert res.requests["id"].is_unique
    assert len(b) == len(a) == 72
    for s in range(3):
        assert sorted(b[b.stage == s].prompt_index) == sorted(a[a.stage == s].prompt_index)
    for col in ("n_requests", "n_ok", "n_out_total", "n_in_total"):
        assert list(res.summary[col]) == list(one.summary[col]), col
    assert list(res.summary["cluster_workers"]) == [1, min(4, workers), min(6, workers)]
    # Merged percentiles are those of the union of the workers' records.
    for s, row in res.summary.set_index("stage").iterrows():
        ttft = b[(b.stage == s) & b.ok].ttft_ms.to_numpy()
        for q in (50, 90, 99):
            assert row[f"ttft_p{q}_ms"] == pytest.approx(np.percentile(ttft, q), rel=1e-9)
        e2e = b[(b.stage == s) & b.ok].e2e_ms.to_numpy()
        assert row["e2e_p50_ms"] == pytest.approx(np.percentile(e2e, 50), rel=1e-9)
    # The server held exactly each stage's batch size (the first burst is the warm-up).
    peaks = _server_concurrency(truth)
    assert peaks[-3:] == [1, 4, 6], peaks
    # (Whether the client kept up is judged per stage from the worst worker; four workers
    # on this 2-core machine may honestly not, so only the verdict's presence is checked.)
    assert set(res.summary["client_trustworthy"]) <= {0.0, 1.0}
    stages = res.manifest["cluster"]["stages"]
    assert all(w["clock_residual_ms"] < 5 for st in stages for w in st["workers"])


def test_open_loop_deals_out_the_one_schedule(ray_address):
    rate, n, seed = 150.0, 300, 3
    with llmbench.SimServer(ttft_ms=10, itl_ms=2, output_tokens=8) as sim:
        res = llmbench.run_sweep(
            sim.target(),
            rates=[rate],
            requests_per_stage=n,
            max_tokens=8,
            seed=seed,
            warmup_requests=0,
            server_metrics=False,
            progress=False,
            cluster=RayCluster(ray_address, workers=4),
        )
    r = _measured(res)
    assert len(r) == n and r.ok.all()
    offsets = llmbench.arrival_schedule(rate, "poisson", requests=n, seed=seed)
    sched = np.sort(r.t_sched_ns.to_numpy().astype(np.int64))
    got = (sched - sched[0]) / 1e9
    # The union is the single-process schedule, to within the clocks' anchoring.
    assert np.max(np.abs(got - (offsets - offsets[0]))) < 1e-3
    assert sorted(r.prompt_index) == sorted(
        llmbench.prompt_order(len(llmbench.default_prompts()), 0, n, seed)
    )
    row = res.summary.iloc[0]
    target = (n - 1) / (offsets[-1] - offsets[0])
    assert row["sent_rate_req_s"] == pytest.approx(target, rel=0.01)
    assert row["cluster_workers"] == 4
    # Lateness in open loop is each worker's send lag; a start offset would be the first
    # arrival's place in the schedule (it read 9.0, 9.7, 12.0 ms here), so none is given.
    workers = res.manifest["cluster"]["stages"][0]["workers"]
    assert all(math.isnan(w["start_late_ms"]) for w in workers)
    assert all(w["send_lag_p99_ms"] >= 0 for w in workers)


def _kill_one_worker_when(sim, served: int, delay_s: float) -> threading.Thread:
    """Kill one worker process (SIGKILL, as a crashed node would) once the server has
    served `served` requests and `delay_s` more seconds have passed."""

    def kill() -> None:
        while sim.served < served:
            time.sleep(0.01)
        time.sleep(delay_s)
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"EngineWorker" in cmd:
                os.kill(int(pid), signal.SIGKILL)
                return

    t = threading.Thread(target=kill, daemon=True)
    t.start()
    return t


def test_a_worker_killed_mid_stage_is_accounted_for_and_the_sweep_goes_on(ray_address):
    # Each request takes 50 + 20 x 60 = 1,250 ms; the first wave of 4 ends at ~1.25 s, the
    # kill comes ~0.9 s later, mid-way through the second wave.
    with llmbench.SimServer(ttft_ms=50, itl_ms=60, output_tokens=20, record_truth=True) as sim:
        killer = _kill_one_worker_when(sim, served=4, delay_s=0.9)
        res = llmbench.run_sweep(
            sim.target(),
            batch_sizes=[4, 2],
            requests_per_stage=24,
            max_tokens=20,
            warmup_requests=0,
            server_metrics=False,
            progress=False,
            cluster=RayCluster(ray_address, workers=2),
        )
        killer.join(timeout=5)
        truth = sim.take_truth()
    r = _measured(res)
    s0 = r[r.stage == 0]
    lost = s0[s0.error_kind == "worker_lost"]
    # The survivor's 12 requests and the lost worker's first wave (2) are measured; the 2
    # it had in flight are worker_lost; the 8 it never sent are not invented.
    assert len(lost) == 2, s0.error_kind.value_counts()
    assert s0.ok.sum() == 14
    assert len(s0) == 16
    assert lost.error.str.contains("lost").all()
    row0 = res.summary.set_index("stage").loc[0]
    assert row0["errors_worker_lost"] == 2
    assert row0["client_trustworthy"] == 0 and "lost" in row0["client_health"]
    assert row0["cluster_workers_lost"] == 1
    # Nothing else lost: every request the server finished is an ok record or one the lost
    # worker had in flight.
    finished = int(truth["chunk_tokens"].map(lambda k: int(np.sum(k)) >= 20).sum())
    assert finished >= int(r.ok.sum())
    assert int(r.ok.sum()) + len(lost) == len(truth["t_received_ns"])
    # The sweep went on with the remaining worker.
    s1 = r[r.stage == 1]
    assert len(s1) == 24 and s1.ok.all()
    assert res.summary.set_index("stage").loc[1, "cluster_workers"] == 1
    assert res.manifest["cluster"]["workers_lost"]


def test_resume_keeps_the_completed_stages_of_a_cluster_run(ray_address, tmp_path):
    settings = dict(
        batch_sizes=[2, 4],
        requests_per_stage=8,
        max_tokens=4,
        server_metrics=False,
        progress=False,
        out_dir=tmp_path,
        cluster=RayCluster(ray_address, workers=2),
    )
    with llmbench.SimServer(ttft_ms=5, itl_ms=1, output_tokens=4) as sim:
        first = llmbench.run_sweep(sim.target(), **settings)
        served = sim.served
        again = llmbench.run_sweep(sim.target(), resume=True, **settings)
        assert sim.served == served, "a completed run resumed sends nothing"
    assert list(again.summary["n_ok"]) == list(first.summary["n_ok"]) == [8, 8]
    assert (tmp_path / "requests_sim-chat.arrows").exists() or list(tmp_path.glob("*.arrows"))


def test_ab_runs_both_targets_on_the_cluster(ray_address):
    with llmbench.SimServer(ttft_ms=10, itl_ms=2, output_tokens=8) as a:
        with llmbench.SimServer(ttft_ms=30, itl_ms=2, output_tokens=8) as b:
            res = llmbench.ab(
                a.target(name="fast"),
                b.target(name="slow"),
                batch_sizes=[4],
                requests_per_stage=16,
                max_tokens=8,
                repeats=2,
                server_metrics=False,
                progress=False,
                cluster=RayCluster(ray_address, workers=2),
            )
    # B's TTFT is scripted 20 ms longer: about +200% of A's, resolved in B's disfavour.
    ttft = res.table[res.table["metric"].str.startswith("ttft_p50")]
    assert len(ttft) and (ttft["diff_pct"] > 100).all(), ttft
    assert set(res.results.summary["cluster_workers"]) == {2}


def test_command_line_runs_on_the_cluster(ray_address, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "llmbench.cli",
            "metrics",
            "--ray",
            ray_address,
            "--workers",
            "2",
            "--batch-sizes",
            "2,4",
            "--requests",
            "8",
            "--max-tokens",
            "4",
            "--out",
            str(out),
            "--quiet",
            "--no-report",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ.copy(),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    import json

    data = json.loads((out / "metrics_data.json").read_text())
    assert data["manifest"]["cluster"]["workers"] == 2


def test_calibrate_on_every_worker(ray_address, tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "llmbench.cli",
            "calibrate",
            "--ray",
            ray_address,
            "--workers",
            "2",
            "--concurrency",
            "1,4",
            "--itl-ms",
            "5",
            "--tokens",
            "8",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ.copy(),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    import json

    data = json.loads((tmp_path / "calibration_workers.json").read_text())
    assert [w["worker"] for w in data["workers"]] == [0, 1]
    assert all(len(w["table"]) == 2 for w in data["workers"])


def test_an_unreachable_cluster_fails_fast_before_any_load():
    port = _free_port()
    with llmbench.SimServer() as sim:
        t = time.monotonic()
        with pytest.raises(UnreachableError, match="cannot reach the Ray cluster"):
            llmbench.run_sweep(
                sim.target(),
                batch_sizes=[2],
                progress=False,
                server_metrics=False,
                cluster=RayCluster(f"127.0.0.1:{port}", workers=2),
            )
        assert time.monotonic() - t < 15
        assert sim.served == 0


def test_a_cluster_with_fewer_cpus_than_workers_is_refused(ray_address):
    with llmbench.SimServer() as sim:
        with pytest.raises(InvalidArgumentError, match=f"has {CLUSTER_CPUS} CPUs"):
            llmbench.run_sweep(
                sim.target(),
                batch_sizes=[2],
                progress=False,
                server_metrics=False,
                cluster=RayCluster(ray_address, workers=CLUSTER_CPUS + 1),
            )
        assert sim.served == 0


def test_without_ray_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(InvalidArgumentError, match=r"llmbench\[ray\]"):
        llmbench.run_sweep(
            llmbench.OpenAI("http://127.0.0.1:9", model="m"),
            batch_sizes=[1],
            progress=False,
            cluster=RayCluster(workers=1),
        )


def test_bad_cluster_settings_are_refused():
    with pytest.raises(InvalidArgumentError, match="workers"):
        RayCluster(workers=0)
    with pytest.raises(InvalidArgumentError, match="on_worker_lost"):
        RayCluster(on_worker_lost="retry")
    assert RayCluster.of({"address": "h:1", "workers": 3}) == RayCluster("h:1", workers=3)


def test_a_sweep_file_carries_the_cluster(tmp_path):
    spec = llmbench.SweepSpec(
        [llmbench.OpenAI("http://127.0.0.1:8000", model="m")],
        {"batch_sizes": [8], "cluster": RayCluster("head:6379", workers=4)},
    )
    path = llmbench.save_config(spec, tmp_path / "sweep.toml")
    assert "[sweep.cluster]" in path.read_text()
    back = llmbench.load_config(path)
    assert RayCluster.of(back.options["cluster"]) == RayCluster("head:6379", workers=4)


def test_the_driver_reads_each_open_loop_schedule_from_the_engine():
    # What the driver checks a lost worker's share against: the engine's own stage schedule
    # (stage i seeded with seed + i; ten seconds' worth, at least 16, when not given).
    from llmbench import _core
    from llmbench.sweep import SweepOptions

    config = {
        **SweepOptions(rates=[50.0, 3.0], requests_per_stage=None, seed=4).engine_config(),
        "target": llmbench.OpenAI("http://127.0.0.1:9", model="m").to_spec(),
    }
    got = _core.stage_schedule(config, 1) / 1e9
    want = llmbench.arrival_schedule(3.0, "poisson", requests=30, seed=5)
    assert np.allclose(got, want, rtol=0, atol=1e-9)
    assert len(_core.stage_schedule(config, 0)) == 500
