"""Workloads beyond a prompt list: prompts of exact input lengths in tokens, prompts that
share a prefix, multi-turn conversations, ShareGPT (first turns or whole conversations),
and fixed or sampled output lengths per request (docs/workloads.md).

A `Dataset` or `Conversations` goes wherever `run_sweep` takes `prompts`; each prompt (or
turn) then carries its own output budget (`max_tokens`; force the length with the
server's own option, e.g. `extra_body={"ignore_eos": True}` on vLLM). Its SHA-256 is
recorded in the run manifest. Lengths are exact under the `tokenizer` given; without one
they count whitespace-separated words (the scripted server's tokens).
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import _core
from ._core import InvalidArgumentError
from .prompts import default_prompts

OutputLengths = int | tuple[int, int] | None
Lengths = int | tuple[int, int]

#: How think times between turns are drawn.
THINK_TIMES = ("fixed", "exponential")
#: Defaults of the synthetic workloads (the command line's too).
DEFAULT_TURNS = 5
DEFAULT_INPUT_TOKENS = 128
DEFAULT_N_PROMPTS = 64


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


def _vocabulary() -> list[str]:
    """The words synthetic text is made of: those of the bundled prompts."""
    return sorted({w for p in default_prompts() for w in p.split() if w.isalpha()})


def _texts(lengths: list[int], tokenizer: str | Path | None, seed: int) -> list[str]:
    """Seeded texts of exactly these lengths: tokens under `tokenizer`, else words."""
    if tokenizer is not None:
        return list(_core.synthetic_prompts(str(tokenizer), lengths, _vocabulary(), int(seed)))
    words = np.array(_vocabulary())
    rng = np.random.default_rng(seed)
    return [" ".join(words[rng.integers(0, len(words), size=n)]) for n in lengths]


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
    prompts = _texts(lengths, tokenizer, seed)
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
    multi_turn: bool = False,
    think_time_s: float = 0.0,
    think_time: str = "fixed",
) -> Dataset | Conversations:
    """First human turn of each ShareGPT conversation as the prompt (a JSON list of
    `{"conversations": [{"from": "human", "value": ...}, {"from": "gpt", ...}]}`), or with
    `multi_turn=True` every human turn, as `Conversations` (each turn then carries the
    history with the server's own answers, not the dataset's).

    Output budgets: `output_tokens` if given; else, with a `tokenizer`, the length of the
    dataset's reply to that turn (capped at `max_output_tokens`); else the sweep's
    `max_tokens`. `n` picks that many conversations at random (seeded). Empty human
    turns are skipped (counted in `info["skipped_empty_turns"]`).

    Example:
        >>> ds = llmbench.datasets.sharegpt("ShareGPT_V3.json", n=500, tokenizer="tokenizer.json")
        >>> chats = llmbench.datasets.sharegpt("ShareGPT_V3.json", n=100, multi_turn=True)
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InvalidArgumentError(f"cannot read ShareGPT file {path}: {e}") from e
    if multi_turn:
        return _sharegpt_conversations(
            path,
            data,
            n,
            tokenizer,
            output_tokens,
            seed,
            max_output_tokens,
            think_time_s,
            think_time,
        )
    pairs: list[tuple[str, str]] = []
    for conv in data if isinstance(data, list) else []:
        turns = conv.get("conversations") if isinstance(conv, dict) else None
        if not isinstance(turns, list):
            continue
        human = next((t for t in turns if _role(t) in _HUMAN), None)
        if human is None or not (_text(human) or "").strip():
            continue
        i = turns.index(human)
        reply = next((t for t in turns[i + 1 :] if _role(t) in _ASSISTANT), None)
        pairs.append((_text(human) or "", (_text(reply) or "") if reply else ""))
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


_HUMAN = ("human", "user")
_ASSISTANT = ("gpt", "assistant", "chatgpt")


def _role(turn: Any) -> Any:
    """A turn's speaker, None for a turn that is not an object."""
    return turn.get("from") if isinstance(turn, dict) else None


def _text(turn: Any) -> str | None:
    """A turn's text: its `value` when that is a string; None (the turn is skipped) for
    a missing, null or non-text value, which must never become a prompt like 'None'."""
    value = turn.get("value") if isinstance(turn, dict) else None
    return value if isinstance(value, str) else None


