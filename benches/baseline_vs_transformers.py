"""The baseline's two engines, candle and HuggingFace transformers `generate()`, measured by
the same study (`llmbench.baseline.run(engine=...)`): same architecture, same prompts,
same dtype, same device, one process, one run.

For each batch size: `--repeats` static batches of `--prompt-tokens`-token prompts (the
same seeded random ids for both), `--new-tokens` new tokens each with EOS ignored, greedy,
after one warm-up batch. Reported for both engines, from the same columns: prefill (TTFT),
decode step and decode tokens/s (batch / step time), KV-cache bytes (from the cache tensors,
and by the formula of docs/architecture.md, "Metrics"), GPU memory.

A cross-check of the transformers engine's timestamps, outside llmbench: generate() timed
directly (`transformers_direct`: the median of `--repeats` runs of generate(new_tokens)
minus generate(1), over new_tokens - 1 steps).

Weights: on CUDA, both build seeded random weights of the preset's shape (random weights
cost the same compute); on the CPU, transformers builds the model and saves it, and candle
loads that folder, so both run the very same weights.

    python benches/baseline_vs_transformers.py --device cuda --preset llama-2-7b \\
        --dtype float16 --batch-sizes 1,8,32,64 --out docs/data/baseline_h200.json
    python benches/baseline_vs_transformers.py --device cpu --preset tiny \\
        --dtype float32 --batch-sizes 1,8,32 --out docs/data/baseline_cpu_tiny.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import llmbench
import numpy as np

SHAPES = {
    # hidden, intermediate, layers, heads, kv heads, vocab (as src/baseline/config.rs)
    "tiny": (256, 688, 4, 8, 4, 32000),
    "llama-2-7b": (4096, 11008, 32, 32, 32, 32000),
    "llama-2-13b": (5120, 13824, 40, 40, 40, 32000),
}


def machine(device: str) -> dict:
    info = {"host": platform.node(), "cpu": platform.processor(), "cpus": os.cpu_count()}
    if device.startswith("cuda"):
        import torch

        info["gpu"] = torch.cuda.get_device_name(0)
        info["torch"] = torch.__version__
    import transformers

    info["transformers"] = transformers.__version__
    info["llmbench"] = llmbench.__version__
    return info


def prompts(n: int, tokens: int, seed: int) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [[1, *rng.integers(259, 32000, tokens - 1).tolist()] for _ in range(n)]


def hf_config(preset: str):
    from transformers import LlamaConfig

    h, i, layers, heads, kv, vocab = SHAPES[preset]
    return LlamaConfig(
        hidden_size=h,
        intermediate_size=i,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        vocab_size=vocab,
        max_position_embeddings=4096,
        rms_norm_eps=1e-5,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )


def run_engine(engine: str, model: str, args, ids: list[list[int]]) -> list[dict]:
    rows = []
    # One study per batch size, each with its own warm-up batch: the first batch of a new
    # shape pays one-time costs (kernel selection, allocator growth) in both engines.
    for b in args.batch_sizes:
        res = llmbench.baseline.run(
            model,
            engine=engine,
            batch_sizes=[b],
            prompt_ids=ids,
            max_new_tokens=args.new_tokens,
            batches_per_stage=args.repeats,
            warmup_batches=1,
            device=args.device,
            dtype=args.dtype,
            seed=args.seed,
            name=engine,
        )
        s = res.summary.iloc[0]
        rows.append(
            {
                "batch_size": b,
                "prefill_ms": float(s["prefill_ms"]),
                "decode_step_ms": float(s["decode_step_ms"]),
                "decode_tok_s": float(s["decode_tok_s"]),
                "ttft_p50_ms": float(s["ttft_p50_ms"]),
                "kv_cache_bytes": int(s["kv_cache_bytes"]),
                "kv_cache_formula_bytes": int(s["kv_cache_formula_bytes"]),
                "gpu_mem_used_gib": float(s.get("gpu_mem_used_gib", float("nan"))),
                "host_rss_peak_gib": float(s.get("host_rss_peak_gib", float("nan"))),
                "n_ok": int(s["n_ok"]),
            }
        )
        print(engine, rows[-1], flush=True)
    return rows


def run_transformers_direct(model, args, ids: list[list[int]]) -> list[dict]:
    import torch

    dev = torch.device(args.device)

    def timed(batch, new_tokens: int) -> float:
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        model.generate(
            batch,
            attention_mask=torch.ones_like(batch),
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            pad_token_id=0,
        )
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    rows = []
    with torch.inference_mode():
        for b in args.batch_sizes:
            batch = torch.tensor(ids[:b], device=dev)
            timed(batch, args.new_tokens)  # warm-up
            prefill = [timed(batch, 1) for _ in range(args.repeats)]
            full = [timed(batch, args.new_tokens) for _ in range(args.repeats)]
            p, f = statistics.median(prefill), statistics.median(full)
            steps = args.new_tokens - 1
            rows.append(
                {
                    "batch_size": b,
                    "prefill_ms": p * 1e3,
                    "decode_step_ms": (f - p) / steps * 1e3,
                    "decode_tok_s": b * steps / (f - p),
                    "total_s": f,
                }
            )
            print("transformers_direct", rows[-1], flush=True)
    return rows


def run_served(args) -> list[dict]:
    model = args.preset if args.device != "cpu" else "tiny"
    with llmbench.baseline.serve(
        model,
        device=args.device,
        dtype=args.dtype,
        seed=args.seed,
        tokenizer=args.tokenizer,
        max_batch=max(args.batch_sizes),
        batch_window_ms=5,
    ) as server:
        res = llmbench.run_sweep(
            server.target(),
            batch_sizes=args.batch_sizes,
            max_tokens=args.new_tokens,
            progress=False,
        )
    cols = ["batch_size", "n_ok", "n_failed", "ttft_p50_ms", "tpot_mean_ms", "output_tok_s"]
    rows = res.summary[cols].to_dict(orient="records")
    for r in rows:
        print("served", r, flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--preset", default="tiny", choices=sorted(SHAPES))
    ap.add_argument("--dtype", default=None)
    ap.add_argument("--batch-sizes", default="1,8,32")
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    ap.add_argument(
        "--served",
        action="store_true",
        help="also serve the baseline and measure it with run_sweep at the same batch sizes",
    )
    ap.add_argument("--tokenizer", default=None, help="tokenizer.json for the served baseline")
    args = ap.parse_args()
    args.batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    args.dtype = args.dtype or ("float16" if args.device.startswith("cuda") else "float32")
    import torch
    from transformers import LlamaForCausalLM

    torch_dtype = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}[
        args.dtype
    ]
    # As many distinct prompts as the largest batch: every batch of a stage holds them all.
    ids = prompts(max(args.batch_sizes), args.prompt_tokens, args.seed)
    report = {
        "machine": machine(args.device),
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
    }
    torch.manual_seed(args.seed)
    if args.device == "cpu":
        torch.set_num_threads(os.cpu_count() or 1)
        with tempfile.TemporaryDirectory() as tmp:
            hf = LlamaForCausalLM(hf_config(args.preset)).to(torch_dtype).eval()
            hf.save_pretrained(tmp, safe_serialization=True)
            report["candle"] = run_engine("candle", tmp, args, ids)
            report["transformers"] = run_engine("transformers", tmp, args, ids)
            report["transformers_direct"] = run_transformers_direct(hf, args, ids)
        report["weights"] = "the same (transformers' random init, saved and loaded by both)"
    else:
        report["candle"] = run_engine("candle", args.preset, args, ids)
        report["transformers"] = run_engine("transformers", args.preset, args, ids)
        with torch.device(args.device):
            hf = LlamaForCausalLM(hf_config(args.preset)).to(torch_dtype).eval()
        report["transformers_direct"] = run_transformers_direct(hf, args, ids)
        report["weights"] = "seeded random of the same shape (candle's and torch's own)"
    if args.served:
        report["served"] = run_served(args)

    def ratio(a: str, b: str, col: str) -> dict[str, float]:
        return {
            str(x["batch_size"]): x[col] / y[col] for x, y in zip(report[a], report[b], strict=True)
        }

    report["ratio_decode_tok_s"] = ratio("candle", "transformers", "decode_tok_s")
    report["ratio_prefill_ms"] = ratio("transformers", "candle", "prefill_ms")
    # How far the engine's streamer timestamps are from timing generate() directly.
    report["engine_vs_direct_decode_tok_s"] = ratio(
        "transformers", "transformers_direct", "decode_tok_s"
    )
    print(json.dumps(report["engine_vs_direct_decode_tok_s"]), flush=True)
    print(json.dumps(report["ratio_decode_tok_s"]), flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
