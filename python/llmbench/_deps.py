"""Lazy imports of the heavy libraries: pandas and matplotlib (dependencies, imported
on first use so that `import llmbench` stays fast), and the optional ones (wandb, bokeh
where an extra brings it): the first call that needs one imports it and, if it is
missing, says which package to install.
"""

from __future__ import annotations

import importlib
from types import ModuleType


def require(module: str, package: str | None = None) -> ModuleType:
    """Import `module`, or raise ImportError naming the package to install."""
    try:
        return importlib.import_module(module)
    except ImportError as e:  # pragma: no cover - depends on the environment
        pkg = package or module.split(".")[0]
        raise ImportError(f"llmbench needs {pkg!r} for this: pip install {pkg}") from e


def pandas() -> ModuleType:
    """The pandas module."""
    return require("pandas")


def pyplot() -> ModuleType:
    """matplotlib.pyplot with a non-interactive backend unless one was chosen already."""
    mpl = require("matplotlib")
    if "matplotlib.pyplot" not in __import__("sys").modules:
        import os

        # Headless machines (CI, GPU boxes over SSH) have no display; notebooks pick
        # their inline backend themselves before this runs.
        if not os.environ.get("DISPLAY") and not os.environ.get("MPLBACKEND"):
            mpl.use("Agg")
    return require("matplotlib.pyplot", "matplotlib")
