"""Prompt workloads: the bundled `prompts.txt`, a file, or a list.

File format: one prompt per line; `\\n` inside a line stands for a line break; blank lines
and lines starting with `#` are skipped.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from importlib import resources
from pathlib import Path

from ._core import InvalidArgumentError


def _parse(text: str) -> list[str]:
    out = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        out.append(line.replace("\\n", "\n"))
    return out


def default_prompts() -> list[str]:
    """The bundled prompt set (the seed workflow's `prompts.txt`: varied lengths).

    Example:
        >>> len(default_prompts()) >= 100
        True
    """
    text = resources.files("llmbench").joinpath("prompts.txt").read_text(encoding="utf-8")
    return _parse(text)


def load_prompts(prompts: str | Path | Iterable[str] | None = None) -> list[str]:
    """Prompts from a file path, a list of strings, or the bundled set (None).

    Example:
        >>> load_prompts(["Hello", "Tell me a joke"])
        ['Hello', 'Tell me a joke']
    """
    if prompts is None:
        out = default_prompts()
    elif isinstance(prompts, (str, Path)):
        path = Path(prompts)
        if path.is_dir():
            raise InvalidArgumentError(f"prompt file {str(path)!r} is a folder, not a file")
        if not path.is_file():
            raise InvalidArgumentError(f"prompt file {str(path)!r} does not exist")
        try:
            out = _parse(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError as e:
            line = path.read_bytes()[: e.start].count(b"\n") + 1
            raise InvalidArgumentError(
                f"prompt file {str(path)!r} is not UTF-8 text (invalid byte at offset "
                f"{e.start}, line {line})"
            ) from e
        except OSError as e:
            raise InvalidArgumentError(f"cannot read prompt file {str(path)!r}: {e}") from e
    else:
        out = [str(p) for p in prompts]
    if not out:
        raise InvalidArgumentError("the prompt list is empty")
    return out


def prompts_hash(prompts: list[str]) -> str:
    """SHA-256 of the prompt list (recorded in the manifest to identify the workload)."""
    h = hashlib.sha256()
    for p in prompts:
        h.update(p.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()
