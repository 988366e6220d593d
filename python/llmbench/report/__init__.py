"""One self-contained HTML report per run or comparison (`Results.to_html`,
`llmbench report`): what was measured, the summary with its intervals, interactive charts,
the client's health, failures and A/B verdicts, in a file that opens offline in any
browser and stays small however long the run (docs/report.md).

The sections are built from `report.data` (bounded frames), drawn by `report.charts`
(Bokeh) and laid out by `report.page`.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
from pathlib import Path
from typing import Any

from .. import _core, _deps
from ..ab_analysis import compare_ab
from ..run_data import KEY_COLUMNS, comparison_table
from ..run_data import RunData as Results
from . import charts, data
from .page import Section, definitions, esc, json_block, render, table

#: The file `Results.save` and the commands write beside the other results.
REPORT_FILE = "report.html"

#: Summary columns the main table shows (where the run has them), after `KEY_COLUMNS`.
EXTRA_SUMMARY_COLUMNS = ["goodput_req_s", "slo_met", "gpu_mem_used_max_gib", "kv_cache_gib"]

HEALTH_COLUMNS = [
    "client_trustworthy",
    "client_health",
    "client_load_vs_calibration",
    "client_task_lag_p99_ms",
    "client_cpu_share",
    "send_lag_p99_ms",
    "late_sends_1ms",
]

#: The comparison section's metrics (one small table each: stages x targets).
COMPARED = [
    ("output_tok_s", "output tokens / s"),
    ("ttft_p50_ms", "TTFT p50 (ms)"),
    ("tpot_mean_ms", "TPOT mean (ms)"),
    ("e2e_p50_ms", "E2E p50 (ms)"),
    ("usd_per_1m_output_tokens", "USD per 1M output tokens"),
]

#: Most warnings listed in the header (the rest are counted).
MAX_WARNINGS = 12


def write_report(results: Results, path: str | Path, title: str | None = None) -> Path:
    """Write the report of `results` to `path` (written whole to a temporary file, then
    renamed: a reader never sees half a report). Returns the path.

    Example:
        >>> llmbench.write_report(res, "results/metrics_study/report.html")
    """
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    try:
        tmp.write_text(report_html(results, title), encoding="utf-8")
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)  # never a half-written report left behind
    return out


def report_html(results: Results, title: str | None = None) -> str:
    """The report of `results` as one HTML string (what `write_report` writes and W&B
    logs)."""
    embed = _deps.require("bokeh.embed", "bokeh")
    resources = _deps.require("bokeh.resources", "bokeh")
    summary = results.summary
    targets = [str(t) for t in dict.fromkeys(summary["target"])] if len(summary) else []
    n_records = results.n_records
    every = data.sample_step(n_records)
    requests = data.requests_frame(results, every)
    labels = data.stage_labels(summary)
    t0 = results.run_start_ns()
    manifests = _manifests(results)

    figures: dict[str, Any] = {}

    def charted(ident: str, title: str, drawn: dict[str, Any], note: str) -> Section:
        """A section of charts (those of `drawn` that have something to draw)."""
        keys = [k for k, f in drawn.items() if f is not None]
        figures.update({k: drawn[k] for k in keys})
        if not keys:
            return Section(ident, title, note + '<p class="note">Nothing to draw for this run.</p>')
        return Section(ident, title, note, charts=keys)

    sections = [
        _measured(manifests),
        _summary(summary),
    ]
    if len(targets) > 1:
        sections.append(_comparison(results, targets))
    if len(targets) == 2:
        sections.append(_ab(results, targets))
    against_load = {
        f"summary_{k}": charts.summary_chart(summary, k) for k, *_ in charts.SUMMARY_CHARTS
    }
    sections.append(charted("charts", "Against load", against_load, _load_note()))
    breakdown = {
        "breakdown_ttft": charts.breakdown_chart(summary, "ttft"),
        "breakdown_e2e": charts.breakdown_chart(summary, "e2e"),
    }
    sections.append(
        charted("breakdown", "Where the time goes", breakdown, _breakdown_note(results))
    )
    cdfs = data.latency_cdfs(requests, labels)
    distributions = {f"cdf_{c}": charts.cdf_chart(cdfs, c, label) for c, label in data.CDF_METRICS}
    sections.append(charted("latency", "Latency distributions", distributions, _cdf_note()))
    over_time = charts.over_time_chart(
        data.requests_over_time(requests, t0, every), data.ttft_sample(requests, t0, labels)
    )
    sections.append(
        charted("timeline", "Requests over time", {"time_requests": over_time}, _time_note())
    )
    turns = data.by_turn(requests)
    if turns is not None:
        turn = charted(
            "turns", "TTFT by conversation turn", {"turns": charts.turn_chart(turns)}, ""
        )
        turn.tail = table(turns, table_id="t-turns")
        sections.append(turn)
    gpu = {
        "gpu_memory": charts.gpu_chart(data.gpu_series(results, t0)),
        "gpu_kv": charts.kv_chart(data.kv_series(results, t0, client_estimate=True)),
    }
    sections.append(charted("gpu", "GPU memory and KV cache", gpu, _gpu_note()))
    sections.append(_health(summary))
    sections.append(_failures(summary, requests))
    sections.append(_method(manifests))

    script, divs = embed.components(figures) if figures else ("", {})
    bokeh_js = resources.Resources(mode="inline", components=["bokeh"]).render_js()
    title = title or _title(targets, manifests)
    header = _header(title, manifests, results.interrupted)
    header += _sampled_banner(n_records, every)
    return render(title, header, sections, divs, script, bokeh_js)


# ---- sections -------------------------------------------------------------------------


def _sampled_banner(n_records: int, every: int) -> str:
    """What a reader of a long run's charts must know: they are drawn from a sample."""
    if every == 1:
        return ""
    return (
        f'<div class="banner warn" id="sampled">This run has {n_records:,} records: the '
        f"latency distributions and requests over time are drawn from every {every}th "
        f"request of each record file (about {n_records // every:,}), each counting "
        f"{every} times in the rates, and the client's KV estimate is left out (it reads "
        "every chunk; the KV-cache study's gpu_memory_data.json has it). The tables are "
        "exact.</div>"
    )


