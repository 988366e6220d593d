"""Targets: the servers a sweep measures.

`OpenAI` covers every OpenAI-compatible streaming server (vLLM, TGI's messages API,
`transformers serve`, llama.cpp, ...); `TGI` is TGI's native `/generate_stream`.
API keys are kept out of `repr`, manifests, results and logs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Literal

from . import _core
from ._core import InvalidArgumentError
from ._settings import TARGET, TIMEOUTS, check_choice

Api = Literal["chat", "completions", "tgi"]


@dataclass
class Timeouts:
    """Per-request timeouts in seconds, each recorded as its own error kind.

    connect (`timeout_connect`): TCP/TLS connect. ttft (`timeout_ttft`): send to the first
    output token, queueing and prefill included. idle (`timeout_idle`): the longest silence
    between two reads once tokens flow (a stalled stream). total (`timeout_total`): the
    whole request. The defaults allow for long queues on a loaded server (vLLM sends
    nothing while a request waits) and only catch servers that are really stuck.

    Example:
        >>> llmbench.OpenAI(url, model=m, timeouts=llmbench.Timeouts(ttft=30, idle=10))
    """

    connect: float = TIMEOUTS["connect_s"]
    ttft: float = TIMEOUTS["ttft_s"]
    idle: float = TIMEOUTS["idle_s"]
    total: float = TIMEOUTS["total_s"]

    def to_spec(self) -> dict[str, float]:
        return {
            "connect_s": self.connect,
            "ttft_s": self.ttft,
            "idle_s": self.idle,
            "total_s": self.total,
        }


@dataclass
class Target:
    """Base class of targets; use `OpenAI` or `TGI`.

    Example:
        >>> isinstance(llmbench.TGI("http://localhost:8080"), llmbench.Target)
        True
    """

    url: str
    model: str = ""
    api: Api = "chat"
    name: str = ""
    api_key: str | None = field(default=None, repr=False)
    extra_body: dict[str, Any] = field(default_factory=dict)
    temperature: float = TARGET["temperature"]
    include_usage: bool = TARGET["include_usage"]
    continuous_usage: bool = TARGET["continuous_usage"]
    include_metrics: bool = TARGET["include_metrics"]
    timeouts: Timeouts = field(default_factory=Timeouts)
    verify_tls: bool = TARGET["verify_tls"]
    force_output_len: str | None = TARGET["force_output_len"]

    def __post_init__(self) -> None:
        check_choice("api", self.api, "api")
        if self.force_output_len is not None:
            check_choice("force_output_len", self.force_output_len, "force_output_len")
        if not self.name:
            self.name = self.model or self.api
        if self.api_key is None:
            self.api_key = os.environ.get("LLMBENCH_API_KEY") or None

    def root_path(self, path: str) -> str:
        """`path` under the server's root (the URL without a trailing `/v1`), with the URL's
        query string kept.

        Example:
            >>> llmbench.OpenAI("http://h:8000/v1", model="m").root_path("/metrics")
            'http://h:8000/metrics'
        """
        base, sep, query = self.url.partition("?")
        base = base.rstrip("/")
        base = base[: -len("/v1")] if base.endswith("/v1") else base
        return f"{base}{path}{sep}{query}"

    def to_spec(self) -> dict[str, Any]:
        """The engine's target description (holds the API key: never log or save it)."""
        return {
            "name": self.name,
            "url": self.url,
            "model": self.model,
            "api": self.api,
            "api_key": self.api_key,
            "extra_body": dict(self.extra_body),
            "temperature": float(self.temperature),
            "include_usage": self.include_usage,
            "continuous_usage": self.continuous_usage,
            "include_metrics": self.include_metrics,
            "timeouts": self.timeouts.to_spec(),
            "verify_tls": self.verify_tls,
            "force_output_len": self.force_output_len,
        }

    def describe(self) -> dict[str, Any]:
        """What results and manifests record about the target: no key, no credentials."""
        return {
            "name": self.name,
            "url": _core.redact_url(self.url),
            "model": self.model,
            "api": self.api,
            "extra_body": dict(self.extra_body),
            "temperature": self.temperature,
            "force_output_len": self.force_output_len,
            "include_metrics": self.include_metrics,
            "api_key_set": self.api_key is not None,
        }


@dataclass
class OpenAI(Target):
    """An OpenAI-compatible streaming server.

    api: "chat" (`/v1/chat/completions`) or "completions" (`/v1/completions`).
    extra_body: fields merged into every request, e.g. vLLM's fixed-length output
    `{"ignore_eos": True}`, or `transformers serve`'s
    `{"generation_config": '{"min_new_tokens": 64}'}`.
    continuous_usage: ask for vLLM's per-chunk usage (exact per-chunk token counts); turn
    it off for servers that reject unknown `stream_options`.
    include_metrics: ask for the server's own queue, prefill and decode times of each
    request (vLLM's `include_metrics`, answered from 0.33 when the server runs with
    `--enable-per-request-metrics`), read into `server_queue_ms`, `server_prefill_ms`
    and `server_decode_ms` of every request. Off by default: servers that check their
    fields (`transformers serve`) refuse it. llama.cpp sends its `timings` unasked.
    force_output_len: make every request generate exactly its `max_tokens`: "vllm"
    (`ignore_eos` + `min_tokens`) or "transformers" (`generation_config` min_new_tokens).

    Example:
        >>> target = llmbench.OpenAI("http://localhost:8000",
        ...                          model="meta-llama/Llama-2-7b-chat-hf",
        ...                          extra_body={"ignore_eos": True})
    """


@dataclass
class TGI(Target):
    """Text Generation Inference's native `/generate_stream` (asks for `details: true`).

    extra_body: fields merged into `parameters`.

    Example:
        >>> target = llmbench.TGI("http://localhost:8080")
    """

    api: Api = "tgi"

    def __post_init__(self) -> None:
        if self.api != "tgi":
            raise InvalidArgumentError("TGI targets use api='tgi'; use OpenAI for the others")
        super().__post_init__()
