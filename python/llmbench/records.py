"""Per-request records of a run, read lazily from its record files.

The engine writes every request record to `requests_<target>.arrows` (an Arrow IPC stream,
compressed column batches; docs/architecture.md, "The record file") as the run goes and
keeps none in memory. `Results` reads them from here: only the columns and stages asked
for, so a notebook can open a run of ten million requests and look at one stage's TTFTs.

A file cut by a crash keeps every whole batch: reading it gives those and warns once with
what was dropped. Runs saved before the record file (every record inside
`metrics_data.json`) are read by `RecordFrame`, with the same interface.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from . import _core, _deps

#: File name extension of a record file.
SUFFIX = ".arrows"

#: The columns of `Results.requests`, in order (after `target`): stored in the record file
#: or derived from it (`ok` and the latencies, by the engine's own definitions).
COLUMNS = (
    "id",
    "stage",
    "repeat",
    "batch_size",
    "warmup",
    "prompt_index",
    "conversation",
    "turn",
    "ok",
    "error_kind",
    "error",
    "http_status",
    "t_sched_ns",
    "t_sent_ns",
    "t_headers_ns",
    "t_first_ns",
    "t_last_ns",
    "t_done_ns",
    "ttft_ms",
    "ttft_sched_ms",
    "send_lag_ms",
    "e2e_ms",
    "e2e_sched_ms",
    "tpot_ms",
    "n_in",
    "n_in_source",
    "n_out",
    "n_out_source",
    "n_out_streamed",
    "n_chunks",
    "chunk_token_source",
    "server_queue_ms",
    "server_prefill_ms",
    "server_decode_ms",
    "ttft_rest_ms",
    "finish_reason",
)

_LATENCIES = ("ttft_ms", "ttft_sched_ms", "send_lag_ms", "e2e_ms", "e2e_sched_ms", "tpot_ms")
_LATENCY_INPUTS = ("t_sched_ns", "t_sent_ns", "t_first_ns", "t_last_ns", "n_out")
#: The server's own times of each request, where its answer said them (vLLM's per-request
#: `metrics`, llama.cpp's `timings`, the built-in servers): stored in whole microseconds,
#: shown in ms (NaN where the server gave none).
_SERVER_TIMES = {f"server_{p}_ms": f"server_{p}_us" for p in ("queue", "prefill", "decode")}
#: Stored columns each derived column is computed from (`repeat` is which file of the
#: target's a row came from). `ttft_rest_ms` is the client's TTFT less the server's queue
#: and prefill: the network, the server's front end and the client.
_DERIVED_FROM = {
    "repeat": (),
    "ok": ("error_kind",),
    **{c: _LATENCY_INPUTS for c in _LATENCIES},
    **{c: (stored,) for c, stored in _SERVER_TIMES.items()},
    "ttft_rest_ms": (*_LATENCY_INPUTS, "server_queue_us", "server_prefill_us"),
}
#: Stored integer columns that may be missing (pandas' nullable Int64 in the frames).
_NULLABLE_INT = (
    "http_status",
    "t_headers_ns",
    "t_first_ns",
    "t_last_ns",
    "n_in",
    "conversation",
    "turn",
    *_SERVER_TIMES.values(),
)
#: Stored columns files of earlier versions lack, read as missing everywhere (record file
#: schema 2 added the conversation columns, 3 the server's times).
_OPTIONAL = ("conversation", "turn", *_SERVER_TIMES.values())


#: Rows per piece `RecordSource.pieces` hands out: memory bounded by a piece whatever the
#: run (measured: +69 MiB for the report's KV pass over 100,000 records at 2,000 rows a
#: piece, +243 MiB at 50,000, from a `Results.load` of a 100,000-request run).
PIECE_ROWS = 2_000


@runtime_checkable
class RecordSource(Protocol):
    """What reads a run's records (`RecordFiles`, `RecordFrame`, `RecordSets`): the one
    interface `RunData` and the report use, whichever holds the records."""

    #: What was dropped from cut files, one line per file.
    notes: dict[str, str]

    def count(self) -> int:
        """Records of the run, warm-up included."""
        ...

    def read(
        self,
        columns: Sequence[str] | None = None,
        stages: Iterable[int] | None = None,
        targets: Iterable[str] | None = None,
        warmup: bool | None = None,
        limit: int | None = None,
        every: int = 1,
    ) -> Any:
        """The rows asked for, as a DataFrame with `target` and `columns`."""
        ...

    def chunk_arrays(
        self,
        stages: Iterable[int] | None = None,
        targets: Iterable[str] | None = None,
        warmup: bool | None = None,
    ) -> dict[str, np.ndarray]:
        """The chunks of the rows `read` gives with the same selection, as flat arrays."""
        ...

    def pieces(
        self,
        columns: Sequence[str],
        targets: Iterable[str] | None = None,
        warmup: bool | None = None,
        chunks: bool = True,
    ) -> Iterator[tuple[Any, dict[str, np.ndarray] | None]]:
        """Every selected row, at most about `PIECE_ROWS` at a time: (frame with `target`
        and `columns`, its chunk arrays, None with `chunks=False`, which leaves the
        chunk columns unread). Memory stays bounded by a piece."""
        ...


def record_folder(out_dir: str | Path | None) -> tuple[Path, Any]:
    """Where a run's record files go: `out_dir`, or without one a temporary folder, returned
    with its owner (a `TemporaryDirectory`, None for `out_dir`) for `RecordFiles` to keep,
    so the folder lives exactly as long as the results reading it."""
    if out_dir is not None:
        return Path(out_dir), None
    owner = tempfile.TemporaryDirectory(prefix="llmbench-records-")
    return Path(owner.name), owner


class RecordFileWarning(UserWarning):
    """A record file was cut (a crash, a full disk): its whole batches were read, the rest
    dropped, and the warning says how much."""


def _pa() -> Any:
    try:
        import pyarrow as pa
        import pyarrow.compute
        import pyarrow.ipc
    except ImportError as e:  # pragma: no cover - pyarrow is a dependency
        raise ImportError("reading record files needs pyarrow (pip install pyarrow)") from e
    return pa


class RecordFiles:
    """The record files of one run: per target one file, or with repeats a list of them
    (file `k` holds repeat `k`), read on demand.

    Example:
        >>> files = RecordFiles({"vllm": Path("results/metrics_study/requests_vllm.arrows")})
        >>> files.read(columns=["ttft_ms"], stages=[2])
    """

    def __init__(self, files: dict[str, Path | list[Path]], owner: Any = None) -> None:
        self.files: dict[str, list[Path]] = {
            name: [Path(p)] if isinstance(p, (str, Path)) else [Path(f) for f in p]
            for name, p in files.items()
        }
        #: What was dropped from cut files, one line per file (filled as they are read).
        self.notes: dict[str, str] = {}
        # Keeps a temporary folder holding the files alive as long as this object.
        self._owner = owner

    def _batches(self, path: Path, fields: Sequence[str]) -> Iterator[Any]:
        """The batches of one file with only `fields`; a cut tail ends the iteration."""
        pa = _pa()
        try:
            source = pa.OSFile(str(path))
        except OSError as e:
            raise _core.ResultsIOError(f"cannot read the record file {path}: {e}") from e
        reader = None
        n_batches = n_rows = 0
        try:
            reader = pa.ipc.open_stream(source)
            names = reader.schema.names
            missing = [f for f in fields if f not in names and f not in _OPTIONAL]
            if missing:
                raise _core.ResultsIOError(f"{path}: not a record file (no column {missing[0]})")
            options = pa.ipc.IpcReadOptions(
                included_fields=[names.index(f) for f in fields if f in names]
            )
            source.seek(0)
            reader = pa.ipc.open_stream(source, options=options)
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    return
                n_batches += 1
                n_rows += batch.num_rows
                yield batch
        except (pa.ArrowInvalid, OSError) as e:
            self._cut(path, n_batches, n_rows, e)
        finally:
            source.close()

    def _cut(self, path: Path, n_batches: int, n_rows: int, error: Exception) -> None:
        if str(path) in self.notes:
            return
        note = (
            f"{path} was cut (a crash or a full disk?): kept its {n_batches} whole batches "
            f"({n_rows} records), dropped the rest ({error})"
        )
        self.notes[str(path)] = note
        warnings.warn(note, RecordFileWarning, stacklevel=4)

    def count(self) -> int:
        """Records in the files (warm-up included), reading one small column."""
        return sum(
            len(self._table(p, ["stage"], None, None)) for ps in self.files.values() for p in ps
        )

    def _table(
        self,
        path: Path,
        fields: Sequence[str],
        stages: Iterable[int] | None,
        warmup: bool | None,
        limit: int | None = None,
        every: int = 1,
    ) -> Any:
        """One file's rows of `stages` (all when None) and warm-up flag (both when None),
        the first `limit` of them (all when None), with `fields` only; with `every` > 1
        only every `every`-th of those rows (a systematic sample: memory bounded by the
        sample, not the file)."""
        pa = _pa()
        import pyarrow.compute as pc

        want = list(dict.fromkeys([*fields, "stage", "warmup"]))
        stage_set = pa.array(sorted(set(stages)), pa.uint32()) if stages is not None else None
        parts = []
        schema = None
        seen = 0
        for batch in self._batches(path, want):
            schema = batch.schema
            mask = None
            if stage_set is not None:
                mask = pc.is_in(batch.column("stage"), value_set=stage_set)
            if warmup is not None:
                w = batch.column("warmup")
                w = w if warmup else pc.invert(w)
                mask = w if mask is None else pc.and_(mask, w)
            kept = batch.filter(mask) if mask is not None else batch
            if every > 1:
                # Rows seen so far decide the phase, so the sample spans batch boundaries.
                first = (-seen) % every
                seen += kept.num_rows
                kept = kept.take(pa.array(range(first, kept.num_rows, every), pa.int64()))
            parts.append(kept)
            if limit is not None and sum(p.num_rows for p in parts) >= limit:
                break
        if schema is None:
            return pa.table({f: pa.array([], _empty_type(f)) for f in fields})
        table = pa.Table.from_batches(parts, schema=schema)
        for f in fields:
            if f not in table.column_names:  # an optional column an older file lacks
                table = table.append_column(f, pa.nulls(len(table), _empty_type(f)))
        table = table.select(list(fields))
        return table.slice(0, limit) if limit is not None else table

    def read(
        self,
        columns: Sequence[str] | None = None,
        stages: Iterable[int] | None = None,
        targets: Iterable[str] | None = None,
        warmup: bool | None = None,
        limit: int | None = None,
        every: int = 1,
    ) -> Any:
        """The rows of `stages` and `targets` (all when None), measured or warm-up ones by
        `warmup` (both when None), the first `limit` of each target's (all when None), as a
        DataFrame with `target` and `columns` (all of `COLUMNS` when None), in each file's
        order (requests in order of completion); with `every` > 1, every `every`-th of
        them in each file."""
        pd = _deps.pandas()
        cols = list(COLUMNS) if columns is None else [c for c in columns if c != "target"]
        unknown = [c for c in cols if c not in COLUMNS]
        if unknown:
            raise KeyError(f"no request column {unknown[0]!r}; the columns are {list(COLUMNS)}")
        stored = [c for c in cols if c not in _DERIVED_FROM]
        for c in cols:
            stored += [s for s in _DERIVED_FROM.get(c, ()) if s not in stored]
        frames = []
        names = list(self.files) if targets is None else [t for t in self.files if t in targets]
        for name in names:
            left = limit
            for repeat, path in enumerate(self.files[name]):
                if left is not None and left <= 0:
                    break
                table = self._table(path, stored, stages, warmup, left, every)
                left = None if left is None else left - len(table)
                frame = _frame(table, stored)
                frame["repeat"] = np.full(len(frame), repeat, dtype=np.uint32)
                frame = _with_derived(frame, cols)
                frame.insert(0, "target", name)
                frames.append(frame)
        if not frames:
            return pd.DataFrame(columns=["target", *cols])
        return pd.concat(frames, ignore_index=True)

    def chunk_arrays(
        self,
        stages: Iterable[int] | None = None,
        targets: Iterable[str] | None = None,
        warmup: bool | None = None,
    ) -> dict[str, np.ndarray]:
        """Every chunk of the rows `read` returns with the same selection, as flat arrays:
        row `i` owns `t_ns[offsets[i]:offsets[i + 1]]` (arrival times on the run clock) and
        the same slice of `tokens`."""
        parts = []
        names = list(self.files) if targets is None else [t for t in self.files if t in targets]
        for name in names:
            for path in self.files[name]:
                table = self._table(
                    path, ["t_sent_ns", "chunk_dt_ns", "chunk_tokens"], stages, warmup
                )
                parts.append(_chunks_of(table))
        return concat_chunks(parts)

    def pieces(
        self,
        columns: Sequence[str],
        targets: Iterable[str] | None = None,
        warmup: bool | None = None,
        chunks: bool = True,
    ) -> Iterator[tuple[Any, dict[str, np.ndarray] | None]]:
        """`RecordSource.pieces`: each file's record batches, gathered into pieces of
        about `PIECE_ROWS` rows, with their chunks."""
        pa = _pa()
        cols = [c for c in columns if c != "target"]
        chunk_cols = ["t_sent_ns", "chunk_dt_ns", "chunk_tokens"] if chunks else []
        stored = list(dict.fromkeys([*cols, *chunk_cols]))
        want = list(dict.fromkeys([*stored, "stage", "warmup"]))
        names = list(self.files) if targets is None else [t for t in self.files if t in targets]
        for name in names:
            for repeat, path in enumerate(self.files[name]):
                held: list[Any] = []
                rows = 0
                batches = self._batches(path, want)
                while True:
                    batch = next(batches, None)
                    if batch is not None:
                        if warmup is not None:
                            w = batch.column("warmup")
                            batch = batch.filter(w if warmup else pa.compute.invert(w))
                        held.append(batch)
                        rows += batch.num_rows
                    if held and (batch is None or rows >= PIECE_ROWS):
                        table = pa.Table.from_batches(held).select(stored)
                        frame = _frame(table.select(cols), cols)
                        frame["repeat"] = np.full(len(frame), repeat, dtype=np.uint32)
                        frame.insert(0, "target", name)
                        yield frame, _chunks_of(table) if chunks else None
                        held, rows = [], 0
                    if batch is None:
                        break


def _empty_type(field: str) -> Any:
    pa = _pa()
    if field in ("chunk_dt_ns",):
        return pa.list_(pa.int64())
    if field == "chunk_tokens":
        return pa.list_(pa.uint32())
    if field in ("warmup",):
        return pa.bool_()
    if field.endswith("_source") or field in ("finish_reason", "error_kind", "error"):
        return pa.string()
    wide = field.endswith("_ns") or field in ("id", "conversation")
    return pa.uint64() if wide else pa.uint32()


def _frame(table: Any, fields: Sequence[str]) -> Any:
    """An Arrow table of record-file columns as a DataFrame: integers that may be missing
    as pandas' nullable Int64, text as Python strings (None where missing)."""
    pd = _deps.pandas()
    data = {}
    for f in fields:
        col = table.column(f)
        if f in _NULLABLE_INT:
            values = col.fill_null(0).to_numpy().astype(np.int64)
            mask = col.is_null().to_numpy(zero_copy_only=False)
            data[f] = pd.arrays.IntegerArray(values, mask)
        else:
            data[f] = col.to_numpy(zero_copy_only=False)
    return pd.DataFrame(data)


