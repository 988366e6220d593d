"""llmbench against what a real vLLM answered: the payloads vLLM 0.24.0 sent on the GPU
machine (tests/fixtures/vllm_0_24_*, docs/real_servers.md), replayed byte for byte by a
local server. Known answers: each captured stream holds six tokens with per-chunk usage,
the error bodies' messages, the served model's name and the server's version.
"""

from __future__ import annotations

import http.server
import json
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import llmbench
import pytest
from conftest import http_server

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
MODEL = "llama-2-7b-dummy"


class _Replay(http.server.BaseHTTPRequestHandler):
    """Answers every POST with one captured body and status; GETs with the captured
    /v1/models, /version and /metrics."""

    protocol_version = "HTTP/1.1"
    post: tuple[int, str, str] = (200, "", "")  # status, fixture, content type
    gets: ClassVar[dict[str, str]] = {
        "/v1/models": "vllm_0_24_models.json",
        "/version": "vllm_0_24_version.json",
        "/metrics": "vllm_0_24_metrics.txt",
    }

    def _send(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        name = self.gets.get(self.path)
        if name is None:
            self._send(404, b'{"detail":"Not Found"}', "application/json")
        else:
            self._send(200, (FIXTURES / name).read_bytes(), "application/json")

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        status, name, ctype = type(self).post
        self._send(status, (FIXTURES / name).read_bytes(), ctype)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def replay() -> Iterator[type[_Replay]]:
    handler = type("Handler", (_Replay,), {})
    with http_server(handler) as url:
        handler.url = url  # type: ignore[attr-defined]
        yield handler


@pytest.mark.parametrize(
    "api, fixture",
    [
        ("completions", "vllm_0_24_completions_stream_continuous_usage.sse"),
        ("chat", "vllm_0_24_chat_stream_continuous_usage.sse"),
    ],
)
def test_captured_streams_measure_six_tokens_from_the_servers_own_usage(replay, api, fixture):
    replay.post = (200, fixture, "text/event-stream")
    target = llmbench.OpenAI(replay.url, model=MODEL, api=api, name="vllm-0.24")
    res = llmbench.run_sweep(
        target, batch_sizes=[2], requests_per_stage=4, max_tokens=6, progress=False
    )
    req = res.requests
    assert req["ok"].all() and len(req) == 4
    assert (req["n_out"] == 6).all()
    assert set(req["chunk_token_source"]) == {"continuous_usage"}
    assert set(req["n_out_source"]) == {"server_usage"}
    assert set(req["finish_reason"]) == {"length"}
    servers = res.manifest["servers"]["vllm-0.24"]
    assert servers["version"] == {"version": "0.24.0"}
    assert servers["models"]["data"][0]["id"] == MODEL


def test_captured_plain_stream_counts_one_token_per_chunk(replay):
    replay.post = (200, "vllm_0_24_completions_stream.sse", "text/event-stream")
    target = llmbench.OpenAI(replay.url, model=MODEL, api="completions", continuous_usage=False)
    res = llmbench.run_sweep(
        target, batch_sizes=[1], requests_per_stage=2, max_tokens=6, progress=False
    )
    assert res.requests["ok"].all()
    assert (res.requests["n_out"] == 6).all()


@pytest.mark.parametrize(
    "status, fixture, message",
    [
        (
            400,
            "vllm_0_24_http_400_error.json",
            "max_tokens=100000 cannot be greater than max_model_len",
        ),
        (404, "vllm_0_24_http_404_model_error.json", "does not exist"),
    ],
)
def test_captured_error_bodies_are_recorded_with_vllms_own_message(
    replay, status, fixture, message
):
    replay.post = (status, fixture, "application/json")
    target = llmbench.OpenAI(replay.url, model=MODEL, api="completions")
    res = llmbench.run_sweep(
        target,
        batch_sizes=[2],
        requests_per_stage=3,
        warmup_requests=0,
        progress=False,
    )
    req = res.requests
    assert (~req["ok"]).all()
    assert set(req["error_kind"]) == {"http_status"}
    assert all(str(status) in e and message in e for e in req["error"]), list(req["error"])
    # The body is the server's words, not JSON punctuation.
    assert not any('{"error"' in e for e in req["error"])
    assert json.loads((FIXTURES / fixture).read_text())["error"]["code"] == status
