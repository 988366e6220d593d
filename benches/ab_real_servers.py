"""A/B on a GPU machine: `transformers serve --continuous-batching` against the naive
baseline served (`llmbench serve`), both LLaMA-2-7B-shaped with random FP16 weights, with
`llmbench.ab` (alternating blocks, 95% intervals, verdicts). What docs/comparisons.md shows.

Both servers run on the one GPU at once (13.5 GB of weights each), each in its own
process. transformers' model is a random init saved to a folder with the project's 32k
tokenizer (gpu_telemetry.py builds and serves it); the baseline builds its own
seeded random weights of the same shape. Output lengths are forced on both (transformers'
`generation_config` min_new_tokens, the baseline's `ignore_eos`).

    python benches/ab_real_servers.py --batch-sizes 1,8,32 --repeats 4 --max-tokens 32 \\
        --stage-s 8 --out results/ab_h200 --json docs/data/ab_h200.json

On the GPU machine the serving packages `transformers serve` needs are installed from
carried wheels first (../shared/gpu-server.md lists them; docs/comparisons.md has the
command).
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch-sizes", default="1,8,32")
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--stage-s", type=float, default=8.0, help="seconds per stage and block")
    ap.add_argument("--model-dir", default="/tmp/llama7b")
    ap.add_argument("--port", type=int, default=8011)
    ap.add_argument("--out", default="results/ab_gpu")
    ap.add_argument("--json", default=None, help="also write the table and statements here")
    args = ap.parse_args()
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    t0 = time.monotonic()
    model = Path(args.model_dir)
    build_model(model, tokenizer_json())
    print(f"model ready in {time.monotonic() - t0:.0f} s", flush=True)
    url = f"http://127.0.0.1:{args.port}"
    serve = start_server(model, args.port, Path("/tmp/transformers_serve.log"))
    try:
        print(f"transformers serve ready at {time.monotonic() - t0:.0f} s", flush=True)
        with llmbench.baseline.serve(
            "llama-2-7b",
            device="cuda",
            dtype="float16",
            tokenizer=str(tokenizer_json()),
            max_batch=max(batch_sizes),
            batch_window_ms=5,
        ) as baseline:
            print(f"baseline ready at {time.monotonic() - t0:.0f} s", flush=True)
            a = llmbench.OpenAI(
                url,
                model=str(model),
                api="completions",
                name="transformers",
                force_output_len="transformers",
            )
            b = baseline.target("completions", name="baseline", force_output_len="vllm")
            result = llmbench.ab(
                a,
                b,
                batch_sizes=batch_sizes,
                repeats=args.repeats,
                max_tokens=args.max_tokens,
                stage_duration_s=args.stage_s,
                server_metrics=False,
                progress=False,
                gpu_hourly_usd="H100",
                out_dir=args.out,
            )
    finally:
        serve.terminate()
        serve.wait(timeout=30)
    table = result.public_table()
    cols = ["batch_size", "metric", "a", "b", "diff_pct", "ci_low_pct", "ci_high_pct"]
    print(table[[*cols, "p_value", "verdict"]].round(3).to_string(index=False), flush=True)
    print("\n".join(result.statements()), flush=True)
    print(f"total {time.monotonic() - t0:.0f} s", flush=True)
    if args.json:
        summary = result.results.summary
        keep = ["target", "batch_size", "repeats", "n_requests", "n_failed"]
        keep += [c for c in summary.columns if c.startswith(("ttft_p50_ms", "output_tok_s"))]
        report = {
            "gpus": llmbench.list_gpus(),
            "settings": vars(args),
            "llmbench_version": llmbench.__version__,
            "statements": result.statements(),
            "table": json.loads(table.to_json(orient="records")),
            "summary": json.loads(summary[keep].to_json(orient="records")),
        }
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