def _with_derived(frame: Any, cols: Sequence[str]) -> Any:
    """`frame` with the derived columns of `cols` added, in the order of `cols`."""
    if "ok" in cols:
        frame["ok"] = frame["error_kind"].isna().to_numpy()
    server = {
        c: frame[stored].to_numpy(dtype=np.float64, na_value=np.nan) / 1e3
        for c, stored in _SERVER_TIMES.items()
        if c in cols or (c != "server_decode_ms" and "ttft_rest_ms" in cols)
    }
    if any(c in _LATENCIES or c == "ttft_rest_ms" for c in cols):
        t = {c: frame[c].to_numpy(dtype=np.int64, na_value=-1) for c in ("t_first_ns", "t_last_ns")}
        latencies = _core.request_metrics(
            np.ascontiguousarray(frame["t_sched_ns"].to_numpy(), dtype=np.uint64),
            np.ascontiguousarray(frame["t_sent_ns"].to_numpy(), dtype=np.uint64),
            np.ascontiguousarray(t["t_first_ns"]),
            np.ascontiguousarray(t["t_last_ns"]),
            np.ascontiguousarray(frame["n_out"].to_numpy(), dtype=np.uint32),
        )
        for c in _LATENCIES:
            if c in cols:
                frame[c] = latencies[c]
        if "ttft_rest_ms" in cols:
            # A server that gives a prefill but no queue time (llama.cpp) leaves its queue in
            # the rest, as the stage breakdown does; no prefill, no rest.
            queue = np.nan_to_num(np.asarray(server["server_queue_ms"], dtype=float))
            frame["ttft_rest_ms"] = latencies["ttft_ms"] - queue - server["server_prefill_ms"]
    for c in _SERVER_TIMES:
        if c in cols:
            frame[c] = server[c]
    return frame[list(cols)]


