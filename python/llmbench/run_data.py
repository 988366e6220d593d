"""What a run measured, as a value: `RunData` holds the summary, the manifest, the
per-repeat rows, the telemetry frames and where the records are, and reads them (whole,
or only the columns and stages asked for). It is built once (`engine_summary` and
`fold_repeats` make its summary from the engine's output) and not changed afterwards:
`replace` makes a new one. Saving, plots, the report and W&B are functions of it
(`llmbench.saving`, `llmbench.plots`, `llmbench.report`, `llmbench.wandb_log`);
`llmbench.results.Results` adds the methods that delegate to them. Nothing here imports
those modules: they import this one.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from . import _deps
from ._core import ResultsIOError
from .columns.kv import GIB, inflight_timeline
from .errors import warn
from .records import RecordFiles, RecordFileWarning, RecordFrame, RecordSets
from .repeats import aggregate

#: Runs of up to this many records (warm-up included) keep every record in
#: `metrics_data.json` too, as the seed workflow's readers expect; longer ones only in
#: their record files unless `save(records_in_json=True)`.
JSON_RECORDS_LIMIT = 10_000

# Summary columns shown first (the rest follow in engine order).
KEY_COLUMNS = [
    "target",
    "batch_size",
    "target_rate",
    "input_tokens",
    "sent_rate_req_s",
    "n_ok",
    "n_failed",
    "ttft_p50_ms",
    "ttft_p99_ms",
    "itl_mean_ms",
    "tpot_mean_ms",
    "e2e_p50_ms",
    "output_tok_s",
    "total_tok_s",
    "req_s",
    "usd_per_1m_output_tokens",
]


def _finite_or_none(v: Any) -> Any:
    """A JSON-able scalar: numpy scalars as Python ones; NaN, +-inf and pandas' missing
    values (NA, NaT: nullable integer columns such as `n_in`) as None."""
    if isinstance(v, (float, np.floating)):
        f = float(v)
        return f if math.isfinite(f) else None
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.bool_):
        return bool(v)
    if v is not None and not isinstance(v, (str, bool, int)) and _deps.pandas().isna(v) is True:
        return None
    return v


R = TypeVar("R", bound="RunData")


class RunData:
    """What a run measured (a value: built once, never changed; `replace` makes another):
    the data and the reads of `llmbench.Results`, whose docstring lists the attributes.
    Functions that write, draw or log a run take one of these."""

    def __init__(
        self,
        summary: Any,
        records: Any,
        manifest: dict[str, Any],
        *,
        repeats: Any = None,
        gpu: Any = None,
        gpu_processes: Any = None,
        server_metrics: Any = None,
    ) -> None:
        self.summary = summary
        #: Where the per-request records come from: a `llmbench.records.RecordSource`
        #: (`RecordFiles`, `RecordFrame` or `RecordSets`), read on demand.
        self.records = records
        self.manifest = manifest
        # Per-repeat summary rows, when the run had repeats (`fold_repeats`).
        self._repeats = repeats
        #: NVML samples (one row per GPU per sample) when the run sampled GPUs, else None.
        self.gpu = gpu
        #: Per-process GPU memory samples, else None.
        self.gpu_processes = gpu_processes
        #: The servers' scraped `/metrics` (one row per scrape, `target` column), else None.
        self.server_metrics = server_metrics
        # Memos of what was read whole (reading never changes what the value holds).
        self._all: Any = None
        self._chunks: dict[str, np.ndarray] | None = None

    def _parts(self) -> dict[str, Any]:
        return {
            "summary": self.summary,
            "records": self.records,
            "manifest": self.manifest,
            "repeats": self._repeats,
            "gpu": self.gpu,
            "gpu_processes": self.gpu_processes,
            "server_metrics": self.server_metrics,
        }

    def replace(self: R, **changes: Any) -> R:
        """A copy with `changes` (any of the constructor's arguments): the value itself
        is never changed.

        Example:
            >>> res.replace(manifest={**res.manifest, "note": "rerun"})
        """
        parts = {**self._parts(), **changes}
        return type(self)(
            parts.pop("summary"), parts.pop("records"), parts.pop("manifest"), **parts
        )

    def kv_timeline(self, target: str | None = None) -> Any:
        """Requests in flight and the KV tokens they hold over time (client-side
        estimate), as a step function: `t_ns`, `t_s`, `in_flight`, `tokens`, and `kv_gib`
        when the model architecture is known.

        Example:
            >>> res.kv_timeline().plot(x="t_s", y="tokens")
        """
        # Only the columns and chunks the timeline needs, not kept: a long run's records
        # are never all in memory for it.
        targets = [target] if target is not None else None
        rows = self.read_requests(["t_sent_ns", "t_done_ns", "n_in"], targets=targets, warmup=None)
        tl = inflight_timeline(rows, self._source().chunk_arrays(None, targets, None))
        tl.insert(1, "t_s", (tl["t_ns"] - self.run_start_ns()) / 1e9)
        arch = self.manifest.get("model_arch")
        if arch:
            tl["kv_gib"] = tl["tokens"] * arch["bytes_per_token"] / GIB
        return tl

    def run_start_ns(self) -> int:
        """The run's time zero on its clock: the first scheduled request, warm-up
        included (0 for a run without records); the `t_s` of `kv_timeline`, the KV-cache
        study's timeline and the report count from it. Reads one column, keeps nothing."""
        first = self.read_requests(["t_sched_ns"], warmup=None)["t_sched_ns"]
        return int(first.min()) if len(first) else 0

    @property
    def all_requests(self) -> Any:
        """Every request, warm-up included (`warmup` column), in the order of the chunk
        arrays of `chunk_arrays`; read from the record files on first use and kept. For a
        long run, `read_requests` reads only the columns and stages asked for.

        Example:
            >>> res.all_requests.groupby("warmup").size()
        """
        if self._all is None:
            self._all = self._with_prefix_group(self.records.read())
        return self._all

    @property
    def chunk_arrays(self) -> dict[str, np.ndarray]:
        """Every chunk of every request as flat arrays: row `i` of `all_requests` owns
        `t_ns[offsets[i]:offsets[i + 1]]` (arrival times on the run clock) and the same
        slice of `tokens`.

        Example:
            >>> c = res.chunk_arrays
            >>> c["t_ns"][c["offsets"][0] : c["offsets"][1]]
        """
        if self._chunks is None:
            self._chunks = self.records.chunk_arrays()
        return self._chunks

    @property
    def requests(self) -> Any:
        """Measured requests (warm-up excluded), one row each."""
        every = self.all_requests
        return every[~every["warmup"]].reset_index(drop=True) if len(every) else every

    @property
    def warmup(self) -> Any:
        """Warm-up requests, reported apart and never in the statistics."""
        every = self.all_requests
        return every[every["warmup"]].reset_index(drop=True) if len(every) else every

    def read_requests(
        self,
        columns: list[str] | None = None,
        stages: list[int] | None = None,
        targets: list[str] | None = None,
        warmup: bool | None = False,
        limit: int | None = None,
        every: int = 1,
    ) -> Any:
        """Measured requests (`warmup=True`: the warm-up ones; None: both) of `stages`
        and `targets` with only `columns` (all when None), at most `limit` rows per target
        (or with `every` > 1 every `every`-th request of each record file), read from the
        record files without keeping them: what a notebook opening a long run uses.

        Example:
            >>> res.read_requests(["ttft_ms", "e2e_ms"], stages=[3])
        """
        if columns is None or "prefix_group" not in columns:
            return self._source().read(columns, stages, targets, warmup, limit, every)
        # Derived from the prompt index: read that instead.
        stored = [c for c in columns if c != "prefix_group"]
        frame = self._source().read(
            list(dict.fromkeys([*stored, "prompt_index"])), stages, targets, warmup, limit, every
        )
        frame = self._with_prefix_group(frame, force=True)
        return frame[["target", *[c for c in columns if c != "target"]]]

    def _with_prefix_group(self, frame: Any, force: bool = False) -> Any:
        """`frame` with `prefix_group` (prompt `i` of a `shared_prefix` workload is in
        group `i % groups`) when the run's workload had groups; NA with `force` and none."""
        pd = _deps.pandas()
        groups = (self.manifest.get("prompts") or {}).get("prefix_groups")
        if groups and "prompt_index" in frame:
            frame["prefix_group"] = (frame["prompt_index"].astype(np.int64) % int(groups)).astype(
                "Int64"
            )
        elif force:
            frame["prefix_group"] = pd.array([pd.NA] * len(frame), dtype="Int64")
        return frame

    def _source(self) -> Any:
        """Where to read records: the frame already read whole when there is one, else the
        record files."""
        return self.records if self._all is None else RecordFrame(self._all, self.chunk_arrays)

    @property
    def n_records(self) -> int:
        """Records of the run (warm-up included), counted without reading them whole."""
        return len(self._all) if self._all is not None else self.records.count()

    @property
    def repeats(self) -> Any:
        """One summary row per target x stage x repeat (`repeat` column, from 0); for a
        run without repeats, the summary itself with `repeat` 0.

        Example:
            >>> res = llmbench.run_sweep(target, batch_sizes=[8], repeats=5)
            >>> res.repeats[["repeat", "ttft_p50_ms"]]
        """
        if self._repeats is not None:
            return self._repeats
        return self.summary.assign(repeat=0)

    @property
    def interrupted(self) -> bool:
        """Whether the run was cut short (Ctrl-C)."""
        return bool(self.manifest.get("interrupted", False))

    def chunks(
        self,
        request_id: int | None = None,
        target: str | None = None,
        stages: list[int] | None = None,
        repeat: int | None = None,
    ) -> Any:
        """Chunk arrival times: of one request (`t_ms` since its send, `tokens`), or with no
        `request_id` of every measured request of `stages` and `target` (all when None) as
        one long frame with `target`, `repeat`, `id`, `t_ms` and `tokens`, read from the
        record files. Request ids count from 0 in each target's repeat: with repeats, give
        `repeat` (and `target`) to name one request.

        Example:
            >>> res.chunks(res.requests.id[0])
            >>> res.chunks(stages=[2]).groupby("id").t_ms.max()
        """
        pd = _deps.pandas()
        targets = [target] if target is not None else None
        warmup = None if request_id is not None else False
        rows = self.read_requests(["id", "repeat", "t_sent_ns"], stages, targets, warmup)
        arrays = self._source().chunk_arrays(stages, targets, warmup)
        offsets = arrays["offsets"].astype(np.int64)
        lengths = np.diff(offsets)
        sent = np.repeat(rows["t_sent_ns"].to_numpy(np.int64), lengths)
        t_ms = (arrays["t_ns"].astype(np.int64) - sent) / 1e6
        if request_id is None:
            return pd.DataFrame(
                {
                    "target": np.repeat(rows["target"].to_numpy(), lengths),
                    "repeat": np.repeat(rows["repeat"].to_numpy(), lengths),
                    "id": np.repeat(rows["id"].to_numpy(), lengths),
                    "t_ms": t_ms,
                    "tokens": arrays["tokens"],
                }
            )
        is_it = (rows["id"] == request_id).to_numpy()
        if repeat is not None:
            is_it = is_it & (rows["repeat"] == repeat).to_numpy()
        match = is_it.nonzero()[0]
        if len(match) == 0:
            raise KeyError(f"no request with id {request_id}")
        if len(match) > 1:
            raise KeyError(
                f"{len(match)} requests have id {request_id} (one per target and repeat): "
                "give target= and repeat="
            )
        i = int(match[0])
        a, b = int(offsets[i]), int(offsets[i + 1])
        return pd.DataFrame({"t_ms": t_ms[a:b], "tokens": arrays["tokens"][a:b]})

    @classmethod
    def concat(cls: type[R], runs: list[RunData], labels: list[str] | None = None) -> R:
        """Several runs as one (e.g. vLLM, TGI and the baseline measured apart). A target
        name found in more than one run gets that run's label appended.

        Example:
            >>> both = llmbench.Results.concat([vllm_res, tgi_res])
        """
        pd = _deps.pandas()
        labels = labels or [f"run{i + 1}" for i in range(len(runs))]
        seen: dict[str, int] = {}
        for r in runs:
            for t in set(r.summary["target"]) if len(r.summary) else ():
                seen[t] = seen.get(t, 0) + 1
        summaries, repeats, parts = [], [], []
        for r, label in zip(runs, labels, strict=True):
            rename = {t: f"{t} ({label})" for t, n in seen.items() if n > 1}
            summaries.append(r.summary.replace({"target": rename}))
            repeats.append(r.repeats.replace({"target": rename}))
            parts.append((r._source(), rename))
        manifest = {
            "kind": "comparison",
            "runs": [{"label": label, **r.manifest} for r, label in zip(runs, labels, strict=True)],
        }
        per_repeat = (
            pd.concat(repeats, ignore_index=True)
            if any(r._repeats is not None for r in runs)
            else None
        )
        return cls(
            pd.concat(summaries, ignore_index=True), RecordSets(parts), manifest, repeats=per_repeat
        )

    # ---- files ----------------------------------------------------------------------

    def to_dict(self, records_in_json: bool | None = None) -> dict[str, Any]:
        """Everything as plain JSON-able data (non-finite numbers as None): the manifest,
        the summary, where the record files are, and every record (with its chunk times)
        when `records_in_json` is true, or when None for runs of up to
        `JSON_RECORDS_LIMIT` records."""
        if records_in_json is None:
            records_in_json = self.n_records <= JSON_RECORDS_LIMIT
        summary = [
            {k: _finite_or_none(v) for k, v in row.items()}
            for row in self.summary.to_dict(orient="records")
        ]
        out: dict[str, Any] = {"manifest": self.manifest, "summary": summary}
        if self._repeats is not None:
            out["repeats"] = [
                {k: _finite_or_none(v) for k, v in row.items()}
                for row in self._repeats.to_dict(orient="records")
            ]
        files = getattr(self.records, "files", None)
        if files:
            out["records"] = {
                "format": "arrow-ipc-stream",
                # One file per target, or with repeats a list of them (one per repeat).
                "files": {
                    name: [p.name for p in paths] if len(paths) > 1 else paths[0].name
                    for name, paths in files.items()
                },
                "n_records": self.n_records,
                "in_json": bool(records_in_json),
            }
        if records_in_json:
            out["requests"] = self._records_as_json()
        telemetry = {
            key: _frame_to_columns(frame)
            for key, frame in (
                ("gpu", self.gpu),
                ("gpu_processes", self.gpu_processes),
                ("server_metrics", self.server_metrics),
            )
            if frame is not None
        }
        if telemetry:
            out["telemetry"] = telemetry
        return out

    def _records_as_json(self) -> list[dict[str, Any]]:
        every = self.all_requests
        cols = list(every.columns)
        offsets, t_ns, tokens = (self.chunk_arrays[k] for k in ("offsets", "t_ns", "tokens"))
        records = []
        for i, values in enumerate(every.itertuples(index=False, name=None)):
            rec = {c: _finite_or_none(v) for c, v in zip(cols, values, strict=True)}
            a, b = int(offsets[i]), int(offsets[i + 1])
            rec["chunk_times_ns"] = t_ns[a:b].tolist()
            rec["chunk_tokens"] = tokens[a:b].tolist()
            records.append(rec)
        return records

    @classmethod
    def load(cls: type[R], path: str | Path) -> R:
        """Read results saved by `save` (a folder or its `metrics_data.json`), including
        runs saved by versions that kept every record in `metrics_data.json`. Records are
        read from the record files when first asked for.

        Example:
            >>> res = llmbench.Results.load("results/metrics_study")
        """
        pd = _deps.pandas()
        p = Path(path)
        if p.is_dir():
            p = p / "metrics_data.json"
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ResultsIOError(f"cannot read results from {p}: {e}") from e
        pointer = data.get("records") or {}
        files = {
            name: [p.parent / f for f in ([fs] if isinstance(fs, str) else fs)]
            for name, fs in (pointer.get("files") or {}).items()
        }
        records = _pick_records(p, files, data.get("requests"), pointer.get("n_records"))
        frames = {k: pd.DataFrame(v) for k, v in (data.get("telemetry") or {}).items()}
        return cls(
            pd.DataFrame(data.get("summary", [])),
            records,
            data.get("manifest", {}),
            repeats=pd.DataFrame(data["repeats"]) if data.get("repeats") else None,
            gpu=frames.get("gpu"),
            gpu_processes=frames.get("gpu_processes"),
            server_metrics=frames.get("server_metrics"),
        )

    def by_turn(self) -> Any:
        """Per target, stage and conversation turn (0 first): requests, failures, TTFT
        p50/mean/p99, TPOT mean, E2E p50 and the context length (`n_in` mean, the whole
        history the turn sent). Empty for a run without conversations.

        Example:
            >>> res.by_turn()[["turn", "n_in_mean", "ttft_p50_ms"]]
        """
        pd = _deps.pandas()
        cols = ["stage", "turn", "ok", "ttft_ms", "tpot_ms", "e2e_ms", "n_in"]
        out = turn_table(self.read_requests(cols), ["target", "stage", "turn"])
        if out is None:
            return pd.DataFrame(columns=["target", "stage", "turn"])
        loads = [c for c in ("batch_size", "target_rate") if c in self.summary]
        if loads:
            stages = self.summary[["target", "stage", *loads]].drop_duplicates(["target", "stage"])
            out = out.merge(stages, on=["target", "stage"], how="left")
        return out

    def __repr__(self) -> str:
        targets = sorted(set(self.summary["target"])) if len(self.summary) else []
        return (
            f"{type(self).__name__}(targets={targets}, stages={len(self.summary)}, "
            f"requests={_measured(self.summary)}"
            f"{', interrupted' if self.interrupted else ''})"
        )


def turn_table(requests: Any, keys: list[str]) -> Any:
    """Per `keys` (which end with `turn`), over requests that are conversation turns:
    `n`, `n_ok`, `n_failed`, TTFT p50/p90/p99/mean of the successful ones, and where the
    columns are there TPOT mean, E2E p50 and the context length (`n_in_mean`: the whole
    history the turn sent). None when no request is a turn."""
    if "turn" not in requests or not requests["turn"].notna().any():
        return None
    df = requests[requests["turn"].notna()]
    df = df.assign(turn=df["turn"].astype(int), ok=df["ok"].astype(bool))
    counts = df.groupby(keys).agg(n=("ok", "size"), n_ok=("ok", "sum"))
    ok = df[df["ok"]]

    def pct(q: float) -> Any:
        return lambda v: float(np.nanpercentile(v.to_numpy(float), q)) if len(v) else np.nan

    aggs: dict[str, Any] = {
        "ttft_p50_ms": ("ttft_ms", pct(50)),
        "ttft_p90_ms": ("ttft_ms", pct(90)),
        "ttft_p99_ms": ("ttft_ms", pct(99)),
        "ttft_mean_ms": ("ttft_ms", "mean"),
    }
    if "tpot_ms" in ok:
        aggs["tpot_mean_ms"] = ("tpot_ms", "mean")
    if "e2e_ms" in ok:
        aggs["e2e_p50_ms"] = ("e2e_ms", pct(50))
    if "n_in" in ok:
        ok = ok.assign(n_in=ok["n_in"].astype(float))
        aggs["n_in_mean"] = ("n_in", "mean")
    out = counts.join(ok.groupby(keys).agg(**aggs)).reset_index()
    out["n_failed"] = out["n"] - out["n_ok"]
    return out


def _measured(summary: Any) -> int:
    """Measured requests, from the summary (no record is read)."""
    if not len(summary) or "n_requests" not in summary:
        return 0
    return int(summary["n_requests"].fillna(0).sum())


def _pick_records(
    data_path: Path,
    files: dict[str, list[Path]],
    in_json: list[dict[str, Any]] | None,
    expected: int | None,
) -> Any:
    """The one rule for which copy of the records `load` reads: the record files, unless
    they hold fewer records than the run saved (`n_records`: cut by a crash or a full
    disk, emptied, missing) and `metrics_data.json` keeps a complete copy, which then
    wins. Whenever the copy read is short of what the run saved, a `RecordFileWarning`
    says how many records are missing and why."""
    json_count = len(in_json) if in_json is not None else None
    if files and all(f.exists() for fs in files.values() for f in fs):
        record_files = RecordFiles(files)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RecordFileWarning)
            try:
                n = record_files.count()
            except ResultsIOError:
                n = 0
        if expected is None or n >= expected:
            return record_files
        if json_count is not None and json_count >= expected:
            warn(
                f"the record files beside {data_path} hold {n} of the run's {expected} "
                f"records (damaged: {'; '.join(record_files.notes.values()) or 'short'}); "
                "reading the complete copy in metrics_data.json instead",
                RecordFileWarning,
            )
            return _records_from_json(in_json or [])
        warn(
            f"the record files beside {data_path} hold {n} of the run's {expected} records "
            "and no complete copy is kept: the rest are lost, and the summary (computed "
            "during the run) counts more requests than the records",
            RecordFileWarning,
        )
        return record_files
    if files:
        missing = [str(f) for fs in files.values() for f in fs if not f.exists()]
        have = json_count or 0
        if expected is not None and have < expected:
            warn(
                f"record file(s) {', '.join(missing)} missing and metrics_data.json keeps "
                f"{have} of the run's {expected} records",
                RecordFileWarning,
            )
    return _records_from_json(in_json or [])


