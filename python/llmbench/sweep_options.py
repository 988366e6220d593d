"""`SweepOptions`: every sweep setting, declared once.

Each setting is one field: its type, its default (read from the engine, `_settings`), its
help text, its rule (`llmbench.checks`), its command-line flag and whether it goes to the
engine as it is. Everything else is derived from the fields, never restated: the keywords
`run_sweep` and `run_sweep_async` take (and their signature and docstring), the command
line's flags and help (`llmbench.cli.options.add_sweep_flags`), the keys of a TOML
`[sweep]` table (`llmbench.config`), the manifest's `settings` and the engine config.
Adding a setting is adding a field here (and the engine's field, if the engine reads it);
`tests/python/test_settings.py` walks every field.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import Any

from . import checks
from . import datasets as _datasets
from ._core import InvalidArgumentError
from ._settings import CHOICES, OPEN_LOOP, SWEEP, check_choice
from .cluster import RayCluster
from .columns.telemetry import DEFAULT_GPU_PERIOD_MS
from .datasets import Conversations, Dataset, Trace
from .pricing import gpu_price
from .prompts import load_prompts
from .repeats import DEFAULT_REPEATS
from .slo import SLO

# The engine's default concurrency points (the seed workflow's).
DEFAULT_BATCH_SIZES = tuple(SWEEP["batch_sizes"])


#: A flag whose default is its setting's.
FIELD_DEFAULT: Any = type("FieldDefault", (), {"__repr__": lambda self: "FIELD_DEFAULT"})()


@dataclass(frozen=True)
class Flag:
    """How the command line sets a setting: its flag, the parser of its text (a name in
    `llmbench.cli.types.PARSERS`: "str", "int", "float", "int_list", "float_list",
    "price"), or an `action`, and `to_setting`, which turns the parsed value into the
    setting's (for flags whose value is not the setting itself, like `--metrics-period 0`
    for `server_metrics=False`)."""

    name: str
    type: str = "str"
    action: str | None = None
    nargs: str | None = None
    const: Any = None
    metavar: str | None = None
    choices: Sequence[str] | None = None
    #: The flag's own default, where it differs from the field's (`FIELD_DEFAULT`: not).
    default: Any = FIELD_DEFAULT
    to_setting: Callable[[Any], Any] | None = None
    group: str = "load"


class UnknownSettingError(InvalidArgumentError, TypeError):
    """A call given a setting that does not exist (or one twice): an `InvalidArgumentError`
    and, as Python's own for an unknown keyword, a `TypeError`."""


@dataclass(frozen=True)
class Setting:
    """What a field declares beside its type and default."""

    help: str
    rule: str | None = None
    check: Callable[[Any], bool] | None = None
    flag: Flag | None = None
    #: Passed to the engine config under its own name, as it is (`True`), or built by
    #: `SweepOptions.engine_config` from several fields (`False`).
    engine: bool = False
    #: Written to the manifest's `settings` (JSON values only).
    manifest: bool = True


def setting(
    default: Any,
    help: str,
    *,
    rule: tuple[str, Callable[[Any], bool]] | None = None,
    flag: Flag | None = None,
    engine: bool = False,
    manifest: bool = True,
) -> Any:
    """A `SweepOptions` field: `default` and what `Setting` holds."""
    meta = Setting(
        help=help,
        rule=rule[0] if rule else None,
        check=rule[1] if rule else None,
        flag=flag,
        engine=engine,
        manifest=manifest,
    )
    if isinstance(default, (list, dict)):
        raise TypeError("mutable defaults: use a tuple")
    return field(default=default, metadata={"setting": meta})


