"""The engine's defaults and choices, read once from `llmbench._core.settings()`.

Every default the Python API, the command line and the TOML files show comes from here,
and so from the Rust definitions themselves (`src/settings.rs`): nothing in Python copies
one, so nothing can drift (`tests/python/test_settings.py` checks it).
"""

from __future__ import annotations

from typing import Any

from . import _core
from ._core import InvalidArgumentError

ENGINE: dict[str, Any] = _core.settings()
SWEEP: dict[str, Any] = ENGINE["sweep"]
OPEN_LOOP: dict[str, Any] = ENGINE["open_loop"]
TARGET: dict[str, Any] = ENGINE["target"]
TIMEOUTS: dict[str, float] = ENGINE["timeouts"]
PRICING: dict[str, Any] = ENGINE["pricing"]
SIM: dict[str, Any] = ENGINE["sim"]
BASELINE_RUN: dict[str, Any] = ENGINE["baseline_run"]
BASELINE_MODEL: dict[str, Any] = ENGINE["baseline_model"]
BASELINE_SERVER: dict[str, Any] = ENGINE["baseline_server"]
GPU_SAMPLER: dict[str, Any] = ENGINE["gpu_sampler"]
SLO_DEFAULTS: dict[str, Any] = ENGINE["slo"]
CHOICES: dict[str, tuple[str, ...]] = {k: tuple(v) for k, v in ENGINE["choices"].items()}


def check_choice(name: str, value: Any, choices: str) -> None:
    """Raise a clear error unless `value` is one of the engine's `choices` (a key of
    `CHOICES`: "api", "arrival", "force_output_len", "faults")."""
    allowed = CHOICES[choices]
    if value not in allowed:
        names = ", ".join(repr(c) for c in allowed)
        raise InvalidArgumentError(f"{name} must be one of {names}; got {value!r}")
