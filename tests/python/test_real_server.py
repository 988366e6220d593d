"""Against a real OpenAI-compatible server: `transformers serve` on CPU, serving a tiny
random-init LLaMA with a real 32k tokenizer (built by `tiny_model.py`, offline).

Its quirks are exercised: no `[DONE]`, usage inside the last chunk, unknown
fields such as `ignore_eos` rejected (422), `generation_config` forcing the length.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import llmbench
import pytest
from conftest import REPO, free_port

N_OUT = 12


def _have_transformers() -> bool:
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        return False
    return True


if not _have_transformers():
    if os.environ.get("LLMBENCH_REQUIRE_REAL_SERVER") == "1":
        raise RuntimeError(
            "LLMBENCH_REQUIRE_REAL_SERVER=1 but transformers/torch are not installed "
            "(pip install '.[real-server]')"
        )
    pytest.skip("transformers serve not installed", allow_module_level=True)


@pytest.fixture(scope="module")
def real_server(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    sys.path.insert(0, str(Path(__file__).parent))
    from tiny_model import build

    model_dir = build(tmp_path_factory.mktemp("tiny-llama"))
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}
    log = open(model_dir / "serve.log", "w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "transformers.cli.transformers",
            "serve",
            str(model_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--device",
            "cpu",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"transformers serve exited: {(model_dir / 'serve.log').read_text()[-2000:]}"
                )
            try:
                # /health answers once the server is up; /v1/models would need the
                # HuggingFace cache folder (it answers 500 without it).
                urllib.request.urlopen(f"{url}/health", timeout=2).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        yield url, model_dir
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.mark.real_server
@pytest.mark.parametrize("api", ["chat", "completions"])
def test_sweep_against_transformers_serve(real_server, api):
    url, model_dir = real_server
    # transformers serve rejects ignore_eos/min_tokens; generation_config forces the
    # length: through the target option on one API, by hand on the other.
    force = (
        {"force_output_len": "transformers"}
        if api == "chat"
        else {"extra_body": {"generation_config": f'{{"min_new_tokens": {N_OUT}}}'}}
    )
    target = llmbench.OpenAI(url, model=str(model_dir), api=api, **force)
    prompts = llmbench.default_prompts()[:12]
    res = llmbench.run_sweep(
        target,
        batch_sizes=[1, 2],
        requests_per_stage=4,
        max_tokens=N_OUT,
        prompts=prompts,
        tokenizer=model_dir / "tokenizer.json",
        progress=False,
    )
    req = res.requests
    assert req["ok"].all(), req["error"].tolist()
    # Token counts are the server's usage, and the streamed chunks add up to them.
    assert set(req["n_out_source"]) == {"server_usage"}
    assert (req["n_out"] == N_OUT).all()
    assert (req["n_out_streamed"] == req["n_out"]).all()
    assert set(req["n_in_source"]) == {"server_usage"}
    assert set(req["finish_reason"]) == {"length"}
    # The server's prompt counts follow the real tokenizer: a constant offset (BOS and the
    # chat template) from the client-side count of each prompt.
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    offsets = {
        int(n_in) - len(tok.encode(prompts[i], add_special_tokens=False).ids)
        for n_in, i in zip(req["n_in"], req["prompt_index"], strict=True)
    }
    assert len(offsets) == 1, offsets
    for _, row in res.summary.iterrows():
        assert row["n_ok"] == 4 and row["n_failed"] == 0
        assert row["ttft_p50_ms"] > 0 and row["output_tok_s"] > 0
        assert row["itl_mean_ms"] == pytest.approx(row["tpot_mean_ms"], rel=1e-6)


@pytest.mark.real_server
def test_rejected_field_gives_a_clear_error(real_server):
    url, model_dir = real_server
    target = llmbench.OpenAI(url, model=str(model_dir), extra_body={"ignore_eos": True})
    with pytest.raises(llmbench.TargetError, match="ignore_eos"):
        llmbench.run_sweep(target, batch_sizes=[1], requests_per_stage=1, progress=False)


@pytest.mark.real_server
def test_metrics_notebook_against_transformers_serve(real_server, tmp_path):
    # What the notebook tells a user to do for a real server: change only the target cell.
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    url, model_dir = real_server
    nb = nbformat.read(REPO / "notebooks" / "metrics_study.ipynb", as_version=4)
    (cell,) = [c for c in nb.cells if c.cell_type == "code" and "target = " in c.source]
    cell.source = (
        f"target = llmbench.OpenAI({url!r}, model={str(model_dir)!r}, api='chat',\n"
        "                         force_output_len='transformers', name='transformers-serve')\n"
        f"BATCH_SIZES = [1, 2]\nMAX_TOKENS = {N_OUT}\ntarget"
    )
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    errors = [
        o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"
    ]
    assert not errors, errors
    # The notebook's results are the real server's: every request answered in full.
    res = llmbench.Results.load(tmp_path / "results" / "metrics_study")
    assert res.summary["target"].unique().tolist() == ["transformers-serve"]
    assert res.summary["batch_size"].tolist() == [1, 2]
    req = res.requests
    assert req["ok"].all() and (req["n_out"] == N_OUT).all(), req["error"].tolist()
    assert set(req["n_out_source"]) == {"server_usage"}
    assert (tmp_path / "results" / "metrics_study" / "throughput_vs_batch_size.png").is_file()