def _chunks_of(table: Any) -> dict[str, np.ndarray]:
    """Flat chunk arrays of a table with `t_sent_ns`, `chunk_dt_ns` and `chunk_tokens`:
    arrival times rebuilt from the delta encoding (first: offset from the send; then the
    gap to the previous chunk)."""
    n = len(table)
    dt_col = table.column("chunk_dt_ns").combine_chunks() if n else None
    if dt_col is None or len(dt_col.values) == 0:
        return {
            "offsets": np.zeros(n + 1, dtype=np.uint64),
            "t_ns": np.zeros(0, np.uint64),
            "tokens": np.zeros(0, np.uint32),
        }
    tok_col = table.column("chunk_tokens").combine_chunks()
    offsets = dt_col.offsets.to_numpy().astype(np.int64)
    offsets = offsets - offsets[0]
    dt = dt_col.values.to_numpy().astype(np.int64)
    lengths = np.diff(offsets)
    sent = table.column("t_sent_ns").to_numpy().astype(np.int64)
    running = np.cumsum(dt)
    # Each request's cumulative sum starts at its own first chunk.
    before = np.concatenate([[0], running])[offsets[:-1]]
    t_ns = running - np.repeat(before, lengths) + np.repeat(sent, lengths)
    return {
        "offsets": offsets.astype(np.uint64),
        "t_ns": t_ns.astype(np.uint64),
        "tokens": tok_col.values.to_numpy().astype(np.uint32),
    }


