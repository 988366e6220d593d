"""The baseline's second engine: HuggingFace transformers `generate()`, as the workflow this
project replaces measured it, beside candle.

The same study as candle's (`llmbench.baseline.run(..., engine="transformers")`): the same
models (a HuggingFace LLaMA folder, or a preset built as `LlamaForCausalLM` with seeded
random weights of the preset's shape), the same prompts per batch, static batches with
left padding, and the same records and columns, because the engine's batches go through
the Rust bookkeeping candle's run uses (`_core.BaselineStudy`). Each token is timestamped
on llmbench's clock when `generate()` hands it to the streamer, which is after the host
has copied it from the device; the KV-cache bytes are read off the cache `generate()`
returns; GPU memory is the device's used memory (as NVML reports it for candle).

torch and transformers are an optional extra: `pip install 'llmbench[transformers]'`.
"""

from __future__ import annotations

import gc
import json
import time
from typing import Any

from . import _core
from ._core import ModelError

_EXTRA = "pip install 'llmbench[transformers]'"


def _require() -> tuple[Any, Any]:
    """torch and transformers, or an ImportError that names the extra."""
    try:
        import torch
        import transformers
    except ImportError as e:
        raise ImportError(
            f"the transformers engine of the baseline needs torch and transformers: {_EXTRA}"
        ) from e
    return torch, transformers


def _torch_dtype(torch: Any, name: str) -> Any:
    return {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}[name]


def _load_model(about: dict[str, Any], spec: dict[str, Any], torch: Any, tf: Any) -> Any:
    """The folder's weights, or the preset's shape with seeded random weights."""
    dtype = _torch_dtype(torch, about["dtype"])
    device = torch.device(spec["device"])
    if about["folder"] is not None:
        model = tf.AutoModelForCausalLM.from_pretrained(about["folder"], dtype=dtype)
        return model.to(device).eval()
    s = about["shape"]
    config = tf.LlamaConfig(
        hidden_size=s["hidden_size"],
        intermediate_size=s["intermediate_size"],
        num_hidden_layers=s["num_hidden_layers"],
        num_attention_heads=s["num_attention_heads"],
        num_key_value_heads=s["num_key_value_heads"],
        head_dim=s["head_dim"],
        vocab_size=s["vocab_size"],
        max_position_embeddings=s["max_position_embeddings"],
        rms_norm_eps=s["rms_norm_eps"],
        rope_theta=s["rope_theta"],
        tie_word_embeddings=s["tie_word_embeddings"],
        bos_token_id=s["bos_token_id"],
        eos_token_id=s["eos_token_ids"][0] if s["eos_token_ids"] else None,
        pad_token_id=0,
    )
    torch.manual_seed(int(spec["seed"]))
    # Built on the device in its dtype: a 13B preset never exists in float32 on the host.
    with torch.device(device):
        model = tf.LlamaForCausalLM(config).to(dtype)
    return model.eval()


def _gpu_used_bytes(torch: Any, device: Any) -> int | None:
    """The device's used memory (all processes, as NVML counts it), on CUDA."""
    if device.type != "cuda":
        return None
    free, total = torch.cuda.mem_get_info(device)
    return int(total - free)


def _cache_size(cache: Any) -> tuple[int, int]:
    """(bytes held by the key and value tensors, tokens per row) of a transformers cache."""
    layers = getattr(cache, "layers", None)
    if layers is not None:
        pairs = [(layer.keys, layer.values) for layer in layers]
    else:  # a legacy tuple of (key, value) per layer
        pairs = [(k, v) for k, v in cache]
    nbytes = sum(t.numel() * t.element_size() for pair in pairs for t in pair if t is not None)
    tokens = int(pairs[0][0].shape[-2]) if pairs and pairs[0][0] is not None else 0
    return int(nbytes), tokens


class _TokenClock:
    """A `generate()` streamer that timestamps each step's tokens on llmbench's clock.

    `generate()` puts the prompt first, then one token per row per step (already on the
    host), then calls `end()`."""

    def __init__(self, rows: int, eos: set[int], ignore_eos: bool, on_first: Any) -> None:
        self.prompt_seen = False
        self.tokens: list[list[int]] = [[] for _ in range(rows)]
        self.times: list[list[int]] = [[] for _ in range(rows)]
        self.stopped = [False] * rows
        self.step_times: list[int] = []
        self.eos = eos
        self.ignore_eos = ignore_eos
        self.on_first = on_first

    def put(self, value: Any) -> None:
        t = _core.now_ns()
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        ids = value.reshape(-1).tolist()
        self.step_times.append(t)
        for row, tok in enumerate(ids):
            if self.stopped[row]:
                continue  # a finished row keeps its slot and gets padding
            if tok in self.eos and not self.ignore_eos:
                self.stopped[row] = True  # end-of-sequence is not output
                continue
            self.tokens[row].append(int(tok))
            self.times[row].append(t)
        if len(self.step_times) == 1:
            self.on_first()

    def end(self) -> None:
        pass


