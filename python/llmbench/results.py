"""Results of a sweep: summary and per-request DataFrames, saving, loading and plotting.

Files written by `Results.save(dir)` (the seed workflow's layout):

- `requests_<target>.arrows`: every request record with its chunk times, written by the
  engine as the run goes (`llmbench.records`);
- `metrics_data.json`: the run manifest, the summary rows and where the record files are;
  every request record too (with its chunk times) for runs of up to `JSON_RECORDS_LIMIT`
  records, or on request (`save(records_in_json=True)`). Non-finite numbers as null;
- `metrics_summary.csv`: one row per target x batch size (with repeats: the mean over
  repeats, and the interval and CV of the headline metrics);
- `metrics_repeats.csv`: with repeats, one row per target x batch size x repeat;
- PNG plots of throughput, TTFT, ITL and cost vs batch size;
- `report.html`: the whole run on one self-contained page (`llmbench.report`).
"""

from __future__ import annotations

import json
import math
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from . import _deps
from ._core import ResultsIOError
from .errors import warn
from .records import RecordFiles, RecordFrame, RecordSets

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

PLOT_FILES = {
    "throughput": "throughput_vs_batch_size.png",
    "ttft": "ttft_vs_batch_size.png",
    "itl": "itl_vs_batch_size.png",
    "cost": "cost_vs_batch_size.png",
    # Only for runs of conversations.
    "ttft_by_turn": "ttft_by_turn.png",
}


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


