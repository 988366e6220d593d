"""Reliability: every fault the scripted server can inject lands as a failed request of
its kind while the rest of the stage succeeds, a killed run resumes from its record files,
a failed final write returns the results anyway, and no output holds a planted secret."""

from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import llmbench
import pytest
from conftest import REPO, free_port, popen, records_so_far, run_cli, sim_process
from llmbench import _core
from llmbench.sim import FAULTS

EXPECTED_KIND = {
    "reset_before_headers": "connect",
    "reset_mid_stream": "incomplete",
    "http_429": "http_status",
    "http_500": "http_status",
    "http_503": "http_status",
    "in_band_error": "in_band_error",
    "malformed_json": "malformed",
    "split_writes": None,
    "invalid_utf8": "malformed",
    "huge_line": "malformed",
    "no_finish": "incomplete",
    "stall_mid_stream": "timeout_idle",
    "slow_first_byte": "timeout_ttft",
    "empty_output": "empty_output",
    "non_sse": "malformed",
}


@pytest.fixture(scope="module")
def faulty_sim():
    with llmbench.SimServer(ttft_ms=20, itl_ms=2, fault_delay_ms=3000) as server:
        yield server


@pytest.mark.parametrize("fault", FAULTS)
def test_each_fault_is_recorded_with_its_kind(faulty_sim, fault, tmp_path):
    assert set(EXPECTED_KIND) == set(FAULTS)
    prompts = [f"normal prompt {i}" for i in range(5)] + [f"then llmbench-fault:{fault}"]
    target = faulty_sim.target(
        "chat", timeouts=llmbench.Timeouts(connect=5, ttft=1, idle=1, total=20)
    )
    res = llmbench.run_sweep(
        target,
        batch_sizes=[3],
        requests_per_stage=6,
        max_tokens=10,
        prompts=prompts,
        warmup_requests=0,
        out_dir=tmp_path,
        progress=False,
    )
    req = res.requests
    faulty = req[req["prompt_index"] == 5]
    others = req[req["prompt_index"] != 5]
    assert len(faulty) == 1 and len(others) == 5
    kind = EXPECTED_KIND[fault]
    row = faulty.iloc[0]
    if kind is None:
        assert row["ok"] and row["n_out"] == 10
    else:
        assert row["error_kind"] == kind, row["error"]
        assert row["error"]
        assert res.summary.iloc[0][f"errors_{kind}"] == 1
        # Failures never vanish from percentiles: the censored TTFT p99 is infinite.
        assert res.summary.iloc[0]["ttft_p99_censored_ms"] == float("inf")
    assert others["ok"].all() and (others["n_out"] == 10).all()
    # The scripted TTFT is 20 ms after admission: never less from send, and the client
    # adds little to it whatever the fault next door.
    assert others["ttft_ms"].min() >= 20.0
    assert others["ttft_ms"].median() < 25.0, others["ttft_ms"].tolist()
    # Every request is on disk, in the live records and in the saved results.
    live = llmbench.records.read_file(tmp_path / f"requests_{target.name}.arrows")
    assert len(live) == 6
    saved = json.loads((tmp_path / "metrics_data.json").read_text())["requests"]
    assert sorted(r["id"] for r in saved) == sorted(req["id"])


def test_a_killed_run_resumes_from_its_records(tmp_path):
    out = tmp_path / "run"
    args = [
        sys.executable, "-m", "llmbench.cli", "metrics", "--embedded", "sim",
        "--sim-itl-ms", "20", "--batch-sizes", "1,2,4", "--requests", "12",
        "--max-tokens", "6", "--out", str(out), "--quiet", "--metrics-period", "0",
    ]  # fmt: skip
    proc = popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=REPO)
    live = out / "requests_llmbench-sim.arrows"
    deadline = time.monotonic() + 60
    # Kill it (no chance to clean up) once the second stage has started.
    while time.monotonic() < deadline:
        if (records_so_far(live)["stage"] == 1).any():
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert not (out / "metrics_data.json").exists()
    before = records_so_far(live, ("id", "stage", "warmup", "t_sent_ns"))
    stage0 = {
        int(r.id): int(r.t_sent_ns) for r in before.itertuples() if r.stage == 0 and not r.warmup
    }
    assert len(stage0) == 12

    r = run_cli("metrics", "--resume", str(out))
    assert r.returncode == 0, r.stderr
    data = json.loads((out / "metrics_data.json").read_text())
    summary = data["summary"]
    assert [s["batch_size"] for s in summary] == [1, 2, 4]
    assert [s["n_ok"] for s in summary] == [12, 12, 12]
    measured = [x for x in data["requests"] if not x["warmup"]]
    assert len(measured) == 36
    # Stage 0 was kept as measured before the kill, not run again.
    kept = {x["id"]: x["t_sent_ns"] for x in measured if x["stage"] == 0}
    assert kept == stage0
    assert len({x["id"] for x in data["requests"]}) == len(data["requests"])
    assert any("resumed" in w for w in data["manifest"]["warnings"])