def _sharegpt_conversations(
    path: str | Path,
    data: Any,
    n: int | None,
    tokenizer: str | Path | None,
    output_tokens: OutputLengths,
    seed: int,
    max_output_tokens: int,
    think_time_s: float,
    think_time: str,
) -> Conversations:
    """Every human turn of each ShareGPT conversation, with the reply lengths."""
    convs: list[tuple[list[str], list[str]]] = []
    skipped = 0
    for conv in data if isinstance(data, list) else []:
        msgs = conv.get("conversations") if isinstance(conv, dict) else None
        if not isinstance(msgs, list):
            continue
        users: list[str] = []
        replies: list[str] = []
        for i, m in enumerate(msgs):
            if _role(m) not in _HUMAN:
                continue
            text = _text(m)
            if text is None or not text.strip():
                skipped += 1
                continue
            nxt = msgs[i + 1] if i + 1 < len(msgs) else None
            reply = nxt if _role(nxt) in _ASSISTANT else None
            users.append(text)
            replies.append((_text(reply) or "") if reply else "")
        if users:
            convs.append((users, replies))
    if not convs:
        raise InvalidArgumentError(f"no conversation in {path} has a human turn")
    if n is not None:
        if n < 1:
            raise InvalidArgumentError("n must be >= 1")
        idx = np.random.default_rng(seed).permutation(len(convs))[: min(n, len(convs))]
        convs = [convs[i] for i in idx]
    sizes = [len(u) for u, _ in convs]
    flat = _output_lengths(output_tokens, sum(sizes), seed + 2)
    if flat is None and tokenizer is not None:
        counts = _core.count_tokens(str(tokenizer), [r for _, rs in convs for r in rs])
        flat = [min(max(c, 1), max_output_tokens) for c in counts]
    budgets = None
    if flat is not None:
        budgets = _split(flat, sizes)
    return Conversations(
        [u for u, _ in convs],
        budgets,
        think_time_s=think_time_s,
        think_time=think_time,
        name="sharegpt_multi_turn",
        info={
            "path": str(path),
            "seed": seed,
            "output_tokens": output_tokens,
            "skipped_empty_turns": skipped,
        },
    )


@dataclass
class Conversations:
    """Multi-turn conversations: `turns[c][k]` is the user's message of turn `k` of
    conversation `c`, `max_tokens[c][k]` its output budget (None: the sweep's
    `max_tokens`), `system[c]` an optional system prompt. Each turn's request carries the
    whole history with the server's own previous answers; the next turn leaves
    `think_time_s` after the previous one ends ("fixed", or "exponential" with that mean,
    seeded). A closed-loop stage keeps `batch_size` conversations in flight and counts
    `requests_per_stage` in conversations; an open-loop stage schedules first turns.

    Example:
        >>> chats = llmbench.datasets.Conversations([["Hi!", "Tell me more."]], [[32, 64]])
    """

    turns: list[list[str]]
    max_tokens: list[list[int]] | None = None
    system: list[str | None] | None = None
    think_time_s: float = 0.0
    think_time: str = "fixed"
    name: str = "conversations"
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.turns:
            raise InvalidArgumentError("the conversation dataset is empty")
        for c, conv in enumerate(self.turns):
            if not conv:
                raise InvalidArgumentError(f"conversation {c} has no turn")
            for k, text in enumerate(conv):
                if not isinstance(text, str) or not text.strip():
                    raise InvalidArgumentError(
                        f"conversation {c}, turn {k}: the user's message is empty"
                    )
        if self.max_tokens is not None and (
            [len(b) for b in self.max_tokens] != [len(t) for t in self.turns]
            or min(min(b) for b in self.max_tokens) < 1
        ):
            raise InvalidArgumentError("max_tokens needs one budget >= 1 per turn")
        if self.system is not None and len(self.system) != len(self.turns):
            raise InvalidArgumentError("system needs one entry (or None) per conversation")
        if self.think_time not in THINK_TIMES:
            raise InvalidArgumentError(
                f"think_time must be one of {', '.join(THINK_TIMES)}, got {self.think_time!r}"
            )
        if not np.isfinite(self.think_time_s) or self.think_time_s < 0:
            raise InvalidArgumentError("think_time_s must be a number of seconds >= 0")

    def __len__(self) -> int:
        return len(self.turns)

    @property
    def prompts(self) -> list[str]:
        """Each conversation's first user message (what warm-up requests send)."""
        return [t[0] for t in self.turns]

    def n_turns(self) -> int:
        """Turns over every conversation."""
        return sum(len(t) for t in self.turns)

    def sha256(self) -> str:
        """Hash of the conversations, budgets, system prompts and think times."""
        h = hashlib.sha256()
        h.update(json.dumps([self.turns, self.max_tokens, self.system]).encode("utf-8"))
        h.update(f"{self.think_time_s}:{self.think_time}".encode())
        return h.hexdigest()

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "n": len(self),
            "n_turns": self.n_turns(),
            "think_time_s": self.think_time_s,
            "think_time": self.think_time,
            "sha256": self.sha256(),
            **self.info,
        }

    def to_engine(self, max_tokens: int) -> dict[str, Any]:
        """The engine's `conversations` setting (`max_tokens` for turns without a budget)."""
        items = []
        for c, turns in enumerate(self.turns):
            budgets = self.max_tokens[c] if self.max_tokens is not None else None
            items.append(
                {
                    "system": self.system[c] if self.system is not None else None,
                    "turns": turns,
                    "max_tokens": budgets or [int(max_tokens)] * len(turns),
                }
            )
        return {"items": items, "think_time_s": self.think_time_s, "think_time": self.think_time}


