"""Check the baseline on a device against the golden fixture: the tiny LLaMA whose greedy
tokens HuggingFace transformers computed (tests/fixtures/baseline), served on `--device`
in float32, both prompts sent together so they share one left-padded static batch.

The CPU path is checked by the test suite; this is for the CUDA build on a GPU machine:

    python benches/baseline_golden_check.py --device cuda
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import urllib.request
from pathlib import Path

import llmbench

GOLDEN = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "baseline"


def complete(url: str, body: dict, out: dict, key: int) -> None:
    req = urllib.request.Request(
        f"{url}/v1/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=120) as r:
        out[key] = json.loads(r.read())["llmbench_token_ids"]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args()
    expected = json.loads((GOLDEN / "expected.json").read_text())
    folder = str(GOLDEN / "tiny-llama")
    got: dict[int, list[int]] = {}
    with llmbench.baseline.serve(
        folder, device=args.device, dtype="float32", max_batch=2, batch_window_ms=500
    ) as server:
        threads = [
            threading.Thread(
                target=complete,
                args=(
                    server.url,
                    {
                        "model": folder,
                        "prompt": p,
                        "max_tokens": 8,
                        "temperature": 0,
                        "ignore_eos": True,
                    },
                    got,
                    i,
                ),
            )
            for i, p in enumerate(expected["prompts"])
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        batches = urllib.request.urlopen(f"{server.url}/metrics").read().decode()
    ok = all(got[i] == expected["greedy"][i] for i in range(len(expected["prompts"])))
    one_batch = "llmbench_baseline_batches_total 1" in batches
    print(
        json.dumps(
            {
                "device": args.device,
                "tokens": got,
                "match_transformers": ok,
                "one_padded_batch": one_batch,
            }
        )
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
