"""Shared fixtures: the scripted server with known timings, and helpers."""

from __future__ import annotations

import http.server
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import llmbench
import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True, scope="session")
def _private_calibration(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Tests never read or leave a calibration in the user's cache (`llmbench calibrate`
    remembers one there by default, and runs compare their load with it)."""
    path = tmp_path_factory.mktemp("calibration") / "calibration.json"
    old = os.environ.get("LLMBENCH_CALIBRATION")
    os.environ["LLMBENCH_CALIBRATION"] = str(path)
    yield
    if old is None:
        os.environ.pop("LLMBENCH_CALIBRATION", None)
    else:
        os.environ["LLMBENCH_CALIBRATION"] = old


@contextmanager
def http_server(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    """A threaded HTTP server on 127.0.0.1 running `handler` (a scripted or replaying
    server for fault injection); yields its base URL, shuts it down after."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def sim() -> Iterator[llmbench.SimServer]:
    """Scripted server: TTFT 40 ms, 5 ms per token, one token per chunk."""
    with llmbench.SimServer(ttft_ms=40, itl_ms=5) as server:
        yield server


def run_cli(*args: str, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    """Run the installed `llmbench` command (through this interpreter)."""
    env = {**os.environ, **kwargs.pop("env", {})}
    return subprocess.run(
        [sys.executable, "-m", "llmbench.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        **kwargs,
    )


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sim_process(port: int, *flags: str) -> subprocess.Popen:
    """`llmbench sim` in its own process on `port`, ready when this returns (its first
    line, read here, says where it listens)."""
    proc = popen(
        [sys.executable, "-m", "llmbench.cli", "sim", "--port", str(port), *flags],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert "scripted server on" in line, line
    return proc


def _default_sigint() -> None:
    # A shell that starts a job in the background without job control makes it ignore
    # SIGINT, and Python keeps an ignored SIGINT ignored: restore the default so the
    # child turns Ctrl-C into KeyboardInterrupt as it would in a terminal.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def popen(args: list[str], **kwargs) -> subprocess.Popen:
    """Start a child that receives SIGINT as a terminal user's Ctrl-C."""
    return subprocess.Popen(args, preexec_fn=_default_sigint, **kwargs)


def records_so_far(path: Path, columns: tuple[str, ...] = ("id", "stage", "warmup")) -> Any:
    """The records a run has written to its record file so far (a file still being
    written may end inside a batch: its whole batches are read, quietly)."""
    import warnings

    if not path.is_file():
        import pandas as pd

        return pd.DataFrame(columns=list(columns))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", llmbench.records.RecordFileWarning)
        return llmbench.records.read_file(path, list(columns))