def _manifests(results: Results) -> list[tuple[str, dict[str, Any]]]:
    """(label, manifest) of each run: one, or each run of a comparison."""
    m = results.manifest
    if m.get("kind") == "comparison":
        return [(r.get("label", f"run{i + 1}"), r) for i, r in enumerate(m.get("runs", []))]
    return [("", m)]


def _title(targets: list[str], manifests: list[tuple[str, dict[str, Any]]]) -> str:
    kind = "comparison" if len(manifests) > 1 else manifests[0][1].get("kind", "run")
    what = ", ".join(targets) if targets else "no stage completed"
    return f"llmbench {str(kind).replace('_', ' ')}: {what}"


def _header(title: str, manifests: list[tuple[str, dict[str, Any]]], interrupted: bool) -> str:
    lines = []
    for label, m in manifests:
        host = m.get("host") or {}
        bits = [
            f"{label}: " if label else "",
            f"llmbench {m.get('llmbench_version', '?')}",
            f" · {str(m.get('kind', '')).replace('_', ' ')}",
            f" · started {m.get('started_at', '?')}",
            f" · host {host.get('hostname', '?')} ({host.get('platform', '?')}, "
            f"{host.get('cpu_count', '?')} cores, Python {host.get('python', '?')})",
        ]
        lines.append(f'<div class="meta">{esc("".join(bits))}</div>')
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    lines.append(
        f'<div class="meta">report written {esc(now)} by llmbench {esc(_core.__version__)}</div>'
    )
    out = f"<h1>{esc(title)}</h1>{''.join(lines)}"
    if interrupted or any(m.get("interrupted") for _, m in manifests):
        out += (
            '<div class="banner bad" id="interrupted">This run was interrupted (Ctrl-C): it holds '
            "the stages and requests completed before it stopped; a stage cut short is marked "
            "<code>interrupted</code> in the summary.</div>"
        )
    warnings = [w for _, m in manifests for w in m.get("warnings", [])]
    if warnings:
        items = "".join(f"<li>{esc(w)}</li>" for w in warnings[:MAX_WARNINGS])
        more = len(warnings) - MAX_WARNINGS
        if more > 0:
            items += f"<li>… and {more} more (metrics_data.json lists them all)</li>"
        out += f'<div class="banner warn" id="warnings">Warnings:<ul>{items}</ul></div>'
    return out


def _measured(manifests: list[tuple[str, dict[str, Any]]]) -> Section:
    """Targets (as described, never with a key), settings, the servers' own descriptions."""
    pd = _deps.pandas()
    parts = []
    for label, m in manifests:
        if label:
            parts.append(f"<h3>{esc(label)}</h3>")
        targets = pd.DataFrame(m.get("targets") or [])
        if len(targets):
            cols = ["name", "url", "api", "model", "force_output_len", "api_key_set"]
            parts.append(table(targets.astype(object), cols, table_id=f"t-targets{label}"))
        settings = m.get("settings") or {}
        parts.append(
            definitions(
                [(k, _setting_text(v)) for k, v in settings.items()]
                + [
                    ("prompts", _prompts_text(m.get("prompts"))),
                    ("model architecture (KV)", (m.get("model_arch") or {}).get("formula")),
                    ("SLO", _setting_text(m.get("slo"))),
                    ("GPUs sampled", _gpus_text(m)),
                ]
            )
        )
        for name, server in (m.get("servers") or {}).items():
            parts.append(
                definitions(
                    [
                        (f"{name}: model served", _served_models(server)),
                        (f"{name}: server version", _server_version(server)),
                    ]
                )
            )
            parts.append(json_block(f"{name}: what the server reported about itself", server))
        scrape = (m.get("telemetry") or {}).get("scrape") or {}
        for name, s in scrape.items():
            if s.get("info"):
                parts.append(json_block(f"{name}: settings from its /metrics", s["info"]))
    return Section("measured", "What was measured", "".join(parts))


