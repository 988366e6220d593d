"""The naive baseline: a LLaMA in candle (Rust), with static batching and a contiguous KV
cache, measured in process or served over HTTP.

It answers "what does plain `generate()` give me?" next to vLLM and TGI: the same model
and prompts, no paging, no continuous batching, no wasted work. Models: a HuggingFace
LLaMA folder (`config.json`, `*.safetensors`, `tokenizer.json`) or a preset with seeded
random weights (`tiny`, `llama-2-7b`, `llama-2-13b`): random weights of the right shape
cost exactly the compute of trained ones. CUDA needs the wheel built by `make build-cuda`.

Example:
    >>> res = llmbench.baseline.run("tiny", batch_sizes=[1, 8], prompt_tokens=64,
    ...                             max_new_tokens=32)
    >>> res.summary[["batch_size", "ttft_p50_ms", "decode_tok_s", "kv_cache_bytes"]]
    >>> with llmbench.baseline.serve("tiny") as server:
    ...     served = llmbench.run_sweep(server.target(), batch_sizes=[1, 8])
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import _core
from ._core import InvalidArgumentError
from ._settings import BASELINE_MODEL, BASELINE_RUN, BASELINE_SERVER
from .errors import SweepInterrupted
from .pricing import gpu_price
from .prompts import load_prompts, prompts_hash
from .records import SUFFIX as RECORD_SUFFIX
from .records import RecordFiles, record_folder
from .results import Results
from .targets import OpenAI, Target

PRESETS = ("tiny", "llama-2-7b", "llama-2-13b")
# In-process engines of `run`: candle (Rust) and HuggingFace transformers (Python).
ENGINES = ("candle", "transformers")


def _model_spec(
    model: str | Path, dtype: str | None, device: str, seed: int, tokenizer: str | Path | None
) -> dict[str, Any]:
    return {
        "model": str(model),
        "dtype": dtype,
        "device": device,
        "seed": int(seed),
        "tokenizer": str(tokenizer) if tokenizer is not None else None,
    }


def run(
    model: str | Path = "tiny",
    *,
    batch_sizes: Sequence[int] = tuple(BASELINE_RUN["batch_sizes"]),
    prompts: Any = None,
    prompt_ids: Sequence[Sequence[int]] | None = None,
    prompt_tokens: int | None = None,
    max_new_tokens: int = BASELINE_RUN["max_new_tokens"],
    batches_per_stage: int = BASELINE_RUN["batches_per_stage"],
    warmup_batches: int = BASELINE_RUN["warmup_batches"],
    ignore_eos: bool = BASELINE_RUN["ignore_eos"],
    temperature: float | None = None,
    top_p: float | None = None,
    dtype: str | None = None,
    device: str = BASELINE_MODEL["device"],
    seed: int = BASELINE_RUN["seed"],
    tokenizer: str | Path | None = None,
    gpu_hourly_usd: str | float | None = None,
    n_gpus: int = 1,
    name: str = "baseline",
    out_dir: str | Path | None = None,
    engine: str = "candle",
) -> Results:
    """Measure the baseline in process: for each batch size, `batches_per_stage` static
    batches of `max_new_tokens` new tokens each, after `warmup_batches` unmeasured ones at
    that size (a new shape's first batch pays one-time costs on a GPU).

    `engine`: "candle" (llmbench's own LLaMA, in Rust) or "transformers" (HuggingFace
    `generate()`, what the seed workflow measured; needs `pip install
    'llmbench[transformers]'`). Both take the same models and prompts and give the same
    columns, from the same bookkeeping.

    Prompts: text (`prompts`: a list, a file, or None for the packaged prompts), token ids
    (`prompt_ids`), or seeded random prompts of exactly `prompt_tokens` tokens. Greedy
    unless `temperature` > 0. Returns the same `Results` as `run_sweep` (one request row
    per sequence, TTFT = prefill, ITL = decode steps), plus per-stage columns:
    `prefill_ms`, `decode_step_ms`, `decode_tok_s`, `batch_output_tok_s`,
    `usd_per_1m_decode_tokens`, `kv_cache_bytes` (from the cache tensors),
    `kv_cache_formula_bytes` (the KV-cache formula of docs/architecture.md, "Metrics"; they
    agree), `kv_cache_gib`,
    `host_rss_peak_gib` and, on a GPU, `gpu_mem_used_gib`.

    Ctrl-C stops at the next decode step and raises `SweepInterrupted` holding what was
    measured.

    Example:
        >>> res = llmbench.baseline.run("tiny", batch_sizes=[1, 4], prompt_tokens=32,
        ...                             max_new_tokens=16)
        >>> res.summary[["batch_size", "decode_tok_s", "kv_cache_bytes"]]
    """
    if engine not in ENGINES:
        known = ", ".join(ENGINES)
        raise InvalidArgumentError(f"unknown baseline engine {engine!r}; known: {known}")
    sizes = [int(b) for b in batch_sizes]
    given = sum(x is not None for x in (prompt_ids, prompt_tokens))
    if given > 1 or (given and prompts is not None):
        raise InvalidArgumentError("give one of prompts, prompt_ids or prompt_tokens")
    prompt_list = None if given else load_prompts(prompts)
    price = gpu_price(gpu_hourly_usd)
    folder, owner = record_folder(out_dir)
    records_path = folder / f"requests_{name}{RECORD_SUFFIX}"
    config = {
        "model": _model_spec(model, dtype, device, seed, tokenizer),
        "batch_sizes": sizes,
        "batches_per_stage": int(batches_per_stage),
        "prompts": prompt_list,
        "prompt_ids": [list(map(int, p)) for p in prompt_ids] if prompt_ids is not None else None,
        "prompt_tokens": int(prompt_tokens) if prompt_tokens is not None else None,
        "max_new_tokens": int(max_new_tokens),
        "ignore_eos": bool(ignore_eos),
        "sampling": {"temperature": temperature, "top_p": top_p, "seed": int(seed)},
        "warmup_batches": int(warmup_batches),
        "seed": int(seed),
        "pricing": {"usd_per_gpu_hour": price, "n_gpus": int(n_gpus)},
        "records_path": str(records_path),
    }
    manifest: dict[str, Any] = {
        "llmbench_version": _core.__version__,
        "kind": "baseline_in_process",
        "started_at": _dt.datetime.now(_dt.timezone.utc).isoformat(),
        "engine": engine,
        "targets": [{"name": name, "api": "in-process", "model": str(model)}],
        "settings": {k: v for k, v in config.items() if k not in ("prompts", "prompt_ids")},
        "prompts": (
            {"n": len(prompt_list), "sha256": prompts_hash(prompt_list)}
            if prompt_list is not None
            else {"prompt_tokens": prompt_tokens, "n_ids": len(prompt_ids or [])}
        ),
    }
    if engine == "transformers":
        from .transformers_engine import run_study

        out = run_study(config)
    else:
        out = _core.baseline_run(config)
    info = out["server_info"]["baseline"]
    manifest["servers"] = {name: info}
    manifest["model_arch"] = {
        "name": str(model),
        "bytes_per_token": info["kv_bytes_per_token"],
        "formula": info["kv_formula"],
    }
    manifest["warnings"] = out["warnings"]
    manifest["interrupted"] = out["interrupted"]
    manifest["clock"] = {"unix_anchor_ns": out["unix_anchor_ns"]}
    desc = {"name": name, "api": "in-process", "model": str(model)}
    res = Results.from_engine([(desc, out, 0)], manifest, RecordFiles({name: records_path}, owner))
    if out_dir is not None:
        res.save(out_dir)
    if out["interrupted"]:
        raise SweepInterrupted(res, "baseline run interrupted; the results hold what was measured")
    return res


class BaselineServer:
    """The baseline as an OpenAI-compatible streaming server on 127.0.0.1, in this
    process: `/v1/completions`, `/v1/chat/completions` (LLaMA-2 chat format), `/v1/models`,
    `/health`, `/info`, `/metrics`. Requests that arrive together (within
    `batch_window_ms`) share one static batch of at most `max_batch`; later ones wait for
    it to finish.

    Example:
        >>> with llmbench.baseline.BaselineServer("tiny", max_batch=16) as server:
        ...     res = llmbench.run_sweep(server.target(), batch_sizes=[1, 16])
    """

    def __init__(
        self,
        model: str | Path = "tiny",
        *,
        max_batch: int = BASELINE_SERVER["max_batch"],
        batch_window_ms: float = BASELINE_SERVER["batch_window_ms"],
        default_max_tokens: int = BASELINE_SERVER["default_max_tokens"],
        dtype: str | None = None,
        device: str = BASELINE_MODEL["device"],
        seed: int = BASELINE_MODEL["seed"],
        tokenizer: str | Path | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        config = {
            "model": _model_spec(model, dtype, device, seed, tokenizer),
            "max_batch": int(max_batch),
            "batch_window_ms": float(batch_window_ms),
            "default_max_tokens": int(default_max_tokens),
        }
        self._server = _core.BaselineServer(config, host, port)
        self.max_batch = max_batch

    @property
    def url(self) -> str:
        """Base URL, e.g. `http://127.0.0.1:40123`."""
        return self._server.url

    @property
    def model(self) -> str:
        """The model name requests use."""
        return self._server.model

    @property
    def info(self) -> dict[str, Any]:
        """What the server says about itself (also at `/info`)."""
        return self._server.info  # type: ignore[no-any-return]

    @property
    def served(self) -> int:
        """Requests finished so far."""
        return self._server.served

    def target(self, api: str = "completions", **kwargs: Any) -> Target:
        """An `OpenAI` target for this server; outputs forced to `max_tokens` (the baseline
        honours vLLM's `ignore_eos`/`min_tokens`), asking for the server's times of each
        request (`include_metrics`, answered as vLLM does)."""
        kwargs.setdefault("force_output_len", "vllm")
        kwargs.setdefault("include_metrics", True)
        return OpenAI(
            self.url,
            model=self.model,
            api=api,  # type: ignore[arg-type]
            name=kwargs.pop("name", "baseline"),
            **kwargs,
        )

    def close(self) -> None:
        """Stop the server (idempotent)."""
        self._server.close()

    def __enter__(self) -> BaselineServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"BaselineServer(url={self.url!r}, model={self.model!r})"


def serve(model: str | Path = "tiny", **kwargs: Any) -> BaselineServer:
    """Start a `BaselineServer` (see its arguments).

    Example:
        >>> server = llmbench.baseline.serve("tiny")
        >>> server.url
    """
    return BaselineServer(model, **kwargs)
