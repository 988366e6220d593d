"""Workloads beyond a prompt list: prompts of exact input lengths in tokens, ShareGPT
conversations, and fixed or sampled output lengths per request.

A `Dataset` goes wherever `run_sweep` takes `prompts`; each prompt then carries its own
output budget (`max_tokens`; force the length with the server's own option, e.g.
`extra_body={"ignore_eos": True}` on vLLM). Its SHA-256 (prompts and budgets) is
recorded in the run manifest.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import _core
from ._core import InvalidArgumentError
from .prompts import default_prompts

OutputLengths = int | tuple[int, int] | None


@dataclass
class Dataset:
    """Prompts, each with an optional output budget (None: the sweep's `max_tokens`)."""

    prompts: list[str]
    max_tokens: list[int] | None = None
    name: str = "custom"
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.prompts:
            raise InvalidArgumentError("the dataset is empty")
        if self.max_tokens is not None and (
            len(self.max_tokens) != len(self.prompts) or min(self.max_tokens) < 1
        ):
            raise InvalidArgumentError("max_tokens needs one budget >= 1 per prompt")

    def __len__(self) -> int:
        return len(self.prompts)

    def sha256(self) -> str:
        """Hash of the prompts and their budgets (identifies the workload)."""
        h = hashlib.sha256()
        for i, p in enumerate(self.prompts):
            h.update(p.encode("utf-8"))
            h.update(b"\x00")
            if self.max_tokens is not None:
                h.update(str(self.max_tokens[i]).encode())
            h.update(b"\x01")
        return h.hexdigest()

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "n": len(self), "sha256": self.sha256(), **self.info}


def _output_lengths(spec: OutputLengths, n: int, seed: int) -> list[int] | None:
    if spec is None:
        return None
    if isinstance(spec, int):
        if spec < 1:
            raise InvalidArgumentError("output_tokens must be >= 1")
        return [spec] * n
    lo, hi = spec
    if not 1 <= lo <= hi:
        raise InvalidArgumentError("output_tokens range must satisfy 1 <= lo <= hi")
    rng = np.random.default_rng(seed)
    return [int(x) for x in rng.integers(lo, hi + 1, size=n)]


def synthetic(
    n: int,
    input_tokens: int | tuple[int, int],
    tokenizer: str | Path,
    output_tokens: OutputLengths = None,
    seed: int = 0,
) -> Dataset:
    """`n` prompts of exactly `input_tokens` tokens (or uniform in a `(lo, hi)` range)
    under the target's `tokenizer.json`, built from the words of the bundled prompts.

    Example:
        >>> ds = llmbench.datasets.synthetic(100, 512, "tokenizer.json", output_tokens=128)
        >>> llmbench.run_sweep(target, prompts=ds, rates=[4, 8])
    """
    if n < 1:
        raise InvalidArgumentError("n must be >= 1")
    lengths = _output_lengths(input_tokens, n, seed + 1)
    assert lengths is not None
    words = sorted({w for p in default_prompts() for w in p.split() if w.isalpha()})
    prompts = _core.synthetic_prompts(str(tokenizer), lengths, words, int(seed))
    return Dataset(
        prompts,
        _output_lengths(output_tokens, n, seed + 2),
        name="synthetic",
        info={
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "seed": seed,
            "tokenizer": str(tokenizer),
        },
    )