def concat_chunks(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Flat chunk arrays of several row sets, one after the other."""
    offsets = [np.zeros(1, dtype=np.uint64)]
    times, tokens = [], []
    base = 0
    for p in parts:
        offsets.append(p["offsets"][1:].astype(np.uint64) + np.uint64(base))
        times.append(p["t_ns"].astype(np.uint64))
        tokens.append(p["tokens"].astype(np.uint32))
        base += len(p["t_ns"])
    return {
        "offsets": np.concatenate(offsets),
        "t_ns": np.concatenate(times) if times else np.zeros(0, np.uint64),
        "tokens": np.concatenate(tokens) if tokens else np.zeros(0, np.uint32),
    }


class RecordFrame:
    """Records already in memory (a run saved before the record file, with every record in
    `metrics_data.json`), behind the interface of `RecordFiles`."""

    def __init__(self, frame: Any, chunks: dict[str, np.ndarray]) -> None:
        self.frame = frame
        self.chunks = chunks
        self.notes: dict[str, str] = {}

    def count(self) -> int:
        return len(self.frame)

    def _rows(
        self, stages: Iterable[int] | None, targets: Iterable[str] | None, warmup: bool | None
    ) -> np.ndarray:
        f = self.frame
        keep = np.ones(len(f), dtype=bool)
        if len(f) and stages is not None:
            keep &= f["stage"].isin(list(stages)).to_numpy()
        if len(f) and targets is not None:
            keep &= f["target"].isin(list(targets)).to_numpy()
        if len(f) and warmup is not None:
            keep &= (f["warmup"].to_numpy(dtype=bool)) == warmup
        return keep.nonzero()[0]

    def read(
        self,
        columns: Sequence[str] | None = None,
        stages: Iterable[int] | None = None,
        targets: Iterable[str] | None = None,
        warmup: bool | None = None,
        limit: int | None = None,
        every: int = 1,
    ) -> Any:
        rows = self._rows(stages, targets, warmup)
        if every > 1 and len(rows):
            # Every k-th row of each target's repeat, as from its own record file.
            f = self.frame.iloc[rows]
            keys = [f["target"], f["repeat"]] if "repeat" in f else [f["target"]]
            nth = f.groupby(keys, sort=False).cumcount().to_numpy()
            rows = rows[nth % every == 0]
        out = self.frame.iloc[rows]
        if limit is not None and len(out):
            out = out.groupby("target", sort=False).head(limit)
        if columns is not None:
            out = out[["target", *[c for c in columns if c != "target"]]]
        return out.reset_index(drop=True)

    def chunk_arrays(
        self,
        stages: Iterable[int] | None = None,
        targets: Iterable[str] | None = None,
        warmup: bool | None = None,
    ) -> dict[str, np.ndarray]:
        rows = self._rows(stages, targets, warmup)
        o = self.chunks["offsets"].astype(np.int64)
        lengths = o[rows + 1] - o[rows]
        idx = np.concatenate([np.arange(o[i], o[i + 1]) for i in rows]) if len(rows) else []
        idx = np.asarray(idx, dtype=np.int64)
        return {
            "offsets": np.concatenate([[0], np.cumsum(lengths)]).astype(np.uint64),
            "t_ns": self.chunks["t_ns"][idx].astype(np.uint64),
            "tokens": self.chunks["tokens"][idx].astype(np.uint32),
        }

    def pieces(
        self,
        columns: Sequence[str],
        targets: Iterable[str] | None = None,
        warmup: bool | None = None,
        chunks: bool = True,
    ) -> Iterator[tuple[Any, dict[str, np.ndarray] | None]]:
        """`RecordSource.pieces` of records already in memory: one piece."""
        frame = self.read(columns, None, targets, warmup)
        yield frame, self.chunk_arrays(None, targets, warmup) if chunks else None


class RecordSets:
    """Several runs' records as one (`Results.concat`), each target renamed where two runs
    share a name."""

    def __init__(self, parts: list[tuple[Any, dict[str, str]]]) -> None:
        self.parts = parts

    @property
    def notes(self) -> dict[str, str]:
        return {k: v for source, _ in self.parts for k, v in source.notes.items()}

    def count(self) -> int:
        return sum(source.count() for source, _ in self.parts)

    def _each(self, targets: Iterable[str] | None) -> Iterator[tuple[Any, dict[str, str], Any]]:
        wanted = set(targets) if targets is not None else None
        for source, rename in self.parts:
            back = {new: old for old, new in rename.items()}
            names = None if wanted is None else [back.get(t, t) for t in wanted]
            yield source, rename, names

    def read(
        self,
        columns: Sequence[str] | None = None,
        stages: Iterable[int] | None = None,
        targets: Iterable[str] | None = None,
        warmup: bool | None = None,
        limit: int | None = None,
        every: int = 1,
    ) -> Any:
        pd = _deps.pandas()
        frames = []
        for source, rename, names in self._each(targets):
            f = source.read(columns, stages, names, warmup, limit, every)
            if len(f) and rename:
                f["target"] = f["target"].replace(rename)
            frames.append(f)
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def chunk_arrays(
        self,
        stages: Iterable[int] | None = None,
        targets: Iterable[str] | None = None,
        warmup: bool | None = None,
    ) -> dict[str, np.ndarray]:
        return concat_chunks(
            [source.chunk_arrays(stages, names, warmup) for source, _, names in self._each(targets)]
        )

    def pieces(
        self,
        columns: Sequence[str],
        targets: Iterable[str] | None = None,
        warmup: bool | None = None,
        chunks: bool = True,
    ) -> Iterator[tuple[Any, dict[str, np.ndarray] | None]]:
        """`RecordSource.pieces` of each run in turn, targets renamed as in `read`."""
        for source, rename, names in self._each(targets):
            for frame, arrays in source.pieces(columns, names, warmup, chunks):
                if len(frame) and rename:
                    frame["target"] = frame["target"].replace(rename)
                yield frame, arrays


def read_file(path: str | Path, columns: Sequence[str] | None = None) -> Any:
    """Every record of one record file (warm-up included) as a DataFrame with `columns`
    (all of `COLUMNS` when None). A file cut by a crash gives its whole batches and a
    `RecordFileWarning` saying what was dropped.

    Example:
        >>> llmbench.records.read_file("results/metrics_study/requests_vllm.arrows")
    """
    return RecordFiles({"": Path(path)}).read(columns).drop(columns="target")