def _records_from_json(records: list[dict[str, Any]]) -> RecordFrame:
    """The per-request rows kept in `metrics_data.json` (runs saved before the record
    file, or with `records_in_json`)."""
    pd = _deps.pandas()
    offsets = [0]
    t_ns: list[int] = []
    tokens: list[int] = []
    rows = []
    for r in records:
        r = dict(r)
        t_ns.extend(r.pop("chunk_times_ns", []))
        tokens.extend(r.pop("chunk_tokens", []))
        offsets.append(len(t_ns))
        rows.append(r)
    chunks = {
        "offsets": np.asarray(offsets, dtype=np.uint64),
        "t_ns": np.asarray(t_ns, dtype=np.uint64),
        "tokens": np.asarray(tokens, dtype=np.uint32),
    }
    return RecordFrame(_tidy_requests(pd.DataFrame(rows)), chunks)


def _frame_to_columns(frame: Any) -> dict[str, list[Any]]:
    """A DataFrame as JSON-able columns (non-finite numbers as None)."""
    return {str(c): [_finite_or_none(v) for v in frame[c].tolist()] for c in frame.columns}


def _tidy_requests(df: Any) -> Any:
    """Turn the engine's sentinels (-1 for missing integers) into proper missing values."""
    pd = _deps.pandas()
    if not len(df):
        return df
    for col in ("n_in", "http_status", "t_headers_ns", "t_first_ns", "t_last_ns"):
        if col in df.columns:
            s = pd.to_numeric(df[col], errors="coerce")
            df[col] = s.where(s >= 0).astype("Int64")
    if "warmup" in df.columns:
        df["warmup"] = df["warmup"].astype(bool)
    for col in ("conversation", "turn"):
        # Saved before conversations: every request single-turn.
        df[col] = (
            pd.to_numeric(df[col]).astype("Int64")
            if col in df.columns
            else pd.array([pd.NA] * len(df), dtype="Int64")
        )
    for col in ("server_queue_ms", "server_prefill_ms", "server_decode_ms", "ttft_rest_ms"):
        # Saved before the server's times were read (or null in JSON): not known.
        df[col] = pd.to_numeric(df[col], errors="coerce") if col in df.columns else float("nan")
    if "repeat" not in df.columns and "stage" in df.columns:
        # Saved before repeats existed: one run.
        df.insert(df.columns.get_loc("stage") + 1, "repeat", 0)
    return df


