"""Multi-turn conversations on a GPU machine: `transformers serve --continuous-batching`
and the naive baseline served (`llmbench serve`), both LLaMA-2-7B-shaped with random FP16
weights, each sent the same seeded conversations (every turn carrying the whole history
with the server's own answers). What docs/workloads.md shows: TTFT by turn against the
context each turn sends, for a server with a paged cache and one without any cache.

Both servers run on the one GPU at once (13.5 GB of weights each), each in its own
process, measured one after the other. The model and server are gpu_telemetry.py's.
Output lengths are forced on both (transformers' `generation_config` min_new_tokens, the
baseline's `ignore_eos`), so every history grows by exactly `--output-tokens` per turn.

    python benches/workloads_gpu.py --conversations 8 --turns 5 --input-tokens 256 \\
        --output-tokens 64 --batch-sizes 1,4 --json docs/data/workloads_h200.json

On the GPU machine the serving packages are installed from carried wheels first
(docs/comparisons.md has the commands).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import llmbench

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "python"))
from gpu_telemetry import build_model, start_server  # the same 7B model and server
from tiny_model import tokenizer_json


def _turn_table(res: llmbench.Results) -> list[dict]:
    cols = ["target", "batch_size", "turn", "n", "n_failed", "n_in_mean", "ttft_p50_ms"]
    cols += ["ttft_p99_ms", "tpot_mean_ms"]
    return json.loads(res.by_turn()[cols].round(2).to_json(orient="records"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--conversations", type=int, default=8)
    ap.add_argument("--turns", type=int, default=5)
    ap.add_argument("--input-tokens", type=int, default=256)
    ap.add_argument("--output-tokens", type=int, default=64)
    ap.add_argument("--think-time", type=float, default=0.0)
    ap.add_argument("--batch-sizes", default="1,4")
    ap.add_argument("--model-dir", default="/tmp/llama7b")
    ap.add_argument("--port", type=int, default=8011)
    ap.add_argument("--out", default="results/workloads_gpu")
    ap.add_argument("--json", default=None, help="also write the per-turn tables here")
    args = ap.parse_args()
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    t0 = time.monotonic()
    tok = tokenizer_json()
    chats = llmbench.datasets.conversations(
        args.conversations,
        turns=args.turns,
        input_tokens=args.input_tokens,
        output_tokens=args.output_tokens,
        tokenizer=tok,
        think_time_s=args.think_time,
    )
    model = Path(args.model_dir)
    build_model(model, tok)
    print(f"model ready in {time.monotonic() - t0:.0f} s", flush=True)
    serve = start_server(model, args.port, Path("/tmp/transformers_serve.log"))
    runs = {}
    try:
        print(f"transformers serve ready at {time.monotonic() - t0:.0f} s", flush=True)
        with llmbench.baseline.serve(
            "llama-2-7b",
            device="cuda",
            dtype="float16",
            tokenizer=str(tok),
            max_batch=max(batch_sizes),
            batch_window_ms=5,
        ) as baseline:
            print(f"baseline ready at {time.monotonic() - t0:.0f} s", flush=True)
            targets = {
                "transformers": llmbench.OpenAI(
                    f"http://127.0.0.1:{args.port}",
                    model=str(model),
                    api="completions",
                    name="transformers",
                    force_output_len="transformers",
                ),
                "baseline": baseline.target(
                    "completions", name="baseline", force_output_len="vllm"
                ),
            }
            for name, target in targets.items():
                runs[name] = llmbench.run_sweep(
                    target,
                    prompts=chats,
                    batch_sizes=batch_sizes,
                    requests_per_stage=args.conversations,
                    max_tokens=args.output_tokens,
                    tokenizer=tok,
                    server_metrics=500,
                    progress=False,
                    gpu_hourly_usd="H100",
                    out_dir=f"{args.out}/{name}",
                )
                print(f"{name} done at {time.monotonic() - t0:.0f} s", flush=True)
    finally:
        serve.terminate()
        serve.wait(timeout=30)
    both = llmbench.Results.concat(list(runs.values()))
    table = both.by_turn()
    print(table.round(1).to_string(index=False), flush=True)
    keep = ["target", "batch_size", "n_ok", "n_failed", "ttft_p50_ms", "output_tok_s"]
    keep += ["prefix_cache_hit_rate"]
    print(both.summary[keep].round(3).to_string(index=False), flush=True)
    print(json.dumps(both.manifest.get("prefix_cache") or {}), flush=True)
    both.plot(args.out, close=True)
    print(f"total {time.monotonic() - t0:.0f} s", flush=True)
    if args.json:
        report = {
            "gpus": llmbench.list_gpus(),
            "settings": vars(args),
            "llmbench_version": llmbench.__version__,
            "by_turn": _turn_table(both),
            "summary": json.loads(both.summary[keep].to_json(orient="records")),
            "prefix_cache": {n: r.manifest.get("prefix_cache") for n, r in runs.items()},
        }
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
