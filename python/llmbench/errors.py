"""llmbench's exceptions, all rooted at `LlmbenchError`.

The classes are defined in the Rust extension (so the engine raises them directly) and
re-exported here; `SweepInterrupted` is raised by the Python side after Ctrl-C.
"""

from __future__ import annotations

import warnings
from typing import Any

from ._core import (
    InvalidArgumentError,
    LlmbenchError,
    ModelError,
    NvmlUnavailableError,
    ResultsIOError,
    TargetError,
    TokenizerError,
    UnreachableError,
)

# What the errors carry (`llmbench.Results`): typed loosely here, as every module
# imports this one and it imports none of them.
Results = Any

__all__ = [
    "InvalidArgumentError",
    "LlmbenchError",
    "ModelError",
    "NvmlUnavailableError",
    "ResultsIOError",
    "ResultsNotSaved",
    "SweepInterrupted",
    "TargetError",
    "TokenizerError",
    "UnreachableError",
]


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C (or a notebook's stop button) during a sweep.

    Everything measured before it is kept: on disk (the run's record files and the
    files `save` writes) and in `.results`.

    Example:
        >>> try:
        ...     res = llmbench.run_sweep(target)
        ... except llmbench.SweepInterrupted as stop:
        ...     res = stop.results   # every request completed before Ctrl-C
    """

    def __init__(self, results: Results, message: str) -> None:
        super().__init__(message)
        self.results = results


class ResultsNotSaved(ResultsIOError):
    """The sweep ran, but part of what it measured is not on disk (a full disk, a
    read-only folder): the record file or the results files could not be written. The
    run is not reported as saved; everything measured is still in `.results`.

    Example:
        >>> try:
        ...     res = llmbench.run_sweep(target, out_dir="/full/disk")
        ... except llmbench.ResultsNotSaved as e:
        ...     res = e.results          # in memory; save it elsewhere
        ...     res.save("/tmp/rescued")
    """

    def __init__(self, results: Results, message: str) -> None:
        super().__init__(message)
        self.results = results


class RunFailedWarning(UserWarning):
    """A stage, or the whole run, had no successful request: its numbers describe
    failures only (the error kinds are counted in the message)."""


def warn(message: str, category: type[Warning] = UserWarning) -> None:
    """Issue a warning as one plain line, `llmbench:0: Category: message`: attributed to
    llmbench itself, never to a line of its own source (which Python would print under
    the message, as if the reader's code or llmbench's were at fault)."""
    warnings.warn_explicit(message, category, filename="llmbench", lineno=0, module="llmbench")