def test_a_failed_final_write_keeps_the_results_on_the_error(sim, tmp_path):
    # The final files cannot be written (as on a full disk): the sweep raises
    # ResultsNotSaved (nothing unsaved is claimed) with every measurement on it, and the
    # live records hold every completed request.
    (tmp_path / "metrics_data.json.tmp").mkdir()
    with pytest.raises(llmbench.ResultsNotSaved) as caught:
        llmbench.run_sweep(
            sim.target(), batch_sizes=[2], requests_per_stage=4, max_tokens=3,
            out_dir=tmp_path, progress=False,
        )  # fmt: skip
    res = caught.value.results
    assert int(res.summary.iloc[0]["n_ok"]) == 4
    live = llmbench.records.read_file(tmp_path / "requests_sim-chat.arrows")
    assert len(live) == 5  # and the warm-up request


class _RecordingHandler(http.server.BaseHTTPRequestHandler):
    seen: list[dict[str, str]] = []  # noqa: RUF012

    def do_POST(self):
        self.seen.append({k.lower(): v for k, v in self.headers.items()})
        self.rfile.read(int(self.headers.get("content-length", 0)))
        body = b'{"error": {"message": "invalid credentials", "type": "AuthError", "code": 401}}'
        self.send_response(401)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_api_key_goes_only_in_the_authorization_header():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RecordingHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    key = "sk-llmbench-planted-0123456789"
    try:
        target = llmbench.OpenAI(
            f"http://127.0.0.1:{server.server_port}", model="m", api_key=key, name="auth"
        )
        assert key not in repr(target) and key not in json.dumps(target.describe())
        res = llmbench.run_sweep(
            target, batch_sizes=[1], requests_per_stage=2, max_tokens=2,
            warmup_requests=0, progress=False,
        )  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()
    assert _RecordingHandler.seen[0]["authorization"] == f"Bearer {key}"
    assert (res.requests["error_kind"] == "http_status").all()
    assert key not in res.requests.to_json() and key not in res.summary.to_json()


def test_no_output_holds_a_planted_secret(tmp_path):
    key, password, token = "sk-PLANTED-KEY-42", "PLANTEDPASSWORD", "PLANTEDQUERYTOKEN"
    port = 18793
    sim = popen(
        [sys.executable, "-m", "llmbench.cli", "sim", "--port", str(port), "--for-seconds", "60",
         "--ttft-ms", "5", "--itl-ms", "1"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert sim.stdout is not None and "scripted server on" in sim.stdout.readline()
        prompts = tmp_path / "prompts.txt"
        prompts.write_text("hello\nllmbench-fault:http_500\nllmbench-fault:reset_mid_stream\n")
        out = tmp_path / "out"
        url = f"http://user:{password}@127.0.0.1:{port}/v1?api_key={token}"
        r = run_cli(
            "metrics", "--url", url, "--model", "llmbench-sim", "--batch-sizes", "1,2",
            "--requests", "6", "--max-tokens", "4", "--prompts", str(prompts),
            "--out", str(out), "--gpu", "--metrics-period", "100",
            env={"LLMBENCH_API_KEY": key},
        )  # fmt: skip
        # A run that cannot start says why, without the secrets either.
        bad = run_cli(
            "metrics", "--url", f"http://user:{password}@127.0.0.1:9/?token={token}",
            "--model", "m", "--quiet", "--out", str(tmp_path / "bad"),
            env={"LLMBENCH_API_KEY": key},
        )  # fmt: skip
    finally:
        sim.send_signal(signal.SIGINT)
        sim.wait(timeout=10)
    assert r.returncode == 0, r.stderr
    assert bad.returncode == 1 and "cannot reach" in bad.stderr
    files = [p for p in tmp_path.rglob("*") if p.is_file() and p.name != "prompts.txt"]
    assert {p.name for p in files} >= {"metrics_data.json", "metrics_summary.csv", "command.json"}
    data = json.loads((out / "metrics_data.json").read_text())
    assert any(not x["ok"] for x in data["requests"])  # error messages were written too
    for secret in (key, password, token):
        for p in files:
            assert secret.encode() not in p.read_bytes(), f"{secret} in {p.name}"
        for text in (r.stdout, r.stderr, bad.stdout, bad.stderr):
            assert secret not in text


class _SseHandler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        chunk = {"choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": "length"}]}
        body = f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n".encode()
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self.send_response(404)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_tls_is_verified_unless_turned_off(tmp_path):
    import ssl

    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SseHandler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"https://127.0.0.1:{server.server_port}"
    try:
        # Verified by default: a self-signed certificate is refused, and the error says so.
        with pytest.raises(llmbench.UnreachableError, match=r"(?i)certificate"):
            llmbench.run_sweep(
                llmbench.OpenAI(url, model="m"), batch_sizes=[1], requests_per_stage=1,
                max_tokens=1, progress=False,
            )  # fmt: skip
        res = llmbench.run_sweep(
            llmbench.OpenAI(url, model="m", verify_tls=False), batch_sizes=[1],
            requests_per_stage=2, max_tokens=1, progress=False,
        )  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()
    assert res.requests["ok"].all()
    assert "--insecure" in run_cli("metrics", "--help").stdout


