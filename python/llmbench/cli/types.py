"""The parsers of the command line's option values (argparse `type=`), by name for the
sweep settings' flags (`llmbench.sweep_options.Flag.type`)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from ..sim import FAULTS


def _number_list(text: str, kind: Callable[[str], Any], what: str) -> list[Any]:
    """Comma-separated numbers of `kind` (spaces ignored), refused unless there is one."""
    try:
        values = [kind(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated {what}, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError(f"expected at least one of the {what}, got {text!r}")
    return values


def int_list(text: str) -> list[int]:
    values = _number_list(text, int, "integers")
    if min(values) < 1:
        raise argparse.ArgumentTypeError("expected integers >= 1")
    return values


def float_list(text: str) -> list[float]:
    values = _number_list(text, float, "numbers")
    if min(values) <= 0:
        raise argparse.ArgumentTypeError("rates must be positive numbers")
    return values


def json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not valid JSON: {e}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object, e.g. '{\"ignore_eos\": true}'")
    return value


def price(text: str) -> str | float:
    try:
        return float(text)
    except ValueError:
        return text


def fault_list(text: str) -> list[str]:
    names = [x.strip() for x in text.split(",") if x.strip()]
    unknown = sorted(set(names) - set(FAULTS))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown faults {unknown}; known: {', '.join(FAULTS)}")
    return names


def yes_no(text: str) -> bool:
    """A yes/no option value: 1/0, true/false, yes/no, on/off."""
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected 1/0, true/false, yes/no or on/off, not {text!r}")


def port(text: str) -> int:
    """A TCP port, 0 (any free one) to 65535."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0 to 65535, got {text!r}")
    return port


#: The parsers a sweep setting's flag names.
PARSERS: dict[str, Callable[[str], Any]] = {
    "str": str,
    "int": int,
    "float": float,
    "int_list": int_list,
    "float_list": float_list,
    "price": price,
}
