"""Move wheels larger than one device call may carry (64 MiB) to the GPU machine, in parts.

Here (with internet to the package index):

    python benches/ship_wheels.py prepare .ship/ray --part-mib 40 -- ray==2.60.0 jsonschema

downloads the wheels for the GPU machine's Python (3.12, manylinux x86_64; `--python`,
`--skip` to leave out what the machine already has), splits every file into parts of at
most `--part-mib` MiB and writes `manifest.json` (each file's SHA-256, size and parts) and
one folder per call, `call1/`, `call2/`, ..., each under the limit. Carry one call folder
per device call:

    python3 benches/ship_wheels.py collect .ship/ray/callN /tmp/ship      # every call
    python3 benches/ship_wheels.py assemble /tmp/ship /tmp/wheels          # the last one

`collect` copies the parts outside the repository (a file written there stays while the
machine stays warm), `assemble` puts every file back together, checks each SHA-256 and
refuses a missing or corrupt part, naming it. Then `pip install --no-index --no-deps
--target DIR /tmp/wheels/*.whl`. Standard library only, so it runs on the bare machine.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

MIB = 1024 * 1024
MANIFEST = "manifest.json"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(MIB), b""):
            h.update(block)
    return h.hexdigest()


# The GPU machine runs Ubuntu 24.04 (glibc 2.39): every manylinux up to 2_39 loads there.
# Each is named: pip does not widen a `--platform` to the older glibc versions it covers.
PLATFORMS = ["manylinux2014_x86_64", *(f"manylinux_2_{v}_x86_64" for v in range(17, 40))]


def _pip_download(
    specs: list[str], dest: Path, python: str, no_deps: bool, find_links: Path | None = None
) -> None:
    platforms = [a for p in PLATFORMS for a in ("--platform", p)]
    # A local folder of wheels instead of the package index (a mirror; the tests).
    index = ["--no-index", "--find-links", str(find_links)] if find_links else []
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--only-binary", ":all:", *index]
        + ["--python-version", python, *platforms, "-d", str(dest)]
        + (["--no-deps"] if no_deps else [])
        + specs,
        check=True,
    )


def download(specs: list[str], dest: Path, python: str) -> list[Path]:
    """The wheels of `specs` and their dependencies for the target Python."""
    dest.mkdir(parents=True, exist_ok=True)
    _pip_download(specs, dest, python, no_deps=False)
    return sorted(dest.glob("*.whl"))


def canonical(name: str) -> str:
    return name.lower().replace("-", "_").replace(".", "_")


def wheel_requirements(wheel: Path) -> tuple[str, str, list[str]]:
    """(name, version, Requires-Dist lines) from a wheel's METADATA."""
    import zipfile

    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        text = z.read(meta).decode("utf-8", "replace")
    name = version = ""
    reqs = []
    for line in text.split("\n\n", 1)[0].splitlines():
        key, _, value = line.partition(": ")
        if key == "Name":
            name = value.strip()
        elif key == "Version":
            version = value.strip()
        elif key == "Requires-Dist":
            reqs.append(value.strip())
    return name, version, reqs


def closure(
    specs: list[str],
    have: set[str],
    dest: Path,
    python: str,
    pins: list[str] = (),
    leave_out: set[str] = frozenset(),
    find_links: Path | None = None,
) -> tuple[list[Path], list[str]]:
    """Every wheel `specs` needs that the machine lacks, found one package at a time.

    A plain `pip download` resolves through the machine's own packages too (torch pulls
    its CUDA libraries, whose pins may clash); here a dependency named in `have` counts as
    there, a dependency named in `leave_out` is neither carried nor followed, and only
    the rest is downloaded (`--no-deps`) and followed. Markers are
    evaluated for CPython `python` on Linux x86_64. The first version met wins, so this
    does not backtrack: afterwards every carried version is checked against what each
    dependent asked for, and a clash is returned (and printed) for a `pins` entry to settle
    (e.g. `xgrammar==0.2.3`: xgrammar 0.2.9 wants apache-tvm-ffi>=0.1.11, vLLM 0.24.0
    pins 0.1.9). Returns the wheels and the clashes.
    """
    from packaging.markers import default_environment
    from packaging.requirements import Requirement
    from packaging.version import Version

    env = default_environment()
    env.update(
        python_version=python,
        python_full_version=f"{python}.3",
        sys_platform="linux",
        platform_system="Linux",
        platform_machine="x86_64",
        os_name="posix",
        implementation_name="cpython",
        platform_python_implementation="CPython",
    )
    dest.mkdir(parents=True, exist_ok=True)
    pinned = {canonical(Requirement(p).name): Requirement(p) for p in pins}
    queue = [(Requirement(s), "(asked)") for s in specs]
    wanted: dict[str, list[tuple[str, Requirement]]] = {}
    fetched: dict[str, Path] = {}
    versions: dict[str, str] = {}
    while queue:
        req, dependent = queue.pop(0)
        key = canonical(req.name)
        wanted.setdefault(key, []).append((dependent, req))
        if key in have or key in fetched or key in leave_out:
            continue
        spec = pinned[key].specifier if key in pinned else req.specifier
        # Without its marker: pip would judge an `extra == ...` marker false and skip it.
        extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
        before = set(dest.glob("*.whl"))
        _pip_download([f"{req.name}{extras}{spec}"], dest, python, True, find_links)
        new = set(dest.glob("*.whl")) - before
        wheel = next(iter(new)) if new else _existing(dest, key, spec)
        fetched[key] = wheel
        _, versions[key], reqs = wheel_requirements(wheel)
        for line in reqs:
            dep = Requirement(line)
            for extra in [*req.extras, ""]:
                if dep.marker is None or dep.marker.evaluate({**env, "extra": extra}):
                    queue.append((dep, f"{key} {versions[key]}"))
                    break
    clashes = []
    for key in sorted(wanted):
        where = fetched[key].name if key in fetched else "on the machine"
        where = "left out" if key in leave_out else where
        asked = ",".join(sorted({str(r.specifier) or "any" for _, r in wanted[key]}))
        print(f"{key:34} {asked[:60]:60} {where}")
        if key in versions:
            v = Version(versions[key])
            for dependent, r in wanted[key]:
                if not r.specifier.contains(v, prereleases=True):
                    clashes.append(f"{key} {v} carried, but {dependent} asks for {r.specifier}")
    for c in clashes:
        print("CLASH:", c)
    return sorted(fetched.values()), clashes