@dataclass(frozen=True)
class SweepOptions:
    """The settings of a sweep besides its targets: the keywords of `run_sweep`, the
    keys of a TOML `[sweep]` table and (where a field has a flag) the command line's
    sweep options. Each is checked once, here, when the options are made.

    Example:
        >>> opts = llmbench.SweepOptions(batch_sizes=[1, 8], max_tokens=64)
        >>> [f.name for f in dataclasses.fields(llmbench.SweepOptions)][:3]
        ['batch_sizes', 'requests_per_stage', 'max_tokens']
    """

    batch_sizes: Sequence[int] = setting(
        DEFAULT_BATCH_SIZES,
        "the concurrency points: requests kept in flight per stage",
        rule=("a non-empty list of integers >= 1", checks.list_of(checks.int_at_least(1))),
        flag=Flag("--batch-sizes", type="int_list", metavar="N,N,..."),
    )
    requests_per_stage: int | None = setting(
        SWEEP["requests_per_stage"],
        "requests per stage (default max(4 x batch size, 16), the engine's rule)",
        rule=("an integer >= 1 (or unset)", checks.optional(checks.int_at_least(1))),
        flag=Flag("--requests", type="int"),
    )
    max_tokens: int = setting(
        SWEEP["max_tokens"],
        "output token budget per request (force the length with the server's own option, "
        "e.g. extra_body={'ignore_eos': True} on vLLM, or the target's force_output_len)",
        rule=("an integer >= 1", checks.int_at_least(1)),
        flag=Flag("--max-tokens", type="int"),
        engine=True,
    )
    prompts: str | Path | Iterable[str] | Dataset | Conversations | None = setting(
        None,
        "a prompts.txt-style file (one per line), a list of strings, a llmbench.datasets "
        "Dataset (prompts with their own output budgets) or Conversations (multi-turn: the "
        "batch size is then conversations in flight and requests_per_stage counts "
        "conversations), or None for the bundled set",
        flag=Flag("--prompts"),
        manifest=False,
    )
    gpu_hourly_usd: str | float | None = setting(
        None,
        "USD per GPU-hour or a preset name ('L4', 'A100-80GB', 'H100', ...); default 2.93 (L4)",
        flag=Flag("--gpu-price", type="price", group="output"),
    )
    out_dir: str | Path | None = setting(
        None,
        "folder for the result files (None: keep in memory only; the records then live in "
        "a temporary folder as long as the results)",
        rule=("a folder path (or unset)", checks.optional(checks.path_like)),
        flag=Flag("--out", group="output"),
        manifest=False,
    )
    workload: dict[str, Any] | None = setting(
        None,
        "a workload as a table, for files and the command line: {'kind': 'conversations', "
        "'n': 32, 'turns': 5, 'input_tokens': 128, 'output_tokens': 64, 'think_time_s': 1.0} "
        "calls llmbench.datasets.conversations(...) (kinds: conversations, shared_prefix, "
        "sharegpt, synthetic); the sweep's tokenizer and seed apply",
    )
    input_lengths: Sequence[int] | None = setting(
        None,
        "one stage per prompt length in tokens (words without a tokenizer), e.g. "
        "[128, 1024, 8192], at the one batch size (or rate) given: prefill scaling in one "
        "table (input_tokens column) and one plot",
        rule=(
            "a non-empty list of integers >= 1 (or unset)",
            checks.optional(checks.list_of(checks.int_at_least(1))),
        ),
        flag=Flag("--input-lengths", type="int_list", group="workload"),
    )
    stage_duration_s: float | None = setting(
        SWEEP["stage_duration_s"],
        "stop starting new requests in a stage after this many seconds",
        rule=("a number of seconds > 0 (or unset)", checks.optional(checks.number_above(0))),
        flag=Flag("--duration", type="float"),
        engine=True,
    )
    seed: int = setting(
        SWEEP["seed"],
        "seed of the prompt order and of the arrival schedules",
        rule=("an integer >= 0", checks.int_at_least(0)),
        flag=Flag("--seed", type="int"),
        engine=True,
    )
    warmup_requests: int = setting(
        SWEEP["warmup_requests"],
        "warm-up requests per target, reported apart (0 to skip)",
        rule=("an integer >= 0", checks.int_at_least(0)),
        flag=Flag("--warmup", type="int"),
        engine=True,
    )
    tokenizer: str | Path | None = setting(
        None,
        "a tokenizer.json to count tokens where the server reports no usage",
        rule=("a path (or unset)", checks.optional(checks.path_like)),
        flag=Flag("--tokenizer"),
    )
    n_gpus: int = setting(
        SWEEP["pricing"]["n_gpus"],
        "GPUs the server uses (for cost)",
        rule=("an integer >= 1", checks.int_at_least(1)),
        flag=Flag("--n-gpus", type="int", group="output"),
    )
    gpu: bool | float = setting(
        False,
        "sample the GPUs through NVML during the run (True: every "
        f"{DEFAULT_GPU_PERIOD_MS:g} ms; a number: that period in ms). Without a driver the "
        "sweep runs on without GPU columns (a warning says so). Adds memory, utilisation, "
        "power and energy columns (gpu_mem_used_max_gib, gpu_power_mean_w, "
        "j_per_output_token, ...)",
        rule=("true, false or a sampling period in ms > 0", checks.bool_or_period),
        flag=Flag(
            "--gpu",
            type="float",
            nargs="?",
            const=DEFAULT_GPU_PERIOD_MS,
            default=None,
            metavar="PERIOD_MS",
            to_setting=lambda v: v or False,
            group="output",
        ),
    )
    server_metrics: bool | float = setting(
        True,
        "poll the target's Prometheus /metrics (True: every second; a number: that period "
        "in ms; False or 0 on the command line: off). Adds the server's KV-cache columns "
        "(kv_server_usage_max_pct, kv_server_tokens_max)",
        rule=("true, false or a scrape period in ms > 0", checks.bool_or_period),
        flag=Flag(
            "--metrics-period",
            type="float",
            default=1000.0,
            metavar="MS",
            to_setting=lambda v: v or False,
            group="output",
        ),
    )
    model_arch: str | Path | None = setting(
        None,
        "a preset (llama-2-7b, llama-2-13b, llama-3-8b, mistral-7b, ...), a config.json or a "
        "model folder: KV-cache bytes per token, for the KV columns in GiB and the "
        "client-side estimate (kv_client_est_gib_max)",
        flag=Flag("--model-arch", group="output"),
    )
    rates: Sequence[float] | None = setting(
        None,
        "open-loop stages at these request rates (per second) instead of the batch sizes: "
        "requests are sent on a seeded arrival schedule whatever the server's state, each "
        "keeping its scheduled time, so client-side delay shows as send_lag and latencies "
        "from schedule (ttft_sched, e2e_sched) sit beside those from send. Default length: "
        "ten seconds' worth of requests (at least 16)",
        rule=(
            "a non-empty list of request rates > 0 (or unset)",
            checks.optional(checks.list_of(checks.number_above(0))),
        ),
        flag=Flag("--rates", type="float_list", metavar="R,R,..."),
    )
    arrival: str = setting(
        OPEN_LOOP["process"],
        "the arrival process of open-loop stages: poisson, constant, gamma, or ramp (then "
        "rates=[start, end]: one stage whose rate rises linearly over stage_duration_s)",
        rule=(
            "one of " + ", ".join(CHOICES["arrival"]),
            lambda v: isinstance(v, str) and v in CHOICES["arrival"],
        ),
        flag=Flag("--arrival", choices=CHOICES["arrival"]),
    )
    burstiness: float = setting(
        OPEN_LOOP["burstiness"],
        "the gamma process's shape (1 is Poisson; smaller is burstier)",
        rule=("a number > 0", checks.number_above(0)),
        flag=Flag("--burstiness", type="float"),
    )
    max_in_flight: int | None = setting(
        None,
        "cap on open-loop requests in flight; waiting for a slot is measured as send lag, "
        "never hidden",
        rule=("an integer >= 1 (or unset)", checks.optional(checks.int_at_least(1))),
        flag=Flag("--max-in-flight", type="int"),
    )
    slo: SLO | dict[str, float] | None = setting(
        None,
        "latency limits (llmbench.SLO or a dict like {'ttft_ms': 500, 'tpot_ms': 50, "
        "'percentile': 99}): adds slo_met, goodput_req_s, good_fraction and the percentile "
        "of each limited metric per stage",
        manifest=False,
    )
    warmup_s: float | None = setting(
        SWEEP["warmup_s"],
        "after the warm-up requests, a warm-up wave this many seconds long at the first "
        "stage's load (a cold server's first wave), reported apart (Results.warmup)",
        rule=("a number of seconds >= 0 (or unset)", checks.optional(checks.number_above(0, True))),
        flag=Flag("--warmup-s", type="float", metavar="S"),
        engine=True,
    )
    cooldown_s: float | None = setting(
        SWEEP["cooldown_s"],
        "pause this many seconds after each stage, nothing sent, so the server drains",
        rule=("a number of seconds >= 0 (or unset)", checks.optional(checks.number_above(0, True))),
        flag=Flag("--cooldown-s", type="float", metavar="S"),
        engine=True,
    )
    trace: Trace | None = setting(
        None,
        "replay a llmbench.datasets.trace(...): one open-loop stage, each request at its "
        "recorded time with its own prompt and output budget (in order)",
        manifest=False,
    )
    resume: bool = setting(
        SWEEP["resume"],
        "continue an interrupted run with the same settings from the record files in "
        "out_dir: stages it completed are kept (their records and summaries), the stage "
        "that was cut short and those never started are run",
        rule=("true or false", checks.is_bool),
        engine=True,
    )
    repeats: int = setting(
        DEFAULT_REPEATS,
        "run every stage this many times, the targets taking turns in alternating order "
        "(A B, B A, ...): the summary keeps one row per stage with the mean over repeats and, "
        "for the headline metrics, <metric>_ci_low, <metric>_ci_high (95%, Student's t over "
        "repeats) and <metric>_cv; Results.repeats keeps one row per stage and repeat; the "
        "records get a repeat column (files requests_<target>_r<k>.arrows)",
        rule=("an integer >= 1", checks.int_at_least(1)),
        flag=Flag("--repeats", type="int"),
    )
    report: bool = setting(
        True,
        "with out_dir, write report.html there too: one self-contained page with the "
        "summary, interactive charts, client health, failures and, for two targets, the A/B "
        "verdicts (llmbench.report.write_report; docs/report.md)",
        rule=("true or false", checks.is_bool),
        flag=Flag("--report", action="boolean_optional", group="output"),
    )
    cluster: RayCluster | dict[str, Any] | None = setting(
        None,
        "send the load from a Ray cluster's workers instead of this process "
        "(llmbench.RayCluster(address, workers=N); needs pip install 'llmbench[ray]'): "
        "closed-loop batch sizes split across the workers, the open-loop schedule dealt "
        "out, records merged here as they arrive (docs/distributed.md)",
        manifest=False,
    )
    progress: bool = setting(
        True,
        "show live progress on stderr (run_sweep_async shows none)",
        rule=("true or false", checks.is_bool),
        manifest=False,
    )
    wandb: bool | dict[str, Any] | None = setting(
        None,
        "log the results to Weights & Biases once they are saved: True, or a dict of "
        "wandb.init settings (project, name, mode, timeout_s, ...). A stalled W&B service "
        "times out with a warning; it never costs the results",
        manifest=False,
    )

    def __post_init__(self) -> None:
        # Types and ranges are checked here, once, for the API, TOML and the command line.
        check_settings({f.name: getattr(self, f.name) for f in fields(self)})

    # -- derived from the fields ------------------------------------------------------

    @classmethod
    def of_call(cls, caller: str, args: Sequence[Any], kwargs: dict[str, Any]) -> SweepOptions:
        """The options of a call `caller(targets, *args, **kwargs)`: the first arguments
        may be given by position (`POSITIONAL`, as `run_sweep` always took them); an
        unknown keyword is an error naming it and the nearest known one."""
        if len(args) > len(POSITIONAL):
            raise UnknownSettingError(
                f"{caller}() takes at most {len(POSITIONAL) + 1} positional arguments "
                f"(targets, {', '.join(POSITIONAL)}); give the rest by keyword"
            )
        given = dict(zip(POSITIONAL, args, strict=False))
        twice = sorted(set(given) & set(kwargs))
        if twice:
            raise UnknownSettingError(f"{caller}() got multiple values for {', '.join(twice)}")
        given.update(kwargs)
        unknown = sorted(set(given) - set(NAMES))
        if unknown:
            import difflib

            hints = [
                f"{u!r}" + (f" (did you mean {near[0]!r}?)" if near else "")
                for u in unknown
                for near in [difflib.get_close_matches(u, NAMES, n=1)]
            ]
            raise UnknownSettingError(
                f"{caller}() got an unexpected keyword argument {', '.join(hints)}; the "
                "settings are llmbench.SweepOptions' fields"
            )
        return cls(**given)

    def manifest_settings(self, config: dict[str, Any]) -> dict[str, Any]:
        """The manifest's `settings`: every JSON setting, as the engine got it where it
        resolved one (batch sizes per stage, the price of a preset, a trace's length)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            if not _meta(f).manifest:
                continue
            value = config.get(f.name, getattr(self, f.name))
            out[f.name] = _json_value(value)
        out["gpu_hourly_usd"] = config["pricing"]["usd_per_gpu_hour"]
        out["open_loop"] = config["open_loop"]
        return out

    def open_loop(self) -> dict[str, Any] | None:
        """The engine's open-loop settings, or None for closed-loop batch-size stages."""
        if self.trace is not None:
            if self.rates is not None:
                raise InvalidArgumentError("give rates or a trace, not both")
            return {
                "rates": [self.trace.rate()],
                "process": "trace",
                "trace_times_s": list(self.trace.times_s),
                "in_order": True,
                "max_in_flight": self.max_in_flight,
            }
        _, rates = self.stage_loads()
        if rates is None:
            return None
        rate_list = rates
        check_choice("arrival", self.arrival, "arrival")
        ramp_end = None
        if self.arrival == "ramp":
            # One stage whose rate rises linearly from the first rate to the second.
            if len(rate_list) != 2:
                raise InvalidArgumentError("a ramp takes rates=[start, end] (one stage)")
            rate_list, ramp_end = rate_list[:1], rate_list[1]
        return {
            "rates": rate_list,
            "process": self.arrival,
            "burstiness": float(self.burstiness),
            "max_in_flight": self.max_in_flight,
            "ramp_end_rate": ramp_end,
        }

    def dataset(self) -> Dataset | Conversations | None:
        """The workload when it is more than a prompt list: a dataset, conversations, a
        trace's requests, a `workload` table's, or the prompts of an input-length sweep."""
        return self._workload[0]

    @cached_property
    def _workload(self) -> tuple[Dataset | Conversations | None, list[list[int]] | None]:
        """The dataset and, for a sweep over input lengths, each stage's prompt indices
        (built once: synthetic prompts cost a tokenizer pass)."""
        given = [
            name
            for name, v in (
                ("trace", self.trace),
                ("workload", self.workload),
                ("input_lengths", self.input_lengths),
            )
            if v is not None
        ]
        if self.prompts is not None and (self.workload is not None or self.input_lengths):
            given.append("prompts")
        if len(given) > 1:
            raise InvalidArgumentError(f"give one workload, not {' and '.join(given)}")
        if self.trace is not None:
            return self.trace.dataset, None
        if self.workload is not None:
            spec = self.workload
            if not isinstance(spec, dict):
                raise InvalidArgumentError("workload must be a table with a kind")
            return _datasets.from_spec(spec, self.tokenizer, self.seed), None
        if self.input_lengths is not None:
            return self._input_length_workload()
        if isinstance(self.prompts, (Dataset, Conversations)):
            return self.prompts, None
        return None, None

    def _input_length_workload(self) -> tuple[Dataset, list[list[int]]]:
        """One stage per input length at one concurrency (or one rate)."""
        loads = self.rates if self.rates is not None else self.batch_sizes
        if len(list(loads)) != 1:
            raise InvalidArgumentError(
                "a sweep over input_lengths runs at one batch size (or one rate): give exactly one"
            )
        return _datasets.input_lengths(
            [int(x) for x in self.input_lengths or []], tokenizer=self.tokenizer, seed=self.seed
        )

    def stage_loads(self) -> tuple[list[int], list[float] | None]:
        """The batch sizes and rates of the stages: one stage per input length in a sweep
        over input lengths, else as given."""
        n = len(self.input_lengths) if self.input_lengths is not None else None
        batch_sizes = [int(b) for b in self.batch_sizes]
        rates = [float(r) for r in self.rates] if self.rates is not None else None
        if n is not None:
            batch_sizes = batch_sizes[:1] * n
            rates = rates[:1] * n if rates is not None else None
        return batch_sizes, rates

    def engine_config(self) -> dict[str, Any]:
        """The engine's `SweepConfig` less its `target` and `records_path`, which differ per
        target (the engine checks it, naming any key or value it refuses): the fields
        marked `engine` as they are, and the rest built here. Prompt files are read here,
        once for every target."""
        dataset, stage_prompts = self._workload
        batch_sizes, _ = self.stage_loads()
        conversations = None
        budgets = dataset.max_tokens if dataset is not None else None
        if isinstance(dataset, Conversations):
            conversations = dataset.to_engine(self.max_tokens)
            # Warm-up requests send first turns, each with its own budget.
            budgets = [b[0] for b in dataset.max_tokens] if dataset.max_tokens else None
        passed = {f.name: getattr(self, f.name) for f in fields(self) if _meta(f).engine}
        return {
            **passed,
            "batch_sizes": batch_sizes,
            "requests_per_stage": (
                len(self.trace.times_s) if self.trace is not None else self.requests_per_stage
            ),
            "prompts": dataset.prompts if dataset is not None else load_prompts(self.prompts),
            "max_tokens_per_prompt": budgets,
            "stage_prompts": stage_prompts,
            "conversations": conversations,
            "tokenizer": str(self.tokenizer) if self.tokenizer is not None else None,
            "pricing": {"usd_per_gpu_hour": gpu_price(self.gpu_hourly_usd), "n_gpus": self.n_gpus},
            "open_loop": self.open_loop(),
            "slo": SLO.of(self.slo).to_engine() if self.slo is not None else None,
        }


