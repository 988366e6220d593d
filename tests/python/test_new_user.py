"""What a demanding new user broke: each case failed (silently wrong, a leaked key, a
lost run, a raw traceback) before its fix. Servers are scripted ones on 127.0.0.1."""

from __future__ import annotations

import base64
import contextlib
import http.server
import json
import os
import warnings
from pathlib import Path

import llmbench
import pytest
from conftest import http_server, run_cli
from llmbench.checks import SettingError
from llmbench.records import RecordFileWarning

SECRET = "sk-very-secret-4242"


def small(**kw):
    return {"batch_sizes": [1], "requests_per_stage": 3, "max_tokens": 4, **kw}


# ---- 1. names that differ only in punctuation share no file ----------------------------


def test_target_names_that_map_to_one_file_are_refused(sim):
    a = sim.target("chat", name="vllm fp16")
    b = sim.target("chat", name="vllm_fp16")
    with pytest.raises(llmbench.InvalidArgumentError, match="would write the same file"):
        llmbench.run_sweep([a, b], **small())
    with pytest.raises(llmbench.InvalidArgumentError, match="same file"):
        llmbench.run_sweep([sim.target("chat", name="a/b"), sim.target("chat", name="a_b")])
    with pytest.raises(llmbench.InvalidArgumentError, match="case"):
        llmbench.run_sweep([sim.target("chat", name="A"), sim.target("chat", name="a")])


def test_ab_with_punctuation_twins_is_refused_on_the_command_line(sim):
    p = run_cli(
        "ab", "--url-a", sim.url, "--url-b", sim.url, "--model", "m",
        "--name-a", "vllm fp16", "--name-b", "vllm_fp16", "--allow-same-url",
        "--batch-sizes", "1", "--requests", "4", "--max-tokens", "4",
    )  # fmt: skip
    assert p.returncode == 1, p.stderr
    assert "would write the same file" in p.stderr
    assert "Traceback" not in p.stderr


# ---- 3. secrets the server echoes are redacted everywhere ------------------------------


def _send(handler: http.server.BaseHTTPRequestHandler, status: int, kind: str, body) -> None:
    """Answer with `status` and the whole `body` (text or bytes) as `kind`."""
    data = body.encode() if isinstance(body, str) else body
    handler.send_response(status)
    handler.send_header("Content-Type", kind)
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


class _Echo(http.server.BaseHTTPRequestHandler):
    """Answers every request with 401, quoting the Authorization header it received."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps({"error": f"bad credentials: {self.headers.get('Authorization')}"})
        _send(self, 401, "application/json", body)

    def do_GET(self) -> None:
        body = json.dumps({"data": [{"id": "m"}], "seen": self.headers.get("Authorization")})
        _send(self, 200, "application/json", body)

    def log_message(self, *a) -> None:
        pass


class _InBand(_Echo):
    """Streams an in-band error that quotes the Authorization header, with status 200."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        err = {"error": {"message": f"rejected {self.headers.get('Authorization')}"}}
        body = f"data: {json.dumps(err)}\n\ndata: [DONE]\n\n".encode()
        _send(self, 200, "text/event-stream", body)


def _everything_written(folder: Path) -> str:
    return "\n".join(p.read_bytes().decode("utf-8", "replace") for p in folder.iterdir())


@pytest.mark.parametrize("handler", [_Echo, _InBand])
def test_an_echoed_api_key_reaches_no_file_message_or_exception(tmp_path, handler):
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(http_server(handler))
        target = llmbench.OpenAI(url, model="m", api_key=SECRET)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                res = llmbench.run_sweep(
                    target, **small(warmup_requests=0, out_dir=tmp_path, report=True)
                )
                errors = res.requests["error"].dropna().tolist()
            except llmbench.LlmbenchError as e:  # the warm-up's 401 ends the run
                errors = [str(e)]
        assert errors and all(SECRET not in e for e in errors)
        assert any("REDACTED" in e for e in errors)
        assert all(SECRET not in str(w.message) for w in caught)
        if any(tmp_path.iterdir()):
            assert SECRET not in _everything_written(tmp_path)