def _existing(dest: Path, key: str, spec) -> Path:
    """The wheel for `key` already in `dest` (pip saves nothing new) that fits `spec`."""
    for w in dest.glob("*.whl"):
        name, version = w.name.split("-")[:2]
        if canonical(name) == key and spec.contains(version, prereleases=True):
            return w
    raise SystemExit(f"pip downloaded nothing for {key}{spec}")


def prepare(out: Path, files: list[Path], part_mib: float, call_mib: float) -> dict:
    """Split `files` into parts, pack the parts into call folders, write the manifest."""
    part_bytes = int(part_mib * MIB)
    parts_dir = out / "parts"
    parts_dir.mkdir(parents=True, exist_ok=True)
    manifest: dict = {"files": []}
    all_parts: list[Path] = []
    for f in files:
        entry = {"name": f.name, "size": f.stat().st_size, "sha256": sha256(f), "parts": []}
        with open(f, "rb") as src:
            i = 0
            while chunk := src.read(part_bytes):
                part = parts_dir / f"{f.name}.part{i:03d}"
                part.write_bytes(chunk)
                entry["parts"].append(
                    {"name": part.name, "sha256": hashlib.sha256(chunk).hexdigest()}
                )
                all_parts.append(part)
                i += 1
        manifest["files"].append(entry)
    # First fit, in order: each call folder stays under the device's limit.
    calls: list[list[Path]] = []
    sizes: list[int] = []
    for p in all_parts:
        size = p.stat().st_size
        for k, used in enumerate(sizes):
            if used + size <= call_mib * MIB:
                calls[k].append(p)
                sizes[k] += size
                break
        else:
            calls.append([p])
            sizes.append(size)
    for k, parts in enumerate(calls, start=1):
        folder = out / f"call{k}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        for p in parts:
            shutil.move(str(p), folder / p.name)
        (folder / MANIFEST).write_text(json.dumps(manifest, indent=1))
    parts_dir.rmdir()
    manifest["calls"] = [[p.name for p in parts] for parts in calls]
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return manifest


def collect(src: Path, dest: Path) -> int:
    dest.mkdir(parents=True, exist_ok=True)
    n = 0
    for p in src.iterdir():
        shutil.copyfile(p, dest / p.name)
        n += 1
    return n


def assemble(src: Path, out: Path) -> list[Path]:
    manifest = json.loads((src / MANIFEST).read_text())
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for entry in manifest["files"]:
        target = out / entry["name"]
        with open(target, "wb") as dst:
            for part in entry["parts"]:
                path = src / part["name"]
                if not path.exists():
                    sys.exit(f"missing part {part['name']} of {entry['name']}: carry every call")
                data = path.read_bytes()
                if hashlib.sha256(data).hexdigest() != part["sha256"]:
                    sys.exit(f"corrupt part {part['name']} (SHA-256 differs)")
                dst.write(data)
        if sha256(target) != entry["sha256"] or target.stat().st_size != entry["size"]:
            sys.exit(f"{entry['name']}: reassembled file differs from the original")
        written.append(target)
    return written


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="download, split and pack into call folders")
    p.add_argument("out", type=Path)
    p.add_argument("specs", nargs="*", help="pip requirement specifiers to download")
    p.add_argument("--files", type=Path, nargs="*", default=[], help="local files to ship too")
    p.add_argument("--python", default="3.12")
    p.add_argument("--skip", default="", help="comma-separated distributions to leave out")
    p.add_argument("--part-mib", type=float, default=40.0)
    p.add_argument("--call-mib", type=float, default=60.0)
    c = sub.add_parser("collect", help="on the machine: keep one call's parts")
    c.add_argument("src", type=Path)
    c.add_argument("dest", type=Path)
    a = sub.add_parser("assemble", help="on the machine: rebuild and verify every file")
    a.add_argument("src", type=Path)
    a.add_argument("out", type=Path)
    args = ap.parse_args()
    if args.command == "prepare":
        files = list(args.files)
        if args.specs:
            skip = {s.strip().lower().replace("-", "_") for s in args.skip.split(",") if s}
            wheels = download(args.specs, args.out / "download", args.python)
            files += [w for w in wheels if w.name.split("-")[0].lower() not in skip]
        m = prepare(args.out, files, args.part_mib, args.call_mib)
        for k, names in enumerate(m["calls"], start=1):
            print(f"call{k}: {len(names)} parts")
    elif args.command == "collect":
        print(f"kept {collect(args.src, args.dest)} files in {args.dest}")
    else:
        for w in assemble(args.src, args.out):
            print(f"ok {w.name}")


if __name__ == "__main__":
    main()
