"""The built-in scripted server: an OpenAI- and TGI-compatible streaming server with
configured timings, running inside this process (no GPU, no model, no download).

It is the default target of `llmbench metrics` and the known-answer oracle of the tests.
Timing model (see `src/sim/mod.rs`): up to `max_batch` requests run at once, more wait in
a queue; TTFT = `ttft_ms + ttft_per_running_ms x (running - 1)` after admission; each
further token `itl_ms + itl_per_running_ms x (running - 1)`; tokens leave in chunks of
`tokens_per_chunk`. Prompt tokens are counted as whitespace-separated words. Noise with a
known answer: `ttft_jitter` / `itl_jitter` multiply each TTFT / gap by `exp(σ·Z)` (seeded
by `jitter_seed`; median factor exactly 1).

Prefill and prefix caching (docs/workloads.md): TTFT grows by `prefill_ms_per_token` for
every prompt token not found in the prefix cache; with `prefix_cache_blocks` > 0 the
server keeps that many blocks of `prefix_block_tokens` tokens (least recently used out),
a request's cached prefix being its leading run of cached blocks, and `/metrics` exports
vLLM V1's `vllm:prefix_cache_queries_total` / `vllm:prefix_cache_hits_total` (tokens).
`name_tokens` makes every output token ` r<request id>`, so a conversation's history
shows whose answers it carries.

Faults: a prompt containing `llmbench-fault:<name>` (or the `x-llmbench-fault` header) gets
that fault; `fault_rate` injects `faults` into that share of requests (seeded). Names:
`FAULTS` (resets before headers and mid-stream, HTTP 429/500/503 with the servers' bodies,
in-band error events, malformed JSON, split writes, invalid UTF-8, a 6 MiB line, no finish,
a stall, a slow first byte, no tokens, a non-SSE answer).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from . import _core
from ._core import InvalidArgumentError
from ._settings import CHOICES, SIM
from .targets import TGI, OpenAI, Target

# The engine's fault names (`Fault::ALL`).
FAULTS = CHOICES["faults"]


@dataclass
class SimConfig:
    """Timings, capacity and faults of the scripted server (times in ms).

    Example:
        >>> cfg = llmbench.SimConfig(ttft_ms=50, itl_ms=10, max_batch=64,
        ...                          fault_rate=0.01, faults=["http_503"])
        >>> sim = llmbench.SimServer(cfg)
    """

    # Each default is the engine's (`SimConfig::default()` in `src/sim/mod.rs`).
    model: str = SIM["model"]
    ttft_ms: float = SIM["ttft_ms"]
    ttft_per_running_ms: float = SIM["ttft_per_running_ms"]
    itl_ms: float = SIM["itl_ms"]
    itl_per_running_ms: float = SIM["itl_per_running_ms"]
    tokens_per_chunk: int = SIM["tokens_per_chunk"]
    output_tokens: int | None = SIM["output_tokens"]
    max_batch: int = SIM["max_batch"]
    default_max_tokens: int = SIM["default_max_tokens"]
    record_truth: bool = SIM["record_truth"]
    fault_rate: float = SIM["fault_rate"]
    faults: list[str] = field(default_factory=lambda: list(SIM["faults"]))
    fault_seed: int = SIM["fault_seed"]
    fault_delay_ms: float = SIM["fault_delay_ms"]
    ttft_jitter: float = SIM["ttft_jitter"]
    itl_jitter: float = SIM["itl_jitter"]
    jitter_seed: int = SIM["jitter_seed"]
    prefill_ms_per_token: float = SIM["prefill_ms_per_token"]
    prefix_cache_blocks: int = SIM["prefix_cache_blocks"]
    prefix_block_tokens: int = SIM["prefix_block_tokens"]
    name_tokens: bool = SIM["name_tokens"]
    max_model_len: int | None = SIM["max_model_len"]


# The embedded default target of `llmbench metrics`: a batching server whose latency grows
# with load and which saturates at 64 requests, so a sweep shows the usual curves quickly.
DEFAULT_TARGET_CONFIG = SimConfig(
    ttft_ms=20.0,
    ttft_per_running_ms=0.5,
    itl_ms=5.0,
    itl_per_running_ms=0.05,
    max_batch=64,
)


class SimServer:
    """Run the scripted server on 127.0.0.1 (a free port unless `port` is given).

    Use it as a context manager, or call `close()`.

    Example:
        >>> with llmbench.SimServer(ttft_ms=50, itl_ms=10) as sim:
        ...     res = llmbench.run_sweep(sim.target(), batch_sizes=[1, 4])
    """

    def __init__(
        self,
        config: SimConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        **overrides: Any,
    ) -> None:
        cfg = asdict(config or SimConfig())
        unknown = set(overrides) - set(cfg)
        if unknown:
            raise _core.InvalidArgumentError(f"unknown SimServer settings: {sorted(unknown)}")
        cfg.update(overrides)
        self.config = SimConfig(**cfg)
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise InvalidArgumentError(f"port must be 0 (any free port) to 65535; got {port!r}")
        self._server = _core.SimServer(cfg, host, port)

    @property
    def url(self) -> str:
        """Base URL, e.g. `http://127.0.0.1:40123`."""
        return self._server.url

    @property
    def port(self) -> int:
        """The port it listens on."""
        return self._server.port

    @property
    def served(self) -> int:
        """Requests served so far."""
        return self._server.served

    def target(self, api: str = "chat", **kwargs: Any) -> Target:
        """A target pointing at this server ("chat", "completions" or "tgi"). The OpenAI
        routes ask for the server's times of each request (`include_metrics`), which the
        scripted server answers as vLLM does."""
        if api == "tgi":
            return TGI(self.url, name=kwargs.pop("name", "sim-tgi"), **kwargs)
        kwargs.setdefault("include_metrics", True)
        return OpenAI(
            self.url,
            model=self.config.model,
            api=api,  # type: ignore[arg-type]
            name=kwargs.pop("name", f"sim-{api}"),
            **kwargs,
        )

    def take_truth(self) -> Any:
        """When the server really handed each chunk to the connection (needs
        `record_truth=True`), on the clock of the client's records, one row per request:
        `request_id` (the client record's `id`), `t_received_ns`, `t_first_ns`,
        `t_last_ns`, `chunk_t_ns` and `chunk_tokens` (arrays). Taking clears the log.

        Example:
            >>> with llmbench.SimServer(record_truth=True) as sim:
            ...     res = llmbench.run_sweep(sim.target(), batch_sizes=[4])
            ...     truth = sim.take_truth()
        """
        import numpy as np

        from . import _deps

        raw = self._server.take_truth()
        off = raw["chunk_offsets"]
        t, k = raw["chunk_t_ns"], raw["chunk_tokens"]
        chunks_t = [t[off[i] : off[i + 1]] for i in range(len(off) - 1)]
        chunks_k = [k[off[i] : off[i + 1]] for i in range(len(off) - 1)]
        first = [int(c[0]) if len(c) else -1 for c in chunks_t]
        last = [int(c[-1]) if len(c) else -1 for c in chunks_t]
        return _deps.pandas().DataFrame(
            {
                "request_id": raw["request_id"],
                "t_received_ns": raw["t_received_ns"],
                "t_first_ns": np.asarray(first, dtype=np.int64),
                "t_last_ns": np.asarray(last, dtype=np.int64),
                "chunk_t_ns": chunks_t,
                "chunk_tokens": chunks_k,
            }
        )

    def close(self) -> None:
        """Stop the server (idempotent)."""
        self._server.close()

    def __enter__(self) -> SimServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SimServer(url={self.url!r}, running={self._server.running})"