def test_a_connect_that_never_completes_is_a_connect_timeout():
    # A listening socket whose accept queue is full: the kernel drops further SYNs, so a
    # new connection never completes (nothing leaves 127.0.0.1).
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            fillers.append(s)
        time.sleep(0.2)
        target = llmbench.OpenAI(
            f"http://127.0.0.1:{port}",
            model="m",
            timeouts=llmbench.Timeouts(connect=0.5, ttft=30, idle=30, total=60),
        )
        t0 = time.monotonic()
        res = llmbench.run_sweep(
            target, batch_sizes=[1], requests_per_stage=2, warmup_requests=0, progress=False
        )
        took = time.monotonic() - t0
    finally:
        for s in fillers:
            s.close()
        server.close()
    req = res.requests
    assert (req["error_kind"] == "timeout_connect").all(), req[["error_kind", "error"]]
    # Given up on by the connect timeout, long before the 30 s TTFT timeout could fire
    # (the probes of /v1/models, /version, /info and the pre-opened connection each wait
    # for a connect timeout too).
    assert took < 30.0


def test_a_stream_longer_than_the_total_timeout_is_a_total_timeout():
    # 50 ms to the first token, then 20 tokens 100 ms apart: about 2 s of streaming that
    # never goes silent for longer than 0.1 s, against a 0.5 s total.
    with llmbench.SimServer(ttft_ms=50, itl_ms=100) as sim:
        target = sim.target(timeouts=llmbench.Timeouts(connect=5, ttft=10, idle=10, total=0.5))
        t0 = time.monotonic()
        res = llmbench.run_sweep(
            target,
            batch_sizes=[1],
            requests_per_stage=2,
            max_tokens=20,
            warmup_requests=0,
            progress=False,
        )
        took = time.monotonic() - t0
    req = res.requests
    assert (req["error_kind"] == "timeout_total").all(), req[["error_kind", "error"]]
    # Tokens that arrived before the deadline are kept: about 0.45 s of them (the whole
    # stream would have been 20), and each request ended at its deadline.
    assert (req["n_chunks"] >= 3).all() and (req["n_chunks"] <= 6).all()
    assert took < 20.0


def test_the_open_file_limit_is_raised_for_a_large_stage():
    # A soft limit of 300 descriptors, a stage of 512 streams: the engine raises the soft
    # limit (the hard one allows it) and says so; every request succeeds.
    script = textwrap.dedent(
        """
        import json, resource
        import llmbench
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (300, hard))
        with llmbench.SimServer(ttft_ms=20, itl_ms=1, max_batch=1024) as sim:
            res = llmbench.run_sweep(sim.target(), batch_sizes=[512], requests_per_stage=512,
                                     max_tokens=2, progress=False)
        print(json.dumps({"soft": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
                          "ok": int(res.summary["n_ok"].iloc[0]),
                          "warnings": res.manifest["warnings"]}))
        """
    )
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["ok"] == 512
    assert out["soft"] >= 512 + 256
    assert any("raised the open-file soft limit from 300" in w for w in out["warnings"])


def _client_sockets() -> int:
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            n += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except OSError:
            continue
    return n


def test_no_task_or_connection_outlives_a_stage_with_faults(tmp_path):
    # The scripted server in its own process, so every socket and task counted here is the
    # client's. Half the requests get a fault, resets and stalls past the timeouts among
    # them; two stages, so tasks of the first must be gone while the second runs.
    port = free_port()
    server = sim_process(
        port,
        *("--ttft-ms", "5", "--itl-ms", "1", "--fault-rate", "0.5"),
        *("--faults", ",".join(FAULTS), "--fault-delay-ms", "3000", "--for-seconds", "120"),
    )
    try:
        tasks_before, sockets_before = _core.alive_tasks(), _client_sockets()
        target = llmbench.OpenAI(
            f"http://127.0.0.1:{port}",
            model="llmbench-sim",
            timeouts=llmbench.Timeouts(connect=5, ttft=0.5, idle=0.5, total=20),
        )
        res = llmbench.run_sweep(
            target,
            batch_sizes=[8, 32],
            requests_per_stage=96,
            max_tokens=8,
            warmup_requests=0,
            out_dir=tmp_path,
            progress=False,
        )
        kinds = set(res.requests["error_kind"].dropna())
        # The faults happened: resets, timeouts and malformed streams among the failures.
        assert {"connect", "incomplete", "timeout_idle", "timeout_ttft", "malformed"} <= kinds
        assert res.summary["n_ok"].gt(0).all() and len(res.requests) == 192
        # Nothing outlives the sweep: every task it spawned has ended and every connection
        # it opened is closed (given a moment for the sockets' close to reach the kernel).
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and (
            _core.alive_tasks() > tasks_before or _client_sockets() > sockets_before
        ):
            time.sleep(0.05)
        assert _core.alive_tasks() <= tasks_before, (_core.alive_tasks(), tasks_before)
        assert _client_sockets() <= sockets_before, (_client_sockets(), sockets_before)
    finally:
        server.terminate()
        server.wait(timeout=30)