class Results:
    """What a sweep measured.

    Attributes:
        summary: one row per target x batch size (see `KEY_COLUMNS` for the main ones).
        requests: one row per measured request (warm-up excluded), read from the record
            files on first use; `read_requests(columns, stages)` reads only what it is
            asked for (a long run's records are never all in memory unless asked).
        warmup: the warm-up requests, reported apart.
        manifest: how the run was made (llmbench version, targets, server info, prompts
            hash, seed, host, settings).
        repeats: one row per target x stage x repeat (`repeat` column); without repeats
            the summary with `repeat` 0.

    Example:
        >>> res = llmbench.run_sweep(target, batch_sizes=[1, 8])
        >>> res.summary[["batch_size", "output_tok_s", "ttft_p50_ms"]]
        >>> res.save("results/metrics_study")
    """

    def __init__(self, summary: Any, records: Any, manifest: dict[str, Any]) -> None:
        self.summary = summary
        #: Where the per-request records come from (`llmbench.records`): read on demand.
        self.records = records
        self.manifest = manifest
        self._all: Any = None
        self._chunks: dict[str, np.ndarray] | None = None
        # Per-repeat summary rows, when the run had repeats (`fold_repeats`).
        self._repeats: Any = None
        #: NVML samples (one row per GPU per sample) when the run sampled GPUs, else None.
        self.gpu: Any = None
        #: Per-process GPU memory samples, else None.
        self.gpu_processes: Any = None
        #: The servers' scraped `/metrics` (one row per scrape, `target` column), else None.
        self.server_metrics: Any = None

    def attach_telemetry(self, frames: dict[str, Any]) -> None:
        """Attach GPU samples and server metrics collected during the run."""
        self.gpu = frames.get("gpu")
        self.gpu_processes = frames.get("gpu_processes")
        self.server_metrics = frames.get("server_metrics")

    def kv_timeline(self, target: str | None = None) -> Any:
        """Requests in flight and the KV tokens they hold over time (client-side
        estimate), as a step function: `t_ns`, `t_s`, `in_flight`, `tokens`, and `kv_gib`
        when the model architecture is known.

        Example:
            >>> res.kv_timeline().plot(x="t_s", y="tokens")
        """
        from .columns.kv import GIB, inflight_timeline

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

    def fold_repeats(self) -> None:
        """Fold per-repeat summary rows (the engine's, with a `repeat` column) into one row
        per stage with intervals (`llmbench.repeats.aggregate`); without repeats just drop
        the column."""
        if "repeat" not in self.summary:
            return
        n = int((self.manifest.get("settings") or {}).get("repeats") or 1)
        if n > 1:
            from .repeats import aggregate

            self._repeats = self.summary.reset_index(drop=True)
            self.summary = aggregate(self._repeats)
        else:
            self.summary = self.summary.drop(columns=["repeat"])

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

    # ---- building -------------------------------------------------------------------

    @classmethod
    def from_engine(
        cls,
        outputs: list[tuple[dict[str, Any], dict[str, Any], int]],
        manifest: dict[str, Any],
        records: RecordFiles,
    ) -> Results:
        """Assemble from the engine's outputs, (target description, output, repeat), and
        the record files they wrote. The summary has one row per stage and repeat (with a
        `repeat` column) until `fold_repeats`."""
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
        return cls(summary, records, manifest)

    @classmethod
    def concat(cls, runs: list[Results], labels: list[str] | None = None) -> Results:
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
        out = cls(pd.concat(summaries, ignore_index=True), RecordSets(parts), manifest)
        if any(r._repeats is not None for r in runs):
            out._repeats = pd.concat(repeats, ignore_index=True)
        return out

    def log_wandb(self, *, timeout_s: float = 120.0, **settings: Any) -> str | None:
        """Log to Weights & Biases (see `llmbench.wandb_log.log_wandb`); never raises for
        a stalled or failing W&B service, and gives up after `timeout_s`.

        Example:
            >>> res.log_wandb(project="llmbench", name="vllm-h100")
        """
        from .wandb_log import log_wandb

        return log_wandb(self, timeout_s=timeout_s, **settings)

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

    def save(
        self,
        out_dir: str | Path,
        plots: bool = True,
        records_in_json: bool | None = None,
        report: bool = True,
    ) -> list[Path]:
        """Write `metrics_data.json`, `metrics_summary.csv`, the plots and (unless
        `report=False`) `report.html` into `out_dir`, with the record files (copied there
        when the run wrote them elsewhere). `records_in_json`: see `to_dict`. The report
        comes last: a failure to draw it warns and never costs the files before it.

        Example:
            >>> res.save("results/metrics_study")
        """
        out = Path(out_dir)
        try:
            out.mkdir(parents=True, exist_ok=True)
            if isinstance(self.records, RecordFiles):
                self._copy_record_files(out)
            data_path = out / "metrics_data.json"
            tmp = data_path.with_suffix(".json.tmp")
            data = self.to_dict(records_in_json)
            try:
                tmp.write_text(json.dumps(data, allow_nan=False), encoding="utf-8")
                tmp.replace(data_path)
            finally:
                # A failed write leaves no half file behind (the previous copy, if any,
                # is untouched).
                tmp.unlink(missing_ok=True)
            csv_path = out / "metrics_summary.csv"
            self.summary.to_csv(csv_path, index=False)
            written = [data_path, csv_path]
            if self._repeats is not None:
                written.append(out / "metrics_repeats.csv")
                self._repeats.to_csv(written[-1], index=False)
        except OSError as e:
            raise ResultsIOError(f"cannot write results to {out}: {e}") from e
        if plots and len(self.summary):
            written += self.plot(out_dir=out, close=True)
        if report:
            written += self.save_report(out)
        return written

    def save_report(self, out_dir: str | Path) -> list[Path]:
        """Write `report.html` into `out_dir` beside files already written there; any
        failure to draw it is a warning, never an error (the measurements are on disk
        whatever the report's fate). Returns the path written, or none."""
        from .errors import warn
        from .report import REPORT_FILE

        try:
            return [self.to_html(Path(out_dir) / REPORT_FILE)]
        except Exception as e:  # a report bug must not cost a saved run
            warn(f"report.html was not written: {type(e).__name__}: {e}", RuntimeWarning)
            return []

    def to_html(self, path: str | Path, title: str | None = None) -> Path:
        """Write this run (or comparison) as one self-contained HTML page that opens
        offline in any browser: what was measured, the summary with its intervals,
        interactive charts, client health, failures and, for two targets, A/B verdicts
        (`llmbench.report`; docs/report.md). Returns the path.

        Example:
            >>> res.to_html("results/metrics_study/report.html")
        """
        from .report import write_report

        return write_report(self, path, title)

    def _copy_record_files(self, out: Path) -> None:
        """Put the record files in `out` (each run's results folder holds its records)."""
        moved: dict[str, list[Path]] = {}
        for name, paths in self.records.files.items():
            for path in paths:
                dest = out / path.name
                if dest.resolve() != path.resolve():
                    shutil.copyfile(path, dest)
                moved.setdefault(name, []).append(dest)
        self.records = RecordFiles(moved)

    @classmethod
    def load(cls, path: str | Path) -> Results:
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
        summary = pd.DataFrame(data.get("summary", []))
        res = cls(summary, records, data.get("manifest", {}))
        if data.get("repeats"):
            res._repeats = pd.DataFrame(data["repeats"])
        res.attach_telemetry({k: pd.DataFrame(v) for k, v in (data.get("telemetry") or {}).items()})
        return res

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

    # ---- plots ----------------------------------------------------------------------

    def plot(self, out_dir: str | Path | None = None, close: bool = False) -> Any:
        """Throughput, TTFT, ITL and cost vs batch size, one line per target.

        Returns a dict of matplotlib figures, or with `out_dir` the list of PNG paths.

        Example:
            >>> figs = res.plot()
            >>> figs["throughput"].savefig("throughput.png")
        """
        from .plots import summary_figures, turn_figure, x_axis

        figs = summary_figures(self.summary)
        x = x_axis(self.summary)[0]
        suffix = {"sent_rate_req_s": "_vs_rate.png", "input_tokens": "_vs_input_length.png"}.get(x)
        by_turn = self.by_turn()
        if len(by_turn):
            figs["ttft_by_turn"] = turn_figure(by_turn)
        if out_dir is None:
            return figs
        plt = _deps.pyplot()
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = []
        for key, fig in figs.items():
            name = PLOT_FILES[key]
            path = out / (name.replace("_vs_batch_size.png", suffix) if suffix else name)
            fig.savefig(path, dpi=120, bbox_inches="tight")
            paths.append(path)
            if close:
                plt.close(fig)
        return paths

    def __repr__(self) -> str:
        targets = sorted(set(self.summary["target"])) if len(self.summary) else []
        return (
            f"Results(targets={targets}, stages={len(self.summary)}, "
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
    from .records import RecordFileWarning

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
    if "repeat" not in df.columns and "stage" in df.columns:
        # Saved before repeats existed: one run.
        df.insert(df.columns.get_loc("stage") + 1, "repeat", 0)
    return df