def _split(flat: list[Any], sizes: list[int]) -> list[list[Any]]:
    """`flat` cut into consecutive pieces of these sizes."""
    return [flat[a:b] for a, b in itertools.pairwise([0, *np.cumsum(sizes).tolist()])]


def _lengths(spec: Lengths, n: int, seed: int, what: str) -> list[int]:
    """`n` lengths: fixed, or uniform in an inclusive `(lo, hi)` range (seeded)."""
    if isinstance(spec, int):
        if spec < 1:
            raise InvalidArgumentError(f"{what} must be >= 1")
        return [spec] * n
    out = _output_lengths(spec, n, seed)
    assert out is not None
    return out


def conversations(
    n: int,
    turns: Lengths = DEFAULT_TURNS,
    input_tokens: Lengths = DEFAULT_INPUT_TOKENS,
    output_tokens: OutputLengths = None,
    tokenizer: str | Path | None = None,
    think_time_s: float = 0.0,
    think_time: str = "fixed",
    system_prompt_tokens: int = 0,
    seed: int = 0,
) -> Conversations:
    """`n` synthetic conversations of `turns` turns each (or uniform in a `(lo, hi)`
    range): every user message exactly `input_tokens` tokens (or in a range) under
    `tokenizer` (words without one), every answer's budget `output_tokens` (None: the
    sweep's `max_tokens`); with
    `system_prompt_tokens`, each conversation opens with its own system prompt that long.

    Example:
        >>> chats = llmbench.datasets.conversations(32, turns=5, input_tokens=128,
        ...     output_tokens=64, tokenizer="tokenizer.json", think_time_s=1.0)
        >>> llmbench.run_sweep(target, prompts=chats, batch_sizes=[4, 16])
    """
    if n < 1:
        raise InvalidArgumentError("n must be >= 1")
    counts = _lengths(turns, n, seed + 3, "turns")
    total = sum(counts)
    texts = _texts(_lengths(input_tokens, total, seed + 1, "input_tokens"), tokenizer, seed)
    budgets = _output_lengths(output_tokens, total, seed + 2)
    system = None
    if system_prompt_tokens:
        system = list(_texts([system_prompt_tokens] * n, tokenizer, seed + 4))
    return Conversations(
        _split(texts, counts),
        _split(budgets, counts) if budgets is not None else None,
        system=system,
        think_time_s=think_time_s,
        think_time=think_time,
        name="conversations",
        info={
            "turns": turns,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "system_prompt_tokens": system_prompt_tokens,
            "tokenizer": str(tokenizer) if tokenizer is not None else None,
            "seed": seed,
        },
    )