def engine_summary(
    outputs: list[tuple[dict[str, Any], dict[str, Any], int]], manifest: dict[str, Any]
) -> Any:
    """The summary rows of the engine's outputs, (target description, output, repeat):
    one row per stage and repeat, with a `repeat` column (`fold_repeats` folds them)."""
    pd = _deps.pandas()
    summaries = []
    lengths = (manifest.get("settings") or {}).get("input_lengths")
    for desc, out, repeat in sorted(outputs, key=lambda o: o[2]):
        for st in out["stages"]:
            row = {"target": desc["name"], "api": desc["api"], "model": desc["model"]}
            row["stage"] = st["index"]
            row["repeat"] = repeat
            # An open-loop stage has a target rate instead of a batch size.
            row["batch_size"] = st["batch_size"] if st["target_rate"] is None else None
            row["target_rate"] = st["target_rate"]
            if lengths:
                # A sweep over input lengths: stage i sends prompts of lengths[i].
                row["input_tokens"] = lengths[st["index"]]
            row["interrupted"] = st["interrupted"]
            row.update(st["summary"])
            summaries.append(row)
    summary = pd.DataFrame(summaries)
    for col in ("batch_size", "target_rate"):
        # None where a column does not apply (open vs closed loop): numeric, NaN there.
        if col in summary:
            summary[col] = pd.to_numeric(summary[col])
    if len(summary):
        first = [c for c in KEY_COLUMNS if c in summary.columns]
        summary = summary[first + [c for c in summary.columns if c not in first]]
    return summary