def test_an_echoed_api_key_is_redacted_on_the_command_line(tmp_path):
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(http_server(_InBand))
        p = run_cli(
            "metrics", "--url", url, "--model", "m", "--batch-sizes", "1", "--requests", "3",
            "--max-tokens", "4", "--warmup", "0", "--out", str(tmp_path),
            env={"LLMBENCH_API_KEY": SECRET},
        )  # fmt: skip
    assert SECRET not in p.stdout + p.stderr
    assert SECRET not in _everything_written(tmp_path)
    # Every request failed: the run says so and exits non-zero (item 5).
    assert p.returncode == 1
    assert "every request failed" in p.stderr


def test_url_credentials_echoed_as_basic_auth_are_redacted(tmp_path):
    basic = base64.b64encode(b"bob:pa55word").decode()

    class _Basic(_Echo):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            msg = f"denied Basic {basic} (pa55word)"
            err = {"error": {"message": msg}}
            body = f"data: {json.dumps(err)}\n\ndata: [DONE]\n\n".encode()
            _send(self, 200, "text/event-stream", body)

    with http_server(_Basic) as url:
        authed = url.replace("http://", "http://bob:pa55word@")
        with pytest.warns(llmbench.RunFailedWarning):
            res = llmbench.run_sweep(
                llmbench.OpenAI(authed, model="m"),
                **small(warmup_requests=0, out_dir=tmp_path),
            )
    text = " ".join(res.requests["error"].dropna()) + _everything_written(tmp_path)
    assert basic not in text and "pa55word" not in text


# ---- 2. a write failure is an error, and nothing unsaved is claimed --------------------


def test_results_that_cannot_be_written_raise_with_the_results_kept(sim, tmp_path):
    # metrics_data.json cannot be written where a folder of that name stands.
    (tmp_path / "metrics_data.json").mkdir()
    with pytest.raises(llmbench.ResultsNotSaved) as caught:
        llmbench.run_sweep(sim.target("chat"), **small(out_dir=tmp_path))
    assert len(caught.value.results.summary) == 1
    assert caught.value.results.summary["n_ok"].sum() == 3
    assert "not all on disk" in str(caught.value)


@pytest.mark.skipif(os.geteuid() != 0 or not Path("/bin/mount").exists(), reason="needs root")
def test_a_full_disk_is_a_non_zero_exit_and_no_claim(sim, tmp_path):
    import subprocess

    mnt = tmp_path / "full"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(mnt)]).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        p = run_cli(
            "metrics", "--url", sim.url, "--model", "llmbench-sim", "--batch-sizes", "1,2",
            "--requests", "400", "--max-tokens", "16", "--out", str(mnt / "run"),
        )  # fmt: skip
        assert p.returncode != 0, p.stdout
        assert "results written" not in p.stdout
        assert "not all on disk" in p.stderr or "No space" in p.stderr
        assert not list((mnt / "run").glob("*.tmp"))
    finally:
        subprocess.run(["umount", str(mnt)])


# ---- 4. which copy of the records wins -------------------------------------------------