def _setting_text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, (list, dict)):
        return json.dumps(v, default=str)
    return str(v)


def _prompts_text(p: Any) -> str:
    if not isinstance(p, dict):
        return _setting_text(p)
    return ", ".join(f"{k} {v}" for k, v in p.items())


def _gpus_text(m: dict[str, Any]) -> str:
    gpus = (m.get("telemetry") or {}).get("gpus") or []
    return ", ".join(f"{g.get('index')}: {g.get('name')}" for g in gpus)


def _served_models(server: Any) -> str:
    models = (server or {}).get("models") or {}
    rows = models.get("data") if isinstance(models, dict) else None
    names = []
    for r in rows or []:
        if isinstance(r, dict) and r.get("id"):
            ctx = r.get("max_model_len")
            names.append(f"{r['id']}" + (f" (max_model_len {ctx})" if ctx else ""))
    info = (server or {}).get("info")
    if not names and isinstance(info, dict) and info.get("model_id"):
        names.append(str(info["model_id"]))
    return ", ".join(names)


def _server_version(server: Any) -> str:
    s = server or {}
    for v in (s.get("version"), s.get("info")):
        if isinstance(v, dict) and v.get("version"):
            return str(v["version"])
    return ""


def _summary(summary: Any) -> Section:
    if not len(summary):
        return Section("summary", "Summary", '<p class="note">No stage completed.</p>')
    main = ["target", *data.stage_columns(summary)]
    main += [
        c
        for c in KEY_COLUMNS + EXTRA_SUMMARY_COLUMNS
        if c not in [*main, "batch_size", "target_rate"]
        and c in summary
        and summary[c].notna().any()
    ]
    if summary["interrupted"].any() if "interrupted" in summary else False:
        main.append("interrupted")
    repeats = int(summary["repeats"].max()) if "repeats" in summary else 1
    note = (
        f'<p class="note">Each row is the mean over {repeats} repeats; under a headline value, '
        "its 95% interval (Student's t over repeats).</p>"
        if repeats > 1
        else '<p class="note">One run per stage (no repeats, so no intervals: run with '
        "<code>repeats=</code> for them).</p>"
    )
    body = note + table(summary, main, table_id="t-summary", intervals=repeats > 1)
    body += (
        f"<details><summary>Every summary column ({len(summary.columns)}; as in "
        "metrics_summary.csv)</summary>"
        + table(summary, list(summary.columns), table_id="t-summary-all")
        + "</details>"
    )
    return Section("summary", "Summary", body)


def _comparison(results: Results, targets: list[str]) -> Section:

    summary = results.summary
    parts = ['<p class="note">One column per target, one row per stage.</p>']
    for metric, label in COMPARED:
        if metric not in summary or summary[metric].isna().all():
            continue
        # `comparison_table`'s (metric or its interval, target) columns, named as the
        # table's interval lookup wants them: `<target>`, `<target>_ci_low`, ...
        wide = comparison_table(results, [metric])
        wide.columns = [f"{t}{m.removeprefix(metric)}" for m, t in wide.columns]
        x = wide.index.name
        parts.append(f"<h3>{esc(label)}</h3>")
        parts.append(
            table(wide.reset_index(), [x, *targets], table_id=f"t-cmp-{metric}", intervals=True)
        )
    return Section("comparison", "Side by side", "".join(parts))


def _ab(results: Results, targets: list[str]) -> Section:
    """A/B verdicts between the two targets (the first is A), as `compare_ab` computes."""

    a, b = targets
    try:
        r = compare_ab(results, a, b)
    except Exception as e:  # the report must not fail for want of an A/B table
        return Section("ab", f"A/B: {b} against {a}", f'<p class="note">No A/B table: {esc(e)}</p>')
    tab = r.public_table()
    cols = [
        *data.stage_columns(tab),
        "metric",
        "a",
        "b",
        "diff_pct",
        "ci_low_pct",
        "ci_high_pct",
        "p_value",
        "verdict",
        "better",
        "needed_for_5pct",
    ]
    statements = "".join(f"<li>{esc(s)}</li>" for s in r.statements())
    body = (
        f'<p class="note">A = {esc(a)}, B = {esc(b)}; diff_pct is B − A in percent of A, with '
        f"its {r.level:.0%} interval. Blocks: {int(results.repeats['repeat'].max()) + 1} "
        "(A B B A …); shaded rows: a difference this run resolves. Method: "
        "docs/comparisons.md.</p>"
        f"<ul>{statements}</ul>" + table(tab, cols, table_id="t-ab", row_class=_verdict_class)
    )
    return Section("ab", f"A/B: {b} against {a}", body)


