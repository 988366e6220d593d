"""Every default the Python API and the command line show is the engine's own, and a
setting the engine does not know is an error naming it (never a silent default)."""

from __future__ import annotations

import dataclasses
import inspect

import llmbench
import pytest
from llmbench import _core
from llmbench.cli.options import build_parser

ENGINE = _core.settings()


def _defaults(fn):
    return {
        name: p.default
        for name, p in inspect.signature(fn).parameters.items()
        if p.default is not inspect.Parameter.empty
    }


def test_run_sweep_defaults_are_the_engines():
    d, sweep, open_loop = _defaults(llmbench.run_sweep), ENGINE["sweep"], ENGINE["open_loop"]
    assert list(d["batch_sizes"]) == sweep["batch_sizes"] == [1, 2, 4, 8, 16, 32, 64, 128]
    assert list(llmbench.DEFAULT_BATCH_SIZES) == sweep["batch_sizes"]
    for name in ("requests_per_stage", "max_tokens", "stage_duration_s", "seed"):
        assert d[name] == sweep[name], name
    for name in ("warmup_requests", "warmup_s", "cooldown_s", "resume"):
        assert d[name] == sweep[name], name
    assert d["n_gpus"] == sweep["pricing"]["n_gpus"]
    assert d["arrival"] == open_loop["process"] and d["burstiness"] == open_loop["burstiness"]
    assert _defaults(llmbench.arrival_schedule)["burstiness"] == open_loop["burstiness"]
    assert llmbench.gpu_price(None) == ENGINE["pricing"]["usd_per_gpu_hour"]


def test_target_timeouts_sim_and_baseline_defaults_are_the_engines():
    t = llmbench.OpenAI("http://h:1", model="m")
    spec = t.to_spec()
    for name in ("temperature", "include_usage", "continuous_usage", "verify_tls"):
        assert spec[name] == ENGINE["target"][name], name
    assert spec["force_output_len"] == ENGINE["target"]["force_output_len"]
    assert llmbench.Timeouts().to_spec() == ENGINE["timeouts"] == ENGINE["target"]["timeouts"]
    assert dataclasses.asdict(llmbench.SimConfig()) == ENGINE["sim"]
    run = _defaults(llmbench.baseline.run)
    for name in ("max_new_tokens", "batches_per_stage", "warmup_batches", "ignore_eos", "seed"):
        assert run[name] == ENGINE["baseline_run"][name], name
    assert list(run["batch_sizes"]) == ENGINE["baseline_run"]["batch_sizes"]
    assert run["device"] == ENGINE["baseline_model"]["device"]
    serve = _defaults(llmbench.baseline.BaselineServer.__init__)
    for name in ("max_batch", "batch_window_ms", "default_max_tokens"):
        assert serve[name] == ENGINE["baseline_server"][name], name
    sampler = _defaults(llmbench.GpuSampler.__init__)
    for name in ("period_ms", "aux_period_ms", "energy_period_ms", "process_period_ms"):
        assert sampler[name] == ENGINE["gpu_sampler"][name], name


def test_command_line_defaults_and_choices_are_the_engines():
    parser = build_parser()
    metrics = parser.parse_args(["metrics"])
    sweep, timeouts = ENGINE["sweep"], ENGINE["timeouts"]
    assert metrics.batch_sizes == sweep["batch_sizes"]
    assert (metrics.max_tokens, metrics.seed, metrics.warmup) == (
        sweep["max_tokens"],
        sweep["seed"],
        sweep["warmup_requests"],
    )
    assert metrics.requests == sweep["requests_per_stage"]
    assert metrics.n_gpus == sweep["pricing"]["n_gpus"]
    assert metrics.temperature == ENGINE["target"]["temperature"]
    assert {
        "connect_s": metrics.connect_timeout,
        "ttft_s": metrics.ttft_timeout,
        "idle_s": metrics.idle_timeout,
        "total_s": metrics.timeout,
    } == timeouts
    assert metrics.arrival == ENGINE["open_loop"]["process"]
    assert metrics.burstiness == ENGINE["open_loop"]["burstiness"]
    assert (
        metrics.slo_percentile == ENGINE["slo"]["percentile"] == llmbench.SLO(ttft_ms=1).percentile
    )
    sim = parser.parse_args(["sim"])
    for name, value in ENGINE["sim"].items():
        if name != "model":
            assert getattr(sim, f"sim_{name}") == value, name
    serve = parser.parse_args(["serve"])
    assert serve.max_batch == ENGINE["baseline_server"]["max_batch"]
    assert serve.batch_window_ms == ENGINE["baseline_server"]["batch_window_ms"]
    # Choices: the command refuses what the engine does not know, and offers all it does.
    actions = {a.dest: a for a in parser._subparsers._group_actions[0].choices["metrics"]._actions}
    assert tuple(actions["api"].choices) == tuple(ENGINE["choices"]["api"])
    assert tuple(actions["arrival"].choices) == tuple(ENGINE["choices"]["arrival"])
    assert tuple(actions["force_output_len"].choices) == tuple(
        ENGINE["choices"]["force_output_len"]
    )
    assert tuple(llmbench.sim.FAULTS) == tuple(ENGINE["choices"]["faults"])


@pytest.mark.parametrize(
    "mutate, key",
    [
        (lambda c: c.update(batch_size=[1]), "batch_size"),
        (lambda c: c["target"].update(modle="m"), "modle"),
        (lambda c: c["target"]["timeouts"].update(ttft=3), "ttft"),
        (lambda c: c["pricing"].update(usd_per_hour=1.0), "usd_per_hour"),
        (lambda c: c.update(open_loop={"rates": [1.0], "procss": "poisson"}), "procss"),
    ],
)
def test_a_misspelt_setting_is_an_error_naming_the_key(mutate, key):
    config = {
        "target": llmbench.OpenAI("http://127.0.0.1:9", model="m").to_spec(),
        "prompts": ["hi"],
        "pricing": {"usd_per_gpu_hour": 1.0, "n_gpus": 1},
    }
    mutate(config)
    with pytest.raises(llmbench.InvalidArgumentError, match=f"unknown field `{key}`"):
        _core.check_sweep(config)
    with pytest.raises(llmbench.InvalidArgumentError, match=f"unknown field `{key}`"):
        _core.run_sweep(config)


def test_misspelt_keys_of_the_servers_and_sampler_are_named():
    with pytest.raises(llmbench.InvalidArgumentError, match="unknown field `ttft`"):
        _core.SimServer({"ttft": 5})
    with pytest.raises(llmbench.InvalidArgumentError, match="unknown field `max_batchs`"):
        _core.BaselineServer({"model": {"model": "tiny"}, "max_batchs": 2})
    with pytest.raises(llmbench.InvalidArgumentError, match="unknown field `period`"):
        _core.GpuSampler({"period": 5})


def test_a_wrong_type_names_its_key():
    config = {
        "target": llmbench.OpenAI("http://127.0.0.1:9", model="m").to_spec(),
        "prompts": ["hi"],
        "warmup_requests": -1,
    }
    with pytest.raises(llmbench.InvalidArgumentError, match="warmup_requests"):
        _core.check_sweep(config)
