"""Writing a run's files (the seed workflow's layout), as functions of its `RunData`:

- `requests_<target>.arrows`: every request record with its chunk times, written by the
  engine as the run goes (`llmbench.records`), copied here when the run wrote them
  elsewhere;
- `metrics_data.json`: the run manifest, the summary rows and where the record files are;
  every request record too (with its chunk times) for runs of up to `JSON_RECORDS_LIMIT`
  records, or on request (`records_in_json=True`). Non-finite numbers as null;
- `metrics_summary.csv`: one row per target x batch size (with repeats: the mean over
  repeats, and the interval and CV of the headline metrics);
- `metrics_repeats.csv`: with repeats, one row per target x batch size x repeat;
- PNG plots of throughput, TTFT, ITL and cost vs batch size (`llmbench.plots`);
- `report.html`: the whole run on one self-contained page (`llmbench.report`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ._core import ResultsIOError
from .errors import warn
from .plots import save_plots
from .records import RecordFiles
from .report import REPORT_FILE, write_report
from .run_data import RunData

DATA_FILE = "metrics_data.json"


def save(
    results: RunData,
    out_dir: str | Path,
    plots: bool = True,
    records_in_json: bool | None = None,
    report: bool = True,
) -> list[Path]:
    """Write `metrics_data.json`, `metrics_summary.csv`, the plots and (unless
    `report=False`) `report.html` into `out_dir`, with the record files. The report comes
    last: a failure to draw it warns and never costs the files before it. A file that
    cannot be written raises `ResultsIOError`, leaving no half-written
    `metrics_data.json` behind."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        if isinstance(results.records, RecordFiles):
            _copy_record_files(results.records, out)
        data_path = out / DATA_FILE
        tmp = data_path.with_suffix(".json.tmp")
        data = results.to_dict(records_in_json)
        try:
            tmp.write_text(json.dumps(data, allow_nan=False), encoding="utf-8")
            tmp.replace(data_path)
        finally:
            # A failed write leaves no half file behind (the previous copy, if any, is
            # untouched).
            tmp.unlink(missing_ok=True)
        csv_path = out / "metrics_summary.csv"
        results.summary.to_csv(csv_path, index=False)
        written = [data_path, csv_path]
        if results._repeats is not None:
            written.append(out / "metrics_repeats.csv")
            results._repeats.to_csv(written[-1], index=False)
    except OSError as e:
        raise ResultsIOError(f"cannot write results to {out}: {e}") from e
    if plots and len(results.summary):
        written += save_plots(results, out, close=True)
    if report:
        written += save_report(results, out)
    return written


def save_report(results: RunData, out_dir: str | Path) -> list[Path]:
    """Write `report.html` into `out_dir` beside files already written there; any failure
    to draw it is a warning, never an error (the measurements are on disk whatever the
    report's fate). Returns the path written, or none."""
    try:
        return [write_report(results, Path(out_dir) / REPORT_FILE)]
    except Exception as e:  # a report bug must not cost a saved run
        warn(f"report.html was not written: {type(e).__name__}: {e}", RuntimeWarning)
        return []


def _copy_record_files(records: RecordFiles, out: Path) -> None:
    """Put the record files in `out` (each run's results folder holds its records); the
    run keeps reading the copies it has (the value is not changed)."""
    for paths in records.files.values():
        for path in paths:
            dest = out / path.name
            if dest.resolve() != path.resolve():
                shutil.copyfile(path, dest)
