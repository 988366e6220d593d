"""Sweeps described in TOML files, with the same fields as the Python API.

    # sweep.toml
    [[target]]                 # one table per target; kind "openai" (default) or "tgi"
    url = "http://localhost:8000"
    model = "meta-llama/Llama-2-7b-chat-hf"
    api = "completions"
    force_output_len = "vllm"
    timeouts = { ttft = 120, idle = 30 }

    [sweep]                    # any keyword argument of llmbench.run_sweep
    batch_sizes = [1, 8, 32]
    max_tokens = 128
    gpu_hourly_usd = "H100"
    out_dir = "results/metrics_study"

`llmbench metrics --config sweep.toml` runs it; `llmbench.load_config` reads it and
`llmbench.save_config` writes one. Unknown keys are errors, and API keys are never read
from a file (they come from the environment).
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._core import InvalidArgumentError
from .checks import SettingError
from .cluster import RayCluster
from .sweep import run_sweep
from .sweep_options import NAMES, check_settings
from .targets import TGI, OpenAI, Target, Timeouts

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

# Target fields a file may set (the key is deliberately not one of them).
_TARGET_FIELDS = {f.name for f in dataclasses.fields(OpenAI)} - {"api_key"}
_TIMEOUT_FIELDS = {f.name for f in dataclasses.fields(Timeouts)}


def _sweep_fields() -> set[str]:
    """The keys a `[sweep]` table may set: every sweep setting (`SweepOptions`) but the
    two a file cannot hold (a trace object, and resume, which is a command's choice)."""
    return set(NAMES) - {"trace", "resume"}


@dataclass
class SweepSpec:
    """A sweep as a file describes it: targets and `run_sweep` keyword arguments.

    Example:
        >>> spec = llmbench.load_config("sweep.toml")
        >>> res = spec.run()
    """

    targets: list[Target]
    options: dict[str, Any] = field(default_factory=dict)

    def run(self, **overrides: Any) -> Any:
        """Run the sweep (`overrides` win over the file's options).

        Example:
            >>> llmbench.load_config("sweep.toml").run(out_dir="results/today")
        """
        return run_sweep(self.targets, **{**self.options, **overrides})


def _unknown(where: str, keys: set[str], allowed: set[str]) -> None:
    extra = sorted(keys - allowed)
    if extra:
        raise InvalidArgumentError(
            f"unknown key(s) {extra} in {where}; allowed: {', '.join(sorted(allowed))}"
        )


def _target(i: int, t: dict[str, Any]) -> Target:
    where = f"[[target]] #{i + 1}"
    if "api_key" in t:
        raise InvalidArgumentError(
            f"{where}: API keys are not read from files; set LLMBENCH_API_KEY instead"
        )
    kind = t.pop("kind", "openai")
    _unknown(where, set(t), _TARGET_FIELDS)
    if "timeouts" in t:
        _unknown(f"{where} timeouts", set(t["timeouts"]), _TIMEOUT_FIELDS)
        t["timeouts"] = Timeouts(**t["timeouts"])
    if kind not in ("openai", "tgi"):
        raise InvalidArgumentError(f"{where}: kind must be 'openai' or 'tgi', got {kind!r}")
    if not isinstance(t.get("url"), str) or not t["url"]:
        raise InvalidArgumentError(
            f'{where}: url must be the server\'s address, e.g. url = "http://localhost:8000"'
            + ("" if "url" not in t else f"; got {t['url']!r}")
        )
    if kind == "tgi":
        t.pop("api", None)
        return TGI(**t)
    return OpenAI(**t)


def parse_config(text: str, where: str = "the config") -> SweepSpec:
    """A `SweepSpec` from TOML text.

    Example:
        >>> llmbench.parse_config('[[target]]\\nurl = "http://h:8000"\\nmodel = "m"\\n')
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise InvalidArgumentError(f"{where} is not valid TOML: {e}") from e
    _unknown(where, set(data), {"target", "sweep"})
    raw_targets = data.get("target", [])
    if isinstance(raw_targets, dict):
        raw_targets = [raw_targets]
    if not raw_targets:
        raise InvalidArgumentError(f"{where} has no [[target]]")
    options = dict(data.get("sweep", {}))
    _unknown(f"{where} [sweep]", set(options), _sweep_fields())
    try:
        check_settings(options)
    except SettingError as e:
        raise InvalidArgumentError(f"{where} [sweep]: {e}") from None
    return SweepSpec([_target(i, dict(t)) for i, t in enumerate(raw_targets)], options)


def load_config(path: str | Path) -> SweepSpec:
    """Read a sweep file.

    Example:
        >>> spec = llmbench.load_config("sweep.toml")
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise InvalidArgumentError(f"cannot read {p}: {e}") from e
    except UnicodeDecodeError as e:
        raise InvalidArgumentError(
            f"{p} is not UTF-8 text (byte {e.start}): TOML files must be UTF-8"
        ) from e
    return parse_config(text, str(p))


def _target_table(t: Target) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": "tgi" if isinstance(t, TGI) else "openai"}
    defaults = OpenAI(url="x") if not isinstance(t, TGI) else TGI(url="x")
    for f in dataclasses.fields(t):
        if f.name == "api_key" or (isinstance(t, TGI) and f.name == "api"):
            continue
        value = getattr(t, f.name)
        if f.name == "timeouts":
            value = dataclasses.asdict(value)
            if value == dataclasses.asdict(Timeouts()):
                continue
        elif value == getattr(defaults, f.name) and f.name not in ("url", "model", "name"):
            continue
        if value is not None:
            out[f.name] = value
    return out


def dump_config(spec: SweepSpec) -> str:
    """TOML text for a `SweepSpec` (no API keys).

    Example:
        >>> print(llmbench.dump_config(spec))
    """
    import tomli_w

    options = {k: (str(v) if isinstance(v, Path) else v) for k, v in spec.options.items()}
    options = {k: (list(v) if isinstance(v, tuple) else v) for k, v in options.items()}
    if isinstance(options.get("cluster"), RayCluster):
        # A table of its fields (TOML has no null: an unset address is left out).
        described = options["cluster"].describe()
        options["cluster"] = {k: v for k, v in described.items() if v is not None}
    data = {
        "target": [_target_table(t) for t in spec.targets],
        "sweep": {k: v for k, v in options.items() if v is not None},
    }
    return tomli_w.dumps(data)


def save_config(spec: SweepSpec, path: str | Path) -> Path:
    """Write a sweep file that `load_config` reads back to the same sweep.

    Example:
        >>> llmbench.save_config(llmbench.SweepSpec([target], {"batch_sizes": [1, 8]}),
        ...                      "sweep.toml")
    """
    p = Path(path)
    p.write_text(dump_config(spec), encoding="utf-8")
    return p