def _meta(f: Any) -> Setting:
    return f.metadata["setting"]


def _json_value(value: Any) -> Any:
    """`value` as JSON keeps it (paths as text, tuples as lists)."""
    return json.loads(json.dumps(value, default=str))


def check_settings(values: dict[str, Any]) -> None:
    """Raise `checks.SettingError` for the first setting in `values` its rule refuses."""
    for f in fields(SweepOptions):
        meta = _meta(f)
        if meta.check is not None and f.name in values and not meta.check(values[f.name]):
            raise checks.SettingError(f.name, meta.rule or "", values[f.name])


#: Every setting's name, in declaration order.
NAMES: tuple[str, ...] = tuple(f.name for f in fields(SweepOptions))
#: The settings `run_sweep` takes by position after its targets (as it always did).
POSITIONAL = (
    "batch_sizes",
    "requests_per_stage",
    "max_tokens",
    "prompts",
    "gpu_hourly_usd",
    "out_dir",
)


def setting_fields() -> tuple[Any, ...]:
    """The fields of `SweepOptions`, each with its `Setting` as `field.metadata["setting"]`."""
    return fields(SweepOptions)


def default(name: str) -> Any:
    """Setting `name`'s default."""
    return SweepOptions.__dataclass_fields__[name].default


def signature(head: list[inspect.Parameter], returns: Any) -> inspect.Signature:
    """The signature of a call taking `head` and then every setting (the first
    `POSITIONAL` ones by position too), for `help()`, notebooks' completion and docs."""
    params = list(head)
    for f in fields(SweepOptions):
        kind = (
            inspect.Parameter.POSITIONAL_OR_KEYWORD
            if f.name in POSITIONAL
            else inspect.Parameter.KEYWORD_ONLY
        )
        params.append(inspect.Parameter(f.name, kind, default=f.default, annotation=f.type))
    return inspect.Signature(params, return_annotation=returns)


def args_doc(indent: str = "        ") -> str:
    """The `Args:` lines of every setting, from its help."""
    import textwrap

    lines = []
    for f in fields(SweepOptions):
        text = f"{f.name}: {_meta(f).help}."
        lines.append(
            textwrap.fill(text, 92, initial_indent=indent, subsequent_indent=indent + "    ")
        )
    return "\n".join(lines)