def _generate_batch(
    model: Any, torch: Any, req: dict[str, Any], pad_id: int, eos: set[int], study: Any
) -> tuple[dict[str, Any], bool]:
    """One static batch through `generate()`: the `BatchOutput` dict, and whether Ctrl-C
    stopped it (its rows still running end as cancelled)."""
    device = model.device
    prompts: list[list[int]] = req["prompts"]
    padded = max(len(p) for p in prompts)
    new_tokens = int(req["max_new_tokens"][0])
    ignore_eos = bool(req["ignore_eos"][0])
    sampling = req["sampling"][0]
    temperature = sampling.get("temperature") or 0.0
    t_start = _core.now_ns()
    ids = torch.tensor([[pad_id] * (padded - len(p)) + p for p in prompts], device=device)
    mask = torch.tensor([[0] * (padded - len(p)) + [1] * len(p) for p in prompts], device=device)

    def read_gpu() -> None:
        used = _gpu_used_bytes(torch, device)
        if used is not None:
            study.gpu_used(used)

    clock = _TokenClock(len(prompts), eos, ignore_eos, read_gpu)
    kwargs: dict[str, Any] = {"do_sample": False}
    if temperature > 0:
        # One torch stream per batch (candle seeds one per row; samples differ by engine).
        torch.manual_seed(int(sampling["seed"]))
        kwargs = {"do_sample": True, "temperature": temperature, "top_k": 0}
        if sampling.get("top_p") is not None:
            kwargs["top_p"] = sampling["top_p"]
    interrupted = False
    out = None
    try:
        with torch.inference_mode():
            out = model.generate(
                ids,
                attention_mask=mask,
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens if ignore_eos else 0,
                pad_token_id=pad_id,
                eos_token_id=sorted(eos) if eos else None,
                streamer=clock,
                return_dict_in_generate=True,
                use_cache=True,
                **kwargs,
            )
    except KeyboardInterrupt:
        interrupted = True
    t_end = _core.now_ns()
    read_gpu()  # the cache is at its largest now
    kv_bytes, kv_tokens = (0, 0)
    if out is not None:
        cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
        if cache is not None:
            kv_bytes, kv_tokens = _cache_size(cache)
    rows = []
    for r in range(len(prompts)):
        if clock.stopped[r]:
            finish = "stop"
        elif interrupted:
            finish = "cancelled"
        else:
            finish = "length"
        rows.append({"tokens": clock.tokens[r], "times": clock.times[r], "finish": finish})
    steps = clock.step_times
    batch = {
        "rows": rows,
        "t_start": t_start,
        "t_prefill_done": steps[0] if steps else t_end,
        "t_end": steps[-1] if steps else t_end,
        "padded_len": padded,
        "decode_steps": max(len(steps) - 1, 0),
        "kv_bytes_allocated": kv_bytes,
        "kv_tokens_per_row": kv_tokens,
    }
    return batch, interrupted


def run_study(config: dict[str, Any]) -> dict[str, Any]:
    """The baseline study of `config` (the dict `_core.baseline_run` takes) with
    transformers: for each batch size, `warmup_batches` unmeasured batches, then
    `batches_per_stage` measured ones. Returns the dict `_core.baseline_run` returns."""
    torch, tf = _require()
    study = _core.BaselineStudy(config)
    about = json.loads(study.about_json())
    spec = config["model"]
    if str(spec["device"]).startswith("cuda"):
        # Memory an earlier study of this process left in torch's cache is not this one's.
        gc.collect()
        torch.cuda.empty_cache()
    t0 = time.perf_counter()
    try:
        model = _load_model(about, spec, torch, tf)
    except (OSError, ValueError, RuntimeError) as e:
        raise ModelError(f"transformers could not load {spec['model']!r}: {e}") from e
    if model.device.type == "cuda":
        torch.cuda.synchronize(model.device)
        # A preset is built in float32 and then cast: the float32 copy is not the model's
        # footprint, and torch would keep it cached (counted as used by the device).
        gc.collect()
        torch.cuda.empty_cache()
    load_s = time.perf_counter() - t0
    shape = about["shape"]
    eos = set(shape["eos_token_ids"])
    pad_id = model.generation_config.pad_token_id
    if pad_id is None:
        pad_id = 0
    interrupted = False
    sizes = [int(b) for b in config["batch_sizes"]]  # checked by BaselineStudy

    def one_batch(b: int, stage: int, k: int, warmup: bool) -> bool:
        req = study.batch(b, None if warmup else stage, k)
        try:
            batch, stopped = _generate_batch(model, torch, req, pad_id, eos, study)
        except torch.cuda.OutOfMemoryError as e:
            need = (
                about["kv_bytes_per_token"]
                * b
                * (max(map(len, req["prompts"])) + int(req["max_new_tokens"][0]) - 1)
            )
            raise ModelError(
                f"batch {b}: out of GPU memory in transformers (its KV cache alone would "
                f"be {need / 2**30:.1f} GiB by the formula {about['kv_formula']}): {e}"
            ) from e
        study.record(batch, req["prompt_index"], stage, warmup)
        return stopped

    open_stage: tuple[int, int] | None = None
    try:
        for si, b in enumerate(sizes):
            for k in range(int(config["warmup_batches"])):
                if one_batch(b, si, k, warmup=True):
                    interrupted = True
                    break
            if interrupted:
                break
            study.begin_stage()
            open_stage = (si, b)
            for k in range(int(config["batches_per_stage"])):
                if one_batch(b, si, k, warmup=False):
                    interrupted = True
                    break
            open_stage = None
            study.end_stage(si, b, interrupted)
            if interrupted:
                break
    except KeyboardInterrupt:  # between batches: what was measured stands
        interrupted = True
        if open_stage is not None:
            study.end_stage(*open_stage, True)
    info = {
        "baseline": {
            **about,
            "engine": "transformers",
            "transformers_version": tf.__version__,
            "torch_version": torch.__version__,
            "device": str(model.device),
            "load_s": load_s,
        }
    }
    return study.finish(info, interrupted)
