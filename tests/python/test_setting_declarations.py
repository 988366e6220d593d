"""Every sweep setting is declared once (`llmbench.SweepOptions`) and everything else is
derived from it. These tests walk every field, so a new setting is covered without
editing them: the API's signature and docstring, the command line's flags, TOML keys, the
rule that refuses a bad value, the manifest. And the blocking and the awaitable sweep
share one body: the same interruptions end both the same way."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import inspect
import json
import signal
import subprocess
import sys
import textwrap
import time

import llmbench
import pytest
from llmbench.cli.commands import SWEEP_OPTION_DESTS, _sweep_kwargs
from llmbench.cli.options import build_parser, flag_dest
from llmbench.sweep_options import NAMES, POSITIONAL, SweepOptions, setting_fields

FIELDS = setting_fields()


def _sub(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[name]
    raise KeyError(name)


@pytest.mark.parametrize("f", FIELDS, ids=[f.name for f in FIELDS])
def test_every_setting_is_a_keyword_of_both_calls_with_its_declared_default(f):
    for call in (llmbench.run_sweep, llmbench.run_sweep_async):
        p = inspect.signature(call).parameters[f.name]
        assert p.default == f.default or p.default is f.default
        assert p.kind is (
            inspect.Parameter.POSITIONAL_OR_KEYWORD
            if f.name in POSITIONAL
            else inspect.Parameter.KEYWORD_ONLY
        )
    meta = f.metadata["setting"]
    assert meta.help, f"{f.name} has no help"
    # Its help is in the docstring, from the one declaration.
    assert f"{f.name}: {meta.help.split()[0]}" in llmbench.run_sweep.__doc__


@pytest.mark.parametrize("f", FIELDS, ids=[f.name for f in FIELDS])
def test_every_flagged_setting_reaches_the_sweep_from_the_command_line(f):
    flag = f.metadata["setting"].flag
    if flag is None:
        pytest.skip(f"{f.name} has no flag of its own (several flags or none make it)")
    parser = build_parser()
    metrics = _sub(parser, "metrics")
    action = next(a for a in metrics._actions if flag.name in a.option_strings)
    assert action.dest == flag_dest(flag) == SWEEP_OPTION_DESTS[f.name]
    assert f.metadata["setting"].help.split()[0] in (action.help or "")
    args = parser.parse_args(["metrics"])
    kwargs = _sweep_kwargs(args)
    # With no flag given, the command gives the setting its default (or the command's
    # own: the results folder; the scrape period in ms, 1000 = the engine's True).
    expected = {"out_dir": "results/metrics_study", "server_metrics": 1000.0}
    assert kwargs[f.name] == expected.get(f.name, f.default) or (
        list(kwargs[f.name]) == list(f.default)
    )
    # Every setting the command line builds is one SweepOptions accepts.
    SweepOptions(**{k: v for k, v in kwargs.items() if k in NAMES})


@pytest.mark.parametrize("f", FIELDS, ids=[f.name for f in FIELDS])
def test_every_setting_is_a_toml_key_unless_a_file_cannot_hold_it(f):
    key = f.name
    text = '[[target]]\nurl = "http://127.0.0.1:1"\nmodel = "m"\n[sweep]\n'
    value = _toml_sample(f)
    if key in ("trace", "resume"):
        with pytest.raises(llmbench.InvalidArgumentError, match=key):
            llmbench.parse_config(text + f"{key} = true\n")
        return
    if value is None:
        pytest.skip(f"{key} has no plain TOML sample here (a table or an object)")
    spec = llmbench.parse_config(text + f"{key} = {value}\n")
    assert key in spec.options


def _toml_sample(f) -> str | None:
    """A TOML value of the field's declared type (None for one a file writes as a table:
    those are tested in test_config.py)."""
    kind = str(f.type).split("|")[0].strip()
    if isinstance(f.default, str):
        return json.dumps(f.default)
    return {
        "bool": "true",
        "int": "3",
        "float": "1.5",
        "str": '"x"',
        "Sequence[int]": "[1, 2]",
        "Sequence[float]": "[5.0]",
    }.get(kind)


@pytest.mark.parametrize(
    "f",
    [f for f in FIELDS if f.metadata["setting"].check is not None],
    ids=[f.name for f in FIELDS if f.metadata["setting"].check is not None],
)
def test_every_rule_refuses_a_wrong_type_naming_the_setting_and_its_flag(f):
    with pytest.raises(llmbench.InvalidArgumentError, match=f.name):
        SweepOptions(**{f.name: object()})
    flag = f.metadata["setting"].flag
    if flag is not None and flag.type in ("int", "float"):
        code, _, err = _cli(["metrics", flag.name, "-5", "--quiet", "--embedded", "sim"])
        assert code != 0 and flag.name in err, err


def _cli(argv: list[str]) -> tuple[int, str, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "llmbench.cli", *argv],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return proc.returncode, proc.stdout, proc.stderr


def test_a_misspelt_setting_names_the_nearest_one_in_both_calls(sim):
    with pytest.raises(TypeError, match=r"unexpected keyword.*'max_token'.*'max_tokens'"):
        llmbench.run_sweep(sim.target(), max_token=4)
    with pytest.raises(llmbench.InvalidArgumentError, match="did you mean 'max_tokens'"):
        asyncio.run(llmbench.run_sweep_async(sim.target(), max_token=4))


def test_the_manifest_records_every_json_setting(sim, tmp_path):
    res = llmbench.run_sweep(
        sim.target(),
        [1],
        2,
        2,
        progress=False,
        warmup_s=0.05,
        cooldown_s=0.01,
        server_metrics=False,
    )
    settings = res.manifest["settings"]
    for f in FIELDS:
        if f.metadata["setting"].manifest:
            assert f.name in settings, f.name
    assert settings["warmup_s"] == 0.05 and settings["cooldown_s"] == 0.01
    assert settings["batch_sizes"] == [1] and settings["requests_per_stage"] == 2
    json.dumps(settings)  # JSON as it is


def test_warmup_and_cooldown_are_on_the_command_line(tmp_path):
    code, _, err = _cli(
        [
            "metrics",
            "--embedded",
            "sim",
            "--batch-sizes",
            "1",
            "--requests",
            "2",
            "--max-tokens",
            "2",
            "--warmup-s",
            "0.05",
            "--cooldown-s",
            "0.01",
            "--quiet",
            "--no-report",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0, err
    settings = json.loads((tmp_path / "metrics_data.json").read_text())["manifest"]["settings"]
    assert settings["warmup_s"] == 0.05 and settings["cooldown_s"] == 0.01


def test_studies_take_the_sweeps_defaults():
    cap = inspect.signature(llmbench.find_capacity).parameters
    assert "max_tokens" not in cap  # taken from SweepOptions, never restated
    kv = inspect.signature(llmbench.kv_cache_study).parameters
    assert "model_arch" not in kv and kv["gpu"].default is True


# ---- one sweep body: the same interruptions end both calls the same way -------------

SLOW = {"ttft_ms": 5, "itl_ms": 20}
KW = dict(batch_sizes=[4], requests_per_stage=10_000, max_tokens=50, server_metrics=False)


def _saved(folder) -> dict:
    data = json.loads((folder / "metrics_data.json").read_text())
    assert data["manifest"]["interrupted"] is True
    assert data["summary"] and data["summary"][0]["n_requests"] > 0
    return data


def test_cancelling_the_awaitable_saves_what_it_measured_and_says_so(tmp_path):
    async def main():
        with llmbench.SimServer(**SLOW) as sim:
            task = asyncio.ensure_future(
                llmbench.run_sweep_async(sim.target(), out_dir=tmp_path, **KW)
            )
            await asyncio.sleep(3)
            task.cancel()
            return await task

    t = time.monotonic()
    with pytest.raises(llmbench.SweepInterrupted) as stop:
        asyncio.run(main())
    assert time.monotonic() - t < 10
    res = stop.value.results
    assert res.interrupted and len(res.summary) == 1
    assert int(res.summary.iloc[0]["n_requests"]) > 0
    data = _saved(tmp_path)
    assert data["summary"][0]["n_requests"] == int(res.summary.iloc[0]["n_requests"])
    assert "saved to" in str(stop.value)


def test_a_timeout_around_the_awaitable_raises_sweep_interrupted_with_the_results(tmp_path):
    async def main():
        with llmbench.SimServer(**SLOW) as sim:
            async with asyncio.timeout(3):
                return await llmbench.run_sweep_async(sim.target(), out_dir=tmp_path, **KW)

    if sys.version_info < (3, 11):
        pytest.skip("asyncio.timeout is Python 3.11+")
    with pytest.raises(llmbench.SweepInterrupted):
        asyncio.run(main())
    _saved(tmp_path)


BLOCKING_CTRL_C = textwrap.dedent(
    """
    import json, sys, llmbench
    with llmbench.SimServer(ttft_ms=5, itl_ms=20) as sim:
        try:
            llmbench.run_sweep(sim.target(), batch_sizes=[4], requests_per_stage=10_000,
                               max_tokens=50, server_metrics=False, out_dir=sys.argv[1],
                               progress=False)
        except llmbench.SweepInterrupted as stop:
            print(json.dumps({"n": int(stop.results.summary.iloc[0]["n_requests"]),
                              "message": str(stop)}), flush=True)
            sys.exit(3)
    """
)


def test_ctrl_c_on_the_blocking_call_ends_it_the_same_way(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-c", BLOCKING_CTRL_C, str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(3)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 3, err
    said = json.loads(out.strip().splitlines()[-1])
    data = _saved(tmp_path)
    assert data["summary"][0]["n_requests"] == said["n"] > 0
    assert "saved to" in said["message"]


def test_results_are_a_value(sim):
    res = llmbench.run_sweep(sim.target(), [1], 2, 2, progress=False, server_metrics=False)
    other = res.replace(manifest={**res.manifest, "note": "x"})
    assert "note" not in res.manifest and other.manifest["note"] == "x"
    assert other.summary is res.summary
    with pytest.warns(DeprecationWarning, match="replace"):
        res.attach_telemetry({})
    assert dataclasses.is_dataclass(SweepOptions)