def shared_prefix(
    n: int = DEFAULT_N_PROMPTS,
    groups: int = 1,
    prefix_tokens: int = 1024,
    suffix_tokens: int = DEFAULT_INPUT_TOKENS,
    output_tokens: OutputLengths = None,
    tokenizer: str | Path | None = None,
    system_prompt: bool = False,
    seed: int = 0,
) -> Dataset | Conversations:
    """`n` prompts in `groups` groups: prompt `i` is group `i % groups`'s prefix of exactly
    `prefix_tokens` tokens, a space, and its own suffix of `suffix_tokens` tokens (words
    without a `tokenizer`). The records get a `prefix_group` column. With
    `system_prompt=True` the prefix is each chat's system prompt instead (one-turn
    `Conversations`): a shared system prompt, as a chat server sees it.

    Example:
        >>> ds = llmbench.datasets.shared_prefix(256, groups=4, prefix_tokens=1024,
        ...     suffix_tokens=64, output_tokens=64, tokenizer="tokenizer.json")
    """
    if n < 1 or groups < 1 or prefix_tokens < 1 or suffix_tokens < 1:
        raise InvalidArgumentError("n, groups, prefix_tokens and suffix_tokens must be >= 1")
    prefixes = _texts([prefix_tokens] * groups, tokenizer, seed + 5)
    suffixes = _texts([suffix_tokens] * n, tokenizer, seed + 6)
    budgets = _output_lengths(output_tokens, n, seed + 2)
    info = {
        "prefix_groups": groups,
        "prefix_tokens": prefix_tokens,
        "suffix_tokens": suffix_tokens,
        "output_tokens": output_tokens,
        "tokenizer": str(tokenizer) if tokenizer is not None else None,
        "seed": seed,
    }
    if system_prompt:
        return Conversations(
            [[s] for s in suffixes],
            [[b] for b in budgets] if budgets is not None else None,
            system=[prefixes[i % groups] for i in range(n)],
            name="shared_system_prompt",
            info=info,
        )
    prompts = [f"{prefixes[i % groups]} {suffixes[i]}" for i in range(n)]
    return Dataset(prompts, budgets, name="shared_prefix", info=info)


def input_lengths(
    lengths: list[int],
    n_per_length: int = 16,
    tokenizer: str | Path | None = None,
    output_tokens: OutputLengths = None,
    seed: int = 0,
) -> tuple[Dataset, list[list[int]]]:
    """Prompts for a sweep over input length: `n_per_length` prompts of exactly each
    length (tokens under `tokenizer`, else words), and per length the indices of its
    prompts (the engine's per-stage prompt lists). `run_sweep(input_lengths=...)` uses it.
    """
    if not lengths or any(int(x) < 1 for x in lengths) or n_per_length < 1:
        raise InvalidArgumentError("input_lengths must be token counts >= 1")
    want = [int(x) for x in lengths for _ in range(n_per_length)]
    prompts = _texts(want, tokenizer, seed)
    budgets = _output_lengths(output_tokens, len(prompts), seed + 2)
    per_stage = [list(range(i * n_per_length, (i + 1) * n_per_length)) for i in range(len(lengths))]
    info = {"input_lengths": [int(x) for x in lengths], "n_per_length": n_per_length}
    return Dataset(prompts, budgets, name="input_lengths", info=info), per_stage


#: The workloads a `workload` setting (TOML, command line) can name, by `kind`.
WORKLOADS = ("conversations", "shared_prefix", "sharegpt", "synthetic")


def from_spec(
    spec: dict[str, Any], tokenizer: str | Path | None = None, seed: int = 0
) -> Dataset | Conversations:
    """A workload from a settings table: `{"kind": "conversations", "n": 32, "turns": 5,
    ...}` calls `conversations(n=32, turns=5, ...)`; the sweep's `tokenizer` and `seed`
    apply unless the table sets them. Unknown keys are errors (the function's own).

    Example:
        >>> llmbench.datasets.from_spec({"kind": "shared_prefix", "n": 64, "groups": 4,
        ...     "prefix_tokens": 512, "suffix_tokens": 32})
    """
    args = dict(spec)
    kind = args.pop("kind", None)
    if kind not in WORKLOADS:
        raise InvalidArgumentError(
            f"workload kind must be one of {', '.join(WORKLOADS)}, got {kind!r}"
        )
    fn = {
        "conversations": conversations,
        "shared_prefix": shared_prefix,
        "sharegpt": sharegpt,
        "synthetic": synthetic,
    }[kind]
    args.setdefault("tokenizer", tokenizer)
    args.setdefault("seed", seed)
    for key in ("turns", "input_tokens", "output_tokens"):
        if isinstance(args.get(key), list):
            args[key] = tuple(args[key])  # TOML has no tuples: [lo, hi] is a range
    try:
        return fn(**args)
    except TypeError as e:
        raise InvalidArgumentError(f"workload {kind!r}: {e}") from e


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
        synth = _texts(need, tokenizer, seed)
    prompts, budgets, it = [], [], iter(synth)
    for _, r in rows:
        prompts.append(str(r["prompt"]) if "prompt" in r else next(it))
        budgets.append(int(r.get("output_tokens", 0)))
    have_budgets = all(b > 0 for b in budgets)
    ds = Dataset(prompts, budgets if have_budgets else None, name="trace", info={"path": str(path)})
    return Trace([t - t0 for t, _ in rows], ds)
