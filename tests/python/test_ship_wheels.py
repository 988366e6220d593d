"""The GPU-machine transfer tooling (benches/ship_wheels.py): split into call folders and
put back together with every part checked; the dependency closure that leaves out what the
machine has and reports version clashes. Known answers on small made-up wheels served from
a local folder (no package index)."""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import pytest
from conftest import REPO

sys.path.insert(0, str(REPO / "benches"))
import ship_wheels


def _wheel(folder: Path, name: str, version: str, requires: list[str] = ()) -> Path:
    """A minimal pure-Python wheel whose METADATA lists `requires`."""
    path = folder / f"{name}-{version}-py3-none-any.whl"
    info = f"{name}-{version}.dist-info"
    meta = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    meta += [f"Requires-Dist: {r}" for r in requires]
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{name}/__init__.py", "")
        z.writestr(f"{info}/METADATA", "\n".join(meta) + "\n\n")
        z.writestr(
            f"{info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        z.writestr(f"{info}/RECORD", "")
    return path


def test_split_into_calls_and_put_back_together_checks_every_part(tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(range(256)) * 9000)  # 2.2 MiB
    small = tmp_path / "small.bin"
    small.write_bytes(b"x" * 1000)
    out = tmp_path / "ship"
    m = ship_wheels.prepare(out, [big, small], part_mib=0.5, call_mib=1.0)
    assert [len(e["parts"]) for e in m["files"]] == [5, 1]
    calls = sorted(out.glob("call*"))
    for c in calls:
        size = sum(p.stat().st_size for p in c.iterdir() if p.name != ship_wheels.MANIFEST)
        assert size <= 1.0 * ship_wheels.MIB, c
    gathered = tmp_path / "gathered"
    for c in calls:
        ship_wheels.collect(c, gathered)
    rebuilt = ship_wheels.assemble(gathered, tmp_path / "rebuilt")
    assert [p.read_bytes() for p in rebuilt] == [big.read_bytes(), small.read_bytes()]

    part = sorted(gathered.glob("big.bin.part*"))[2]
    part.write_bytes(b"corrupt" + part.read_bytes()[7:])
    with pytest.raises(SystemExit, match=f"corrupt part {part.name}"):
        ship_wheels.assemble(gathered, tmp_path / "again")
    part.unlink()
    with pytest.raises(SystemExit, match=f"missing part {part.name}"):
        ship_wheels.assemble(gathered, tmp_path / "again")


def test_closure_leaves_out_what_the_machine_has_and_reports_a_clash(tmp_path):
    index = tmp_path / "index"
    index.mkdir()
    _wheel(
        index,
        "app",
        "1.0",
        [
            "lib_b>=2",
            "lib_c",
            "on_machine",
            "big_kernels",
            "only_for_x; extra == 'x'",
            "old_python; python_version < '3.0'",
        ],
    )
    _wheel(index, "lib_b", "1.0")
    _wheel(index, "lib_b", "2.0", ["lib_d"])
    _wheel(index, "lib_c", "1.0", ["lib_d<2"])
    _wheel(index, "lib_d", "1.0")
    _wheel(index, "lib_d", "2.0")
    for name in ("on_machine", "big_kernels", "only_for_x", "old_python"):
        _wheel(index, name, "1.0")

    def names(wheels):
        return sorted(w.name.split("-")[0] + "-" + w.name.split("-")[1] for w in wheels)

    kwargs = dict(have={"on_machine"}, python="3.12", leave_out={"big_kernels"}, find_links=index)
    wheels, clashes = ship_wheels.closure(["app==1.0"], dest=tmp_path / "dl1", **kwargs)
    # lib_b's "lib_d" (any) came first and took 2.0; lib_c asks for <2: reported.
    assert names(wheels) == ["app-1.0", "lib_b-2.0", "lib_c-1.0", "lib_d-2.0"]
    assert clashes == ["lib_d 2.0 carried, but lib_c 1.0 asks for <2"]

    wheels, clashes = ship_wheels.closure(
        ["app==1.0"], dest=tmp_path / "dl2", pins=["lib_d==1.0"], **kwargs
    )
    assert names(wheels) == ["app-1.0", "lib_b-2.0", "lib_c-1.0", "lib_d-1.0"]
    assert clashes == []

    wheels, _ = ship_wheels.closure(["app[x]==1.0"], dest=tmp_path / "dl3", **kwargs)
    assert "only_for_x-1.0" in names(wheels)