def test_load_prefers_the_complete_json_copy_to_a_cut_record_file(sim, tmp_path):
    llmbench.run_sweep(
        sim.target("chat", name="t"),
        batch_sizes=[1, 2, 4],
        requests_per_stage=16,
        max_tokens=4,
        out_dir=tmp_path,
        report=False,
    )
    # Several batches: write three stages with a flush each.
    records = next(tmp_path.glob("*.arrows"))
    whole = llmbench.Results.load(tmp_path).n_records
    data = records.read_bytes()
    records.write_bytes(data[: len(data) // 2])
    with pytest.warns(RecordFileWarning, match="complete copy"):
        res = llmbench.Results.load(tmp_path)
    assert res.n_records == whole
    records.write_bytes(b"")
    with pytest.warns(RecordFileWarning, match="complete copy"):
        assert llmbench.Results.load(tmp_path).n_records == whole


def test_load_says_when_no_complete_copy_is_left(sim, tmp_path):
    llmbench.run_sweep(sim.target("chat", name="t"), **small(out_dir=tmp_path, report=False))
    data_path = tmp_path / "metrics_data.json"
    data = json.loads(data_path.read_text())
    data.pop("requests", None)
    data_path.write_text(json.dumps(data))
    next(tmp_path.glob("*.arrows")).write_bytes(b"")
    with pytest.warns(RecordFileWarning, match="the rest are lost"):
        llmbench.Results.load(tmp_path)


# ---- 5. one rule for failed requests ---------------------------------------------------


class _Status500Once(http.server.BaseHTTPRequestHandler):
    """HTTP 500 for the first request (the warm-up), then a normal stream."""

    calls = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).calls += 1
        if type(self).calls == 1:
            _send(self, 500, "text/plain", b"oops!")
            return
        chunks = [
            {"choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}]},
            {
                "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
            },
        ]
        body = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
        _send(self, 200, "text/event-stream", body)

    def log_message(self, *a) -> None:
        pass


def test_a_passing_500_on_the_warm_up_does_not_abort_the_run():
    with http_server(_Status500Once) as url:
        res = llmbench.run_sweep(llmbench.OpenAI(url, model="m"), **small(report=False))
    assert res.summary["n_ok"].sum() == 3
    assert any("warm-up request failed" in w for w in res.manifest["warnings"])


def test_a_stage_without_success_warns_and_a_run_without_is_marked_failed():
    with http_server(_InBand) as url:
        with pytest.warns(llmbench.RunFailedWarning, match="every request failed"):
            res = llmbench.run_sweep(
                llmbench.OpenAI(url, model="m"), **small(warmup_requests=0, report=False)
            )
    assert "every request failed" in res.manifest["all_failed"]
    assert "in_band" in res.manifest["all_failed"] or "3 " in res.manifest["all_failed"]


# ---- 6-8. settings refused in the user's own words -------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "setting"),
    [
        ({"batch_sizes": "1,2"}, "batch_sizes"),
        ({"batch_sizes": [None]}, "batch_sizes"),
        ({"batch_sizes": [True, 2]}, "batch_sizes"),
        ({"max_tokens": 8.7}, "max_tokens"),
        ({"max_tokens": -1}, "max_tokens"),
        ({"requests_per_stage": 0}, "requests_per_stage"),
        ({"rates": [float("nan")]}, "rates"),
        ({"repeats": 0}, "repeats"),
    ],
)
def test_the_api_refuses_bad_settings_naming_them(sim, kwargs, setting):
    with pytest.raises(SettingError) as caught:
        llmbench.run_sweep(sim.target("chat"), **{**small(), **kwargs})
    assert caught.value.setting == setting
    assert str(caught.value).startswith(setting)


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (["--max-tokens", "-1"], "--max-tokens must be an integer >= 1; got -1"),
        (["--requests", "0"], "--requests must be an integer >= 1"),
        (["--rates", "nan"], "--rates must be a non-empty list of request rates > 0"),
    ],
)
def test_the_command_line_names_the_flag(flags, said, tmp_path):
    p = run_cli("metrics", "--embedded", "sim", "--out", str(tmp_path), *flags)
    assert p.returncode == 1
    assert said in p.stderr, p.stderr
    assert "Traceback" not in p.stderr