def fold_repeats(summary: Any, repeats: int) -> tuple[Any, Any]:
    """`summary` (with a `repeat` column) folded to one row per stage with intervals
    (`llmbench.repeats.aggregate`), and the per-repeat rows (None without repeats)."""
    if "repeat" not in summary:
        return summary, None
    if repeats > 1:
        per_repeat = summary.reset_index(drop=True)
        return aggregate(per_repeat), per_repeat
    return summary.drop(columns=["repeat"]), None


TABLE_COLUMNS = ("output_tok_s", "ttft_p50_ms", "tpot_mean_ms", "usd_per_1m_output_tokens")


def comparison_table(results: RunData, columns: Any = TABLE_COLUMNS) -> Any:
    """The main figures with one column per target and one row per batch size (or rate);
    with repeats, each figure's 95% interval beside it (`<metric>_ci_low`, `_ci_high`).

    Example:
        >>> llmbench.comparison_table(llmbench.compare(["results/vllm", "results/tgi"]))
    """
    s = results.summary
    x = "batch_size" if s["batch_size"].notna().any() else "target_rate"
    cols = [
        c for metric in columns for c in (metric, f"{metric}_ci_low", f"{metric}_ci_high") if c in s
    ]
    return s.pivot_table(index=x, columns="target", values=cols, sort=True)
