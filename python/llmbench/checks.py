"""The rules a setting's value must meet, and the error that names a refused one.

Each sweep setting names its rule where it is declared (`llmbench.sweep_options`), and
is checked once, before anything runs, so the Python API, TOML files and the command line
refuse the same values with the same words. A refusal is a `SettingError` naming the
setting; the command line says the flag's name instead (`--max-tokens`) and a TOML file
the key's, with the table.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._core import InvalidArgumentError


class SettingError(InvalidArgumentError):
    """A setting with a value of the wrong type or out of range. `setting` is its
    `run_sweep` keyword (which is also its TOML key); `rule` says what it must be."""

    def __init__(self, setting: str, rule: str, value: Any) -> None:
        self.setting, self.rule, self.value = setting, rule, value
        super().__init__(self.message(setting))

    def message(self, name: str) -> str:
        """The refusal, naming the setting as `name` (a flag, a key)."""
        return f"{name} must be {self.rule}; got {self.value!r}"


def _is_int(v: Any) -> bool:
    # bool is an int to Python, never to a user writing `batch_sizes = [true, 2]`.
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(v)


def int_at_least(low: int) -> Callable[[Any], bool]:
    return lambda v: _is_int(v) and v >= low


def number_above(low: float, inclusive: bool = False) -> Callable[[Any], bool]:
    return lambda v: _is_number(v) and (v >= low if inclusive else v > low)


def list_of(item: Callable[[Any], bool]) -> Callable[[Any], bool]:
    def check(v: Any) -> bool:
        if isinstance(v, (str, bytes, dict)) or not hasattr(v, "__iter__"):
            return False
        items = list(v)
        return bool(items) and all(item(x) for x in items)

    return check


def optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or check(v)


def is_bool(v: Any) -> bool:
    return isinstance(v, bool)


def bool_or_period(v: Any) -> bool:
    """`True`/`False`, or a sampling period in milliseconds."""
    return isinstance(v, bool) or (_is_number(v) and v > 0)


def path_like(v: Any) -> bool:
    return isinstance(v, (str, Path))


def writable_folder(path: Path, name: str) -> Path:
    """Create folder `path` if needed and refuse, as `name` (`out_dir`, `--out`), one that
    is a file, cannot be created or cannot be written: before a run, not after it."""
    if path.exists() and not path.is_dir():
        raise InvalidArgumentError(f"{name} {str(path)!r} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InvalidArgumentError(f"{name} {str(path)!r}: cannot create it ({e})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise InvalidArgumentError(f"{name} {str(path)!r} is not writable")
    return path