@pytest.mark.parametrize(
    ("toml", "said"),
    [
        ('[sweep]\nbatch_sizes = "1,2"\n', "[sweep]: batch_sizes must be a non-empty list"),
        ("[sweep]\nbatch_sizes = [true, 2]\n", "[sweep]: batch_sizes must be"),
        ("[sweep]\nmax_tokens = 8.7\n", "[sweep]: max_tokens must be an integer"),
    ],
)
def test_a_toml_file_names_the_key_and_its_table(toml, said, tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('[[target]]\nurl = "http://127.0.0.1:9"\nmodel = "m"\n' + toml)
    with pytest.raises(llmbench.InvalidArgumentError, match=None) as caught:
        llmbench.load_config(path)
    assert said in str(caught.value)


def test_a_toml_target_without_url_and_a_non_utf8_file_are_clear_errors(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('[[target]]\nmodel = "m"\n')
    with pytest.raises(llmbench.InvalidArgumentError, match="url must be"):
        llmbench.load_config(path)
    path.write_bytes(b'[[target]]\nurl = "\xff"\n')
    with pytest.raises(llmbench.InvalidArgumentError, match="not UTF-8"):
        llmbench.load_config(path)


def test_a_prompt_file_that_is_not_utf8_is_a_clear_error(sim, tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_bytes(b"hello\nbad \xff byte\n")
    with pytest.raises(llmbench.InvalidArgumentError, match=r"not UTF-8 text.*line 2"):
        llmbench.run_sweep(sim.target("chat"), **small(prompts=path))


def test_sharegpt_turns_that_are_not_text_are_skipped(tmp_path):
    path = tmp_path / "sg.json"
    path.write_text(
        json.dumps(
            [
                {"conversations": ["not an object", {"from": "gpt", "value": "x"}]},
                {"conversations": [{"from": "human", "value": None}]},
                {"conversations": [{"from": "human", "value": {"a": 1}}]},
                {"conversations": [{"from": "human", "value": "real prompt"}]},
            ]
        )
    )
    ds = llmbench.datasets.sharegpt(path, output_tokens=4)
    assert ds.prompts == ["real prompt"]
    chats = llmbench.datasets.sharegpt(path, output_tokens=4, multi_turn=True)
    assert [c for c in chats.turns] == [["real prompt"]]


def test_an_out_dir_that_is_a_file_or_not_writable_is_refused_before_any_load(sim, tmp_path):
    out = tmp_path / "out"
    out.write_text("a file, not a folder")
    with pytest.raises(llmbench.InvalidArgumentError, match="is a file"):
        llmbench.run_sweep(sim.target("chat"), **small(out_dir=out))
    with pytest.raises(llmbench.InvalidArgumentError, match="cannot create"):
        llmbench.run_sweep(sim.target("chat"), **small(out_dir=out / "sub"))
    p = run_cli("metrics", "--embedded", "sim", "--out", str(out))
    assert p.returncode == 1 and "is a file" in p.stderr and "Traceback" not in p.stderr


def test_an_unset_api_key_variable_is_an_error(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "NO_SUCH_KEY_VAR"}
    p = run_cli(
        "metrics", "--url", "http://127.0.0.1:9", "--model", "m",
        "--api-key-env", "NO_SUCH_KEY_VAR", "--out", str(tmp_path), env=env,
    )  # fmt: skip
    assert p.returncode == 1
    assert "NO_SUCH_KEY_VAR" in p.stderr and "not set" in p.stderr


def test_the_scripted_server_refuses_a_port_out_of_range():
    with pytest.raises(llmbench.InvalidArgumentError, match="65535"):
        llmbench.SimServer(port=99999)
    p = run_cli("sim", "--port", "99999")
    assert p.returncode != 0 and "Traceback" not in p.stderr


def test_compare_and_report_refuse_bad_outputs_clearly(sim, tmp_path):
    run = tmp_path / "run"
    llmbench.run_sweep(sim.target("chat", name="t"), **small(out_dir=run, report=False))
    p = run_cli("compare", str(run), str(run), "--out", str(tmp_path / "c"))
    assert p.returncode == 1 and "same run folder" in p.stderr
    other = tmp_path / "other"
    llmbench.run_sweep(sim.target("chat", name="u"), **small(out_dir=other, report=False))
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    p = run_cli("compare", str(run), str(other), "--out", str(a_file))
    assert p.returncode == 1 and "is a file" in p.stderr and "Traceback" not in p.stderr
    p = run_cli("report", str(run), "-o", str(tmp_path))
    assert p.returncode == 1 and "is a folder" in p.stderr and "Traceback" not in p.stderr
    assert not list(tmp_path.glob("*.tmp"))


def test_a_huge_batch_with_few_requests_needs_no_huge_file_limit(sim):
    # 4 requests never have more than 4 in flight: no `ulimit -n 100256` is asked for.
    res = llmbench.run_sweep(
        sim.target("chat"), batch_sizes=[100000], requests_per_stage=4, max_tokens=4,
        report=False,
    )  # fmt: skip
    assert res.summary["n_ok"].sum() == 4
    assert not any("ulimit" in w for w in res.manifest["warnings"])


def test_a_stream_cut_by_the_total_timeout_is_not_called_stalled():
    with llmbench.SimServer(ttft_ms=1, itl_ms=20) as server:
        target = server.target("chat", timeouts=llmbench.Timeouts(total=0.3))
        with pytest.warns(llmbench.RunFailedWarning):
            res = llmbench.run_sweep(target, **small(max_tokens=1000, warmup_requests=0))
    errors = res.requests["error"].dropna().tolist()
    assert errors and all("still streaming when the total timeout" in e for e in errors)


def test_a_prompts_folder_is_not_called_missing(sim, tmp_path):
    with pytest.raises(llmbench.InvalidArgumentError, match="is a folder"):
        llmbench.run_sweep(sim.target("chat"), **small(prompts=tmp_path))
