"""Bad input gets a clear error: unreachable servers, wrong model, non-streaming servers,
HTTP errors during a run, and bad arguments."""

from __future__ import annotations

import http.server
import json
from collections.abc import Iterator

import llmbench
import pytest
from conftest import free_port, http_server


class _JsonOnly(http.server.BaseHTTPRequestHandler):
    """A server that ignores `stream: true` and answers with plain JSON (fault injection)."""

    status = 200

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        body = json.dumps({"choices": [{"message": {"content": "hi"}}]}).encode()
        self.send_response(self.status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def json_server() -> Iterator[str]:
    with http_server(_JsonOnly) as url:
        yield url


def test_unreachable_server_names_the_url_and_what_was_tried():
    port = free_port()
    target = llmbench.OpenAI(f"http://127.0.0.1:{port}", model="m")
    with pytest.raises(llmbench.UnreachableError) as e:
        llmbench.run_sweep(target, batch_sizes=[1], requests_per_stage=1, progress=False)
    msg = str(e.value)
    assert f"127.0.0.1:{port}/v1/chat/completions" in msg
    assert "refused" in msg.lower()
    assert isinstance(e.value, llmbench.LlmbenchError)


def test_wrong_model_lists_the_served_models(sim):
    target = llmbench.OpenAI(sim.url, model="not-a-model")
    with pytest.raises(llmbench.TargetError) as e:
        llmbench.run_sweep(target, batch_sizes=[1], requests_per_stage=1, progress=False)
    msg = str(e.value)
    assert "404" in msg and "not-a-model" in msg and "llmbench-sim" in msg


def test_non_streaming_server_is_reported(json_server):
    target = llmbench.OpenAI(json_server, model="m")
    with pytest.raises(llmbench.TargetError, match="text/event-stream"):
        llmbench.run_sweep(target, batch_sizes=[1], requests_per_stage=1, progress=False)


def test_without_warmup_failures_are_recorded_not_raised(json_server):
    target = llmbench.OpenAI(json_server, model="m")
    res = llmbench.run_sweep(
        target, batch_sizes=[2], requests_per_stage=4, warmup_requests=0, progress=False
    )
    row = res.summary.iloc[0]
    assert row["n_failed"] == 4 and row["errors_malformed"] == 4
    assert row["ttft_p50_censored_ms"] == float("inf")
    assert set(res.requests["error_kind"]) == {"malformed"}


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"batch_sizes": [0]}, "batch_sizes"),
        ({"batch_sizes": []}, "batch_sizes"),
        ({"prompts": []}, "empty"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"gpu_hourly_usd": "no-such-gpu"}, "unknown GPU preset"),
        ({"prompts": "/no/such/file.txt"}, "does not exist"),
        ({"tokenizer": "/no/such/tokenizer.json"}, "tokenizer"),
    ],
)
def test_bad_arguments(sim, kwargs, match):
    with pytest.raises(llmbench.LlmbenchError, match=match):
        llmbench.run_sweep(sim.target(), progress=False, **kwargs)


def test_bad_targets():
    with pytest.raises(llmbench.InvalidArgumentError, match="http:// or https://"):
        llmbench.run_sweep(llmbench.OpenAI("localhost:8000", model="m"), progress=False)
    with pytest.raises(llmbench.InvalidArgumentError, match="model name"):
        llmbench.run_sweep(llmbench.OpenAI("http://127.0.0.1:9"), progress=False)
    with pytest.raises(llmbench.InvalidArgumentError, match="api must be"):
        llmbench.OpenAI("http://127.0.0.1:9", model="m", api="grpc")  # type: ignore[arg-type]


def test_api_key_is_sent_but_never_saved(sim, tmp_path):
    secret = "sk-test-PLANTED-4242"
    target = llmbench.OpenAI(sim.url, model=sim.config.model, api_key=secret)
    assert secret not in repr(target)
    res = llmbench.run_sweep(
        target,
        batch_sizes=[1],
        requests_per_stage=2,
        max_tokens=4,
        out_dir=tmp_path,
        progress=False,
    )
    assert res.summary.iloc[0]["n_ok"] == 2
    assert res.manifest["targets"][0]["api_key_set"] is True
    for path in tmp_path.iterdir():
        assert secret.encode() not in path.read_bytes(), path.name
    assert secret not in repr(res) and secret not in json.dumps(res.manifest)


def test_forcing_the_length_on_tgi_is_refused_clearly(sim):
    with pytest.raises(llmbench.InvalidArgumentError, match="TGI cannot force"):
        llmbench.run_sweep(
            llmbench.TGI(sim.url, force_output_len="vllm"), batch_sizes=[1], progress=False
        )
    with pytest.raises(llmbench.InvalidArgumentError, match="force_output_len must be"):
        llmbench.OpenAI(sim.url, model="m", force_output_len="sglang")