def sharegpt(
    path: str | Path,
    n: int | None = None,
    tokenizer: str | Path | None = None,
    output_tokens: OutputLengths = None,
    seed: int = 0,
    max_output_tokens: int = 4096,
) -> Dataset:
    """First human turn of each ShareGPT conversation as the prompt (a JSON list of
    `{"conversations": [{"from": "human", "value": ...}, {"from": "gpt", ...}]}`).

    Output budgets: `output_tokens` if given; else, with a `tokenizer`, the length of the
    conversation's reply (capped at `max_output_tokens`); else the sweep's `max_tokens`.
    `n` picks that many conversations at random (seeded).

    Example:
        >>> ds = llmbench.datasets.sharegpt("ShareGPT_V3.json", n=500, tokenizer="tokenizer.json")
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InvalidArgumentError(f"cannot read ShareGPT file {path}: {e}") from e
    pairs: list[tuple[str, str]] = []
    for conv in data if isinstance(data, list) else []:
        turns = conv.get("conversations") if isinstance(conv, dict) else None
        if not isinstance(turns, list):
            continue
        human = next((t for t in turns if t.get("from") in ("human", "user")), None)
        if human is None or not str(human.get("value", "")).strip():
            continue
        i = turns.index(human)
        reply = next(
            (t for t in turns[i + 1 :] if t.get("from") in ("gpt", "assistant", "chatgpt")),
            None,
        )
        pairs.append((str(human["value"]), str(reply.get("value", "")) if reply else ""))
    if not pairs:
        raise InvalidArgumentError(f"no usable conversations in {path}")
    if n is not None:
        if n < 1:
            raise InvalidArgumentError("n must be >= 1")
        rng = np.random.default_rng(seed)
        idx = rng.permutation(len(pairs))[: min(n, len(pairs))]
        pairs = [pairs[i] for i in idx]
    prompts = [p for p, _ in pairs]
    budgets = _output_lengths(output_tokens, len(prompts), seed + 2)
    if budgets is None and tokenizer is not None:
        counts = _core.count_tokens(str(tokenizer), [r for _, r in pairs])
        budgets = [min(max(c, 1), max_output_tokens) for c in counts]
    return Dataset(
        prompts,
        budgets,
        name="sharegpt",
        info={"path": str(path), "seed": seed, "output_tokens": output_tokens},
    )


@dataclass
class Trace:
    """A request trace to replay: arrival times (seconds from the start) and, per request,
    its prompt and output budget. Pass it as `run_sweep(target, trace=...)`."""

    times_s: list[float]
    dataset: Dataset

    def __post_init__(self) -> None:
        if len(self.times_s) != len(self.dataset):
            raise InvalidArgumentError("a trace needs one arrival time per request")
        if any(not np.isfinite(t) or t < 0 for t in self.times_s):
            raise InvalidArgumentError("trace times must be finite seconds >= 0")

    def rate(self) -> float:
        """Average request rate over the trace."""
        span = max(self.times_s) if self.times_s else 0.0
        return len(self.times_s) / span if span > 0 else float(len(self.times_s))


def trace(path: str | Path, tokenizer: str | Path | None = None, seed: int = 0) -> Trace:
    """Read a JSONL trace: one request a line, `{"timestamp": seconds, "prompt": text,
    "output_tokens": n}`; instead of `prompt`, `input_tokens` asks for a synthetic prompt of
    exactly that many tokens (needs `tokenizer`). Lines are replayed in time order.

    Example:
        >>> tr = llmbench.datasets.trace("trace.jsonl", tokenizer="tokenizer.json")
        >>> llmbench.run_sweep(target, trace=tr)
    """
    rows = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise InvalidArgumentError(f"cannot read trace {path}: {e}") from e
    for no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            t = float(row["timestamp"])
        except (ValueError, KeyError, TypeError) as e:
            raise InvalidArgumentError(f"{path}:{no}: not a trace line ({e})") from e
        rows.append((t, row))
    if not rows:
        raise InvalidArgumentError(f"trace {path} is empty")
    rows.sort(key=lambda r: r[0])
    t0 = rows[0][0]
    need = [int(r["input_tokens"]) for _, r in rows if "prompt" not in r]
    synth: list[str] = []
    if need:
        if tokenizer is None:
            raise InvalidArgumentError("trace lines with input_tokens need a tokenizer")
        words = sorted({w for p in default_prompts() for w in p.split() if w.isalpha()})
        synth = _core.synthetic_prompts(str(tokenizer), need, words, int(seed))
    prompts, budgets, it = [], [], iter(synth)
    for _, r in rows:
        prompts.append(str(r["prompt"]) if "prompt" in r else next(it))
        budgets.append(int(r.get("output_tokens", 0)))
    have_budgets = all(b > 0 for b in budgets)
    ds = Dataset(prompts, budgets if have_budgets else None, name="trace", info={"path": str(path)})
    return Trace([t - t0 for t, _ in rows], ds)
