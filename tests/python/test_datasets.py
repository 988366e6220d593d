"""Workloads: exact input lengths with a real tokenizer, ShareGPT files, per-request
output budgets (checked on the scripted server, which honours max_tokens exactly)."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import llmbench
import pytest
import tokenizers

sys.path.insert(0, str(Path(__file__).parent))
from tiny_model import tokenizer_json


@pytest.fixture(scope="module")
def tok() -> Path:
    return tokenizer_json()


def test_synthetic_prompts_have_exact_input_lengths(tok, sim):
    from tokenizers import Tokenizer

    ds = llmbench.datasets.synthetic(12, (20, 200), tok, output_tokens=(3, 9), seed=5)
    t = Tokenizer.from_file(str(tok))
    counts = [len(t.encode(p, add_special_tokens=False).ids) for p in ds.prompts]
    want = ds.info["input_tokens"]
    assert all(20 <= c <= 200 for c in counts) and want == (20, 200)
    again = llmbench.datasets.synthetic(12, (20, 200), tok, output_tokens=(3, 9), seed=5)
    assert again.prompts == ds.prompts and again.sha256() == ds.sha256()
    exact = llmbench.datasets.synthetic(4, 128, tok, seed=1)
    assert [len(t.encode(p, add_special_tokens=False).ids) for p in exact.prompts] == [128] * 4
    # Each request asks for its own budget; the scripted server generates exactly that.
    res = llmbench.run_sweep(
        sim.target(),
        prompts=ds,
        batch_sizes=[4],
        requests_per_stage=12,
        progress=False,
        tokenizer=tok,
        max_tokens=100,
    )
    req = res.requests
    assert (req["n_out"] == [ds.max_tokens[i] for i in req["prompt_index"]]).all()
    assert res.manifest["prompts"]["sha256"] == ds.sha256()
    assert res.manifest["prompts"]["name"] == "synthetic"


def test_sharegpt_prompts_and_reply_lengths(tmp_path, tok, sim):
    convs = [
        {
            "id": "a",
            "conversations": [
                {"from": "human", "value": "What is a GPU?"},
                {"from": "gpt", "value": "A graphics processing unit."},
            ],
        },
        {
            "id": "b",
            "conversations": [
                {"from": "system", "value": "be brief"},
                {"from": "human", "value": "Name a prime number"},
                {"from": "gpt", "value": "Seven."},
            ],
        },
        {"id": "c", "conversations": []},
        {"id": "d"},
    ]
    path = tmp_path / "sharegpt.json"
    path.write_text(json.dumps(convs))
    ds = llmbench.datasets.sharegpt(path, tokenizer=tok)
    assert ds.prompts == ["What is a GPU?", "Name a prime number"]
    # Counted by HuggingFace's tokenizers, not by the code under test.
    hf = tokenizers.Tokenizer.from_file(str(tok))
    answers = ["A graphics processing unit.", "Seven."]
    assert ds.max_tokens == [len(hf.encode(a, add_special_tokens=False).ids) for a in answers]
    fixed = llmbench.datasets.sharegpt(path, output_tokens=5, n=1, seed=2)
    assert len(fixed) == 1 and fixed.max_tokens == [5]
    res = llmbench.run_sweep(
        sim.target(), prompts=ds, batch_sizes=[2], requests_per_stage=4, progress=False
    )
    req = res.requests
    assert (req["n_out"] == [ds.max_tokens[i] for i in req["prompt_index"]]).all()
    with pytest.raises(llmbench.InvalidArgumentError, match="no usable conversations"):
        bad = tmp_path / "bad.json"
        bad.write_text("[]")
        llmbench.datasets.sharegpt(bad)


def test_bad_datasets():
    with pytest.raises(llmbench.InvalidArgumentError, match="empty"):
        llmbench.datasets.Dataset([])
    with pytest.raises(llmbench.InvalidArgumentError, match="one budget"):
        llmbench.datasets.Dataset(["a", "b"], max_tokens=[1])


def test_trace_replay_sends_each_request_at_its_time_with_its_prompt(tmp_path, tok, sim):
    lines = [
        {"timestamp": 10.0, "prompt": "first prompt here", "output_tokens": 3},
        {"timestamp": 10.25, "input_tokens": 40, "output_tokens": 5},
        {"timestamp": 10.1, "prompt": "second by time", "output_tokens": 2},
        {"timestamp": 10.5, "prompt": "last one", "output_tokens": 4},
    ]
    path = tmp_path / "trace.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    tr = llmbench.datasets.trace(path, tokenizer=tok)
    assert tr.times_s == pytest.approx([0.0, 0.1, 0.25, 0.5])
    assert tr.dataset.max_tokens == [3, 2, 5, 4]
    res = llmbench.run_sweep(sim.target(), trace=tr, progress=False, server_metrics=False)
    req = res.requests.sort_values("t_sched_ns")
    assert req["prompt_index"].tolist() == [0, 1, 2, 3]
    sched = (req["t_sched_ns"] - req["t_sched_ns"].min()).to_numpy() / 1e9
    assert sched == pytest.approx([0.0, 0.1, 0.25, 0.5], abs=1e-6)
    assert req["n_out"].tolist() == [3, 2, 5, 4]
    assert req["n_in"].tolist()[2] > 1  # the synthetic prompt (words counted by the sim)
    assert res.summary.iloc[0]["send_lag_p99_ms"] < 50
    with pytest.raises(llmbench.InvalidArgumentError, match="need a tokenizer"):
        llmbench.datasets.trace(path)


def test_the_tokenizer_fixture_is_the_one_documented():
    # Kept in the repository (tests/fixtures/README.md), so no test fetches it.
    digest = hashlib.sha256(tokenizer_json().read_bytes()).hexdigest()
    assert digest == "fc4f0bd70b3709312d9d1d9e5ba674794b6bc5abc17429897a540f93882f25fc"