def _verdict_class(row: dict[str, Any]) -> str:
    better = row.get("better")
    return "" if not isinstance(better, str) or not better else "resolved"


def _health(summary: Any) -> Section:
    cols = [c for c in HEALTH_COLUMNS if c in summary]
    if not len(summary) or not cols:
        return Section("health", "Client health", '<p class="note">No stage to judge.</p>')
    flagged = (
        int((summary["client_trustworthy"] == 0).sum()) if "client_trustworthy" in summary else 0
    )
    verdict = (
        f'<div class="banner warn">{flagged} of {len(summary)} stages were not measured '
        "trustworthily: the client itself may have added latency (reasons below; see "
        "docs/fidelity.md).</div>"
        if flagged
        else f'<p class="note">All {len(summary)} stages: the client kept up (task lag, CPU and '
        "send lag within their limits, and the load within this host's calibration where one "
        "was remembered).</p>"
    )
    return Section(
        "health",
        "Client health",
        verdict
        + table(summary, ["target", *data.stage_columns(summary), *cols], table_id="t-health"),
    )


def _failures(summary: Any, requests: Any) -> Section:
    tab, messages = data.failures(summary, requests)
    if tab is None and not messages:
        return Section("failures", "Failures", '<p class="note">No request failed.</p>')
    body = table(tab, table_id="t-failures") if tab is not None else ""
    for kind, msgs in messages.items():
        items = "".join(f"<li><code>{esc(m)}</code></li>" for m in msgs)
        body += f"<h3>{esc(kind)}</h3><ul>{items}</ul>"
    return Section("failures", "Failures", body)


def _method(manifests: list[tuple[str, dict[str, Any]]]) -> Section:
    parts = []
    for label, m in manifests:
        rep = m.get("repeats")
        if rep:
            parts.append(
                definitions([(f"{label} repeats: {k}" if label else k, v) for k, v in rep.items()])
            )
        clock = m.get("clock") or {}
        if clock.get("note"):
            parts.append(f'<p class="note">{esc(clock["note"])}</p>')
    limits = data.LIMITS
    parts.append(
        '<p class="note">What the charts draw, so that a long run\'s report stays small: '
        f"latency distributions as {len(data.CDF_LEVELS)} quantiles per stage; requests over "
        f"time in at most {limits['time_bins']} time bins per target; TTFT points, at most "
        f"{limits['sample_points']:,} requests per target drawn at random (seed 0); GPU and KV "
        f"series in at most {limits['series_points']:,} time buckets (memory and KV by their "
        "maximum in the bucket, utilisation and power by the mean). The tables are exact; every "
        "request is in the run's record files.</p>"
    )
    return Section("method", "How these numbers were made", "".join(parts))


def _load_note() -> str:
    return (
        '<p class="note">Closed loop: x is the batch size (requests kept in flight), on a log '
        "scale; open loop: the achieved request rate. Bands: the 95% interval over repeats.</p>"
    )


def _breakdown_note(results: Any) -> str:
    sources = results.manifest.get("breakdown") or {}
    said = "; ".join(f"{html.escape(t)}: {html.escape(s)}" for t, s in sources.items())
    return (
        '<p class="note">Each stage\'s mean TTFT, and its mean end-to-end latency, split by '
        "the server's own account: time queued, prefill (and decode), and on top the rest "
        "(the network, the server's front end and the client). Per request where the "
        "server said its times (vLLM with include_metrics, llama.cpp, llmbench's own "
        "servers), else from the server's histograms over the stage. "
        + (f"Source: {said}. " if said else "")
        + "docs/breakdown.md.</p>"
    )


def _cdf_note() -> str:
    return (
        '<p class="note">Successful requests of each stage (repeats pooled); x on a log scale. '
        "Click a legend entry to hide its curve.</p>"
    )


def _time_note() -> str:
    return (
        f'<p class="note">Completions per second in at most {data.LIMITS["time_bins"]} time '
        f"bins; the points are the TTFT of at most {data.LIMITS['sample_points']:,} requests "
        "per target drawn at random (right axis).</p>"
    )


def _gpu_note() -> str:
    return (
        '<p class="note">NVML samples (when the run sampled GPUs: <code>gpu=</code>, '
        "<code>--gpu</code>), the server's own KV figure from its /metrics, and the client's "
        "estimate from the requests in flight.</p>"
    )


__all__ = ["REPORT_FILE", "report_html", "write_report"]
