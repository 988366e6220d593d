"""`ab`: run targets A and B on one seeded schedule in alternating blocks (A B, B A,
...) and compare them. The analysis of a run (`compare_ab`, `ABResult`: differences with
95% intervals) is `llmbench.ab_analysis`, which the report uses too; this module runs the
sweep and re-exports it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._core import InvalidArgumentError
from .ab_analysis import *  # noqa: F403 - the analysis, under its old path
from .ab_analysis import DEFAULT_BLOCKS, ABResult, compare_ab
from .sweep import run_sweep
from .sweep_options import DEFAULT_BATCH_SIZES
from .targets import Target


def _check_targets(a: Target, b: Target, allow_same_url: bool) -> None:
    if not (isinstance(a, Target) and isinstance(b, Target)):
        raise InvalidArgumentError("ab takes two targets (llmbench.OpenAI or llmbench.TGI)")
    if a.name == b.name:
        raise InvalidArgumentError(f"A and B need different names (both are {a.name!r})")
    same = a.url.rstrip("/") == b.url.rstrip("/") and a.to_spec().get("model") == b.to_spec().get(
        "model"
    )
    if same and not allow_same_url:
        raise InvalidArgumentError(
            f"A and B are the same server ({a.describe()['url']}, same model): an A/B test of "
            "a server against itself finds nothing; allow it (allow_same_url=True, or "
            "--allow-same-url) only for an A/A check of the method"
        )


def ab(
    a: Target,
    b: Target,
    batch_sizes: Sequence[int] | None = None,
    rates: Sequence[float] | None = None,
    repeats: int = DEFAULT_BLOCKS,
    *,
    allow_same_url: bool = False,
    **run_sweep_options: Any,
) -> ABResult:
    """Compare target `b` against target `a` on one seeded schedule, in `repeats`
    alternating blocks (A B, B A, ...), at `batch_sizes` (closed loop) or `rates` (open
    loop). Takes `run_sweep`'s other options (`requests_per_stage`, `max_tokens`,
    `prompts`, `seed`, `out_dir`, `slo`, ...).

    Example:
        >>> r = llmbench.ab(llmbench.OpenAI(url_vllm, model=m, name="vllm"),
        ...                 llmbench.OpenAI(url_tgi, model=m, name="tgi"),
        ...                 batch_sizes=[1, 8, 32], repeats=4, max_tokens=128)
        >>> print(r.statement)
    """
    _check_targets(a, b, allow_same_url)
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise InvalidArgumentError(f"repeats must be an integer >= 1, got {repeats!r}")
    if batch_sizes is None and rates is None:
        batch_sizes = DEFAULT_BATCH_SIZES
    options = dict(run_sweep_options)
    if batch_sizes is not None:
        options["batch_sizes"] = batch_sizes
    res = run_sweep([a, b], rates=rates, repeats=repeats, **options)
    result = compare_ab(res, a.name, b.name)
    if options.get("out_dir") is not None:
        result.write_files(options["out_dir"])
    return result
