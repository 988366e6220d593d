"""The baseline's transformers engine: the same study, columns and records as candle's, the
tokens transformers' own greedy decoding gives, timestamps that follow the engine, Ctrl-C
that keeps what was measured, and a clear error when the extra is missing."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import llmbench
import pytest
from llmbench import transformers_engine

if os.environ.get("LLMBENCH_REQUIRE_REAL_SERVER") != "1":  # `make test` installs the extra
    pytest.importorskip("torch")
import torch

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "baseline"


def test_same_columns_and_exact_kv_bytes_as_candle(tmp_path):
    runs = {
        engine: llmbench.baseline.run(
            "tiny",
            engine=engine,
            batch_sizes=[1, 3],
            prompt_tokens=16,
            max_new_tokens=5,
            batches_per_stage=2,
            out_dir=tmp_path / engine,
        )
        for engine in ("candle", "transformers")
    }
    candle, tf = runs["candle"], runs["transformers"]
    assert list(tf.summary.columns) == list(candle.summary.columns)
    assert list(tf.requests.columns) == list(candle.requests.columns)
    s = tf.summary
    assert s["n_ok"].tolist() == [2, 6]
    assert (tf.requests["n_out"] == 5).all() and (tf.requests["n_in"] == 16).all()
    # The cache transformers returns holds 16 + 5 − 1 tokens per row of 4096 B (tiny,
    # float32): the bytes of its tensors, the formula and candle's cache all agree.
    assert s["kv_cache_bytes"].tolist() == [4096 * 20 * 1, 4096 * 20 * 3]
    assert s["kv_cache_formula_bytes"].tolist() == s["kv_cache_bytes"].tolist()
    assert candle.summary["kv_cache_bytes"].tolist() == s["kv_cache_bytes"].tolist()
    # The same prompts, in the same order, in both engines.
    assert tf.requests["prompt_index"].tolist() == candle.requests["prompt_index"].tolist()
    assert s["ttft_mean_ms"].iloc[1] == pytest.approx(s["prefill_ms"].iloc[1], rel=1e-6)
    assert s["decode_tok_s"].iloc[1] == pytest.approx(3000 / s["decode_step_ms"].iloc[1])
    info = tf.manifest["servers"]["baseline"]
    assert info["engine"] == "transformers" and tf.manifest["engine"] == "transformers"
    assert info["kv_bytes_per_token"] == 4096 and info["parameters"] == 19_286_272
    # Every record on disk, warm-up included, and the saved run loads back.
    live = llmbench.records.read_file(tmp_path / "transformers" / "requests_baseline.arrows")
    assert len(live) == 8 + 1 + 3  # a warm-up batch at each batch size
    back = llmbench.Results.load(tmp_path / "transformers")
    assert back.summary["kv_cache_bytes"].tolist() == s["kv_cache_bytes"].tolist()


def test_greedy_tokens_are_transformers_own(monkeypatch):
    # The golden fixture's tokens were made by transformers' greedy decoding of this
    # folder, the two prompts left-padded into one batch.
    expected = json.loads((GOLDEN / "expected.json").read_text())
    seen: list[tuple[list[int], list[list[int]]]] = []
    original = transformers_engine._generate_batch

    def capture(model, torch_, req, pad_id, eos, study):
        batch, stopped = original(model, torch_, req, pad_id, eos, study)
        seen.append((req["prompt_index"], [row["tokens"] for row in batch["rows"]]))
        return batch, stopped

    monkeypatch.setattr(transformers_engine, "_generate_batch", capture)
    res = llmbench.baseline.run(
        str(GOLDEN / "tiny-llama"),
        engine="transformers",
        prompt_ids=expected["prompts"],
        batch_sizes=[2],
        max_new_tokens=expected["new_tokens"],
        warmup_batches=0,
    )
    ((index, tokens),) = seen
    assert sorted(index) == [0, 1]
    for i, toks in zip(index, tokens, strict=True):
        assert toks == expected["batched"][i]
    assert res.requests["n_in"].tolist() == [len(expected["prompts"][i]) for i in index]
    # vocabulary 512, 2 layers × 2 kv heads × 8 head_dim: 2 × 2 × 2 × 8 × 4 B = 256 B/token.
    s = res.summary.iloc[0]
    assert s["kv_cache_bytes"] == 256 * 2 * (7 + 8 - 1)
    assert s["padded_prompt_len"] == 7


class _ScriptedModel:
    """A stand-in for a model whose `generate()` hands tokens to the streamer at scripted
    times (fault injection for the clock: the real engine's timings are not known)."""

    def __init__(self, prefill_s: float, step_s: float, stop_after: dict[int, int]) -> None:
        self.device = torch.device("cpu")
        self.generation_config = SimpleNamespace(pad_token_id=0)
        self.prefill_s, self.step_s, self.stop_after = prefill_s, step_s, stop_after

    def _token(self, row: int, step: int, budget: int) -> int:
        stop = self.stop_after.get(row, budget)
        return 2 if step == stop else (0 if step > stop else 7)

    def generate(self, ids, *, streamer, max_new_tokens, **_):
        b = ids.shape[0]
        streamer.put(ids)
        time.sleep(self.prefill_s)
        for step in range(max_new_tokens):
            if step:
                time.sleep(self.step_s)
            # Row r emits end-of-sequence (2) at its scripted step, padding (0) after.
            toks = [self._token(r, step, max_new_tokens) for r in range(b)]
            streamer.put(torch.tensor(toks))
        streamer.end()
        keys = torch.zeros(b, 4, ids.shape[1] + max_new_tokens - 1, 32)
        layer = SimpleNamespace(keys=keys, values=keys.clone())
        return SimpleNamespace(cache=SimpleNamespace(layers=[layer] * 4))


def test_timestamps_follow_the_engine_and_eos_ends_a_row(monkeypatch):
    scripted = _ScriptedModel(prefill_s=0.060, step_s=0.020, stop_after={1: 2})
    monkeypatch.setattr(transformers_engine, "_load_model", lambda *a: scripted)
    res = llmbench.baseline.run(
        "tiny",
        engine="transformers",
        batch_sizes=[2],
        prompt_tokens=8,
        max_new_tokens=5,
        ignore_eos=False,
        warmup_batches=0,
    )
    s = res.summary.iloc[0]
    # Sleeps never end early: the prefill took at least 60 ms and each of the 4 decode
    # steps at least 20 ms; the upper bounds allow a loaded host.
    assert 60 <= s["prefill_ms"] < 60 + 40
    assert 20 <= s["decode_step_ms"] < 20 + 15
    assert s["decode_tok_s"] == pytest.approx(2000 / s["decode_step_ms"])
    req = res.requests.sort_values("prompt_index").reset_index(drop=True)
    # Row 0 ran its budget; row 1 stopped at end-of-sequence after two tokens (EOS is not
    # output), its slot kept until the batch ended.
    by_row = dict(zip(req["finish_reason"], req["n_out"], strict=True))
    assert by_row == {"length": 5, "stop": 2}
    stop = req[req["finish_reason"] == "stop"].iloc[0]
    assert 20 <= stop["e2e_ms"] - stop["ttft_ms"] < 20 + 15
    # The scripted cache: 4 layers × (K, V) × 2 rows × 4 heads × 12 tokens × 32 × 4 B.
    assert s["kv_cache_bytes"] == 4 * 2 * 2 * 4 * 12 * 32 * 4


def test_ctrl_c_keeps_what_was_measured(monkeypatch, tmp_path):
    calls = {"n": 0}

    class Interrupting(_ScriptedModel):
        def generate(self, ids, *, streamer, max_new_tokens, **kw):
            calls["n"] += 1
            if calls["n"] == 3:  # the second measured batch, mid-decode
                streamer.put(ids)
                streamer.put(torch.tensor([7] * ids.shape[0]))
                raise KeyboardInterrupt
            return super().generate(ids, streamer=streamer, max_new_tokens=max_new_tokens)

    model = Interrupting(prefill_s=0.0, step_s=0.0, stop_after={})
    monkeypatch.setattr(transformers_engine, "_load_model", lambda *a: model)
    with pytest.raises(llmbench.SweepInterrupted) as info:
        llmbench.baseline.run(
            "tiny",
            engine="transformers",
            batch_sizes=[2, 4],
            prompt_tokens=8,
            max_new_tokens=3,
            batches_per_stage=3,
            out_dir=tmp_path,
        )
    res = info.value.results
    assert res.interrupted and res.summary["batch_size"].tolist() == [2]
    assert bool(res.summary["interrupted"].iloc[0])
    req = res.requests
    # The first measured batch whole, the second's rows cancelled with the token they had.
    assert req["finish_reason"].tolist() == ["length", "length", "cancelled", "cancelled"]
    assert req["n_out"].tolist() == [3, 3, 1, 1]
    assert len(llmbench.records.read_file(tmp_path / "requests_baseline.arrows")) == 2 + 4


def test_missing_extra_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(ImportError, match=r"llmbench\[transformers\]"):
        llmbench.baseline.run("tiny", engine="transformers", prompt_tokens=4, max_new_tokens=1)
    with pytest.raises(llmbench.InvalidArgumentError, match="known: candle, transformers"):
        llmbench.baseline.run("tiny", engine="vllm", prompt_tokens=4, max_new_tokens=1)
