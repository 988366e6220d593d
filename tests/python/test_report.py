"""The HTML report (`Results.to_html`, `llmbench report`), opened in a real headless
Chromium with the network off: no console error, no request leaving the page, every section
drawn (screenshots that are not blank), and the tables' numbers equal to
`metrics_summary.csv`. Runs with failures, one request, 100,000 requests, no telemetry, an
interruption, two targets with repeats (A/B), several runs (a comparison), and planted
secrets."""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import llmbench
import numpy as np
import pandas as pd
import pytest
from conftest import popen, run_cli
from llmbench.report import charts
from llmbench.report import data as report_data


def _chromium() -> str | None:
    return os.environ.get("LLMBENCH_CHROMIUM") or shutil.which("chromium")


def _have_browser() -> bool:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return False
    return _chromium() is not None


if not _have_browser():
    if os.environ.get("LLMBENCH_REQUIRE_BROWSER") == "1":
        raise RuntimeError(
            "LLMBENCH_REQUIRE_BROWSER=1 but Playwright or Chromium is missing "
            "(pip install '.[test]'; scripts/install-browser.sh)"
        )
    pytest.skip("no headless Chromium (scripts/install-browser.sh)", allow_module_level=True)

#: Every section a report of a completed closed-loop run has.
SECTIONS = ["measured", "summary", "charts", "latency", "timeline", "gpu", "health", "failures"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
        yield b
        b.close()


class Page:
    """A report as the browser saw it."""

    def __init__(self, page: Any, messages: list[str], requests: list[str]) -> None:
        self.page = page
        self.messages = messages
        self.requests = requests

    def table(self, table_id: str) -> list[dict[str, tuple[str, str]]]:
        """Rows of a table: column -> (exact value, shown text)."""
        rows = self.page.eval_on_selector_all(
            f"#{table_id} tbody tr",
            "rows => rows.map(r => Array.from(r.querySelectorAll('td')).map("
            "td => [td.dataset.col, td.dataset.value, td.firstChild ? td.firstChild.textContent"
            " : '']))",
        )
        return [{c: (v, t) for c, v, t in row} for row in rows]

    def section_ids(self) -> list[str]:
        return self.page.eval_on_selector_all("section", "s => s.map(x => x.id)")

    def text(self, selector: str = "body") -> str:
        return self.page.inner_text(selector)


def open_report(browser: Any, path: Path) -> Page:
    """Open `path` offline; wait for the charts to be drawn."""
    context = browser.new_context(offline=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    messages: list[str] = []
    requests: list[str] = []
    page.on(
        "console",
        lambda m: (
            messages.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None
        ),
    )
    page.on("pageerror", lambda e: messages.append(f"pageerror: {e}"))
    page.on("requestfailed", lambda r: messages.append(f"request failed: {r.url}"))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(path.resolve().as_uri())
    if page.locator(".chart").count():
        page.wait_for_function(
            "() => Bokeh.documents.length > 0 && Bokeh.documents.every(d => d.is_idle)"
        )
    return Page(page, messages, requests)


def _not_blank(png: bytes, min_colors: int = 3) -> bool:
    from PIL import Image

    im = Image.open(io.BytesIO(png)).convert("RGB")
    arr = np.asarray(im)
    colors = len(np.unique(arr.reshape(-1, 3), axis=0))
    return colors >= min_colors and float(arr.std()) > 2.0


def check_page(browser: Any, path: Path, sections: list[str] = SECTIONS) -> Page:
    """What every report must pass: it opened offline with no console error or warning,
    nothing was requested but the file itself, the named sections are there and drawn,
    and each chart's canvas holds a picture."""
    p = open_report(browser, path)
    assert p.messages == [], p.messages
    assert p.requests == [path.resolve().as_uri()], p.requests
    ids = p.section_ids()
    for s in sections:
        assert s in ids, (s, ids)
        shot = p.page.locator(f"section#{s}").screenshot()
        assert _not_blank(shot), f"section {s} is blank"
    charts = p.page.locator(".chart")
    for i in range(charts.count()):
        chart = charts.nth(i)
        chart.scroll_into_view_if_needed()
        # A drawn chart: lines, points and text in many colours, not an empty frame.
        assert _not_blank(chart.screenshot(), min_colors=40), f"chart {i} is blank"
    return p


def assert_table_equals_csv(p: Page, table_id: str, csv: Path) -> None:
    """Every cell of the page's table holds exactly the CSV's value, and shows it
    rounded no further than the displayed digits allow."""
    frame = pd.read_csv(csv)
    rows = p.table(table_id)
    assert len(rows) == len(frame)
    checked = 0
    for row, expected in zip(rows, frame.to_dict(orient="records"), strict=True):
        for col, (exact, shown) in row.items():
            v = expected[col]
            if isinstance(v, float) and np.isnan(v):
                # Missing, or an empty text (the CSV cannot tell them apart).
                assert exact == "" and shown in ("–", ""), (col, exact, shown)
            elif isinstance(v, (bool, np.bool_)):
                assert exact == str(bool(v)), (col, exact, v)
            elif isinstance(v, (int, float, np.integer, np.floating)):
                assert float(exact) == float(v), (col, exact, v)
                if shown not in ("∞", "−∞"):
                    seen = float(shown.replace(",", ""))
                    assert abs(seen - v) <= max(0.005 + 1e-12, 0.006 * abs(v)), (col, shown, v)
            else:
                assert exact == str(v), (col, exact, v)
            checked += 1
    assert checked >= len(frame) * 10


# ---- runs -----------------------------------------------------------------------------


def _sweep(target: Any, out: Path, **kw: Any) -> llmbench.Results:
    kw.setdefault("batch_sizes", [1, 4])
    kw.setdefault("requests_per_stage", 12)
    kw.setdefault("max_tokens", 8)
    return llmbench.run_sweep(target, out_dir=out, progress=False, **kw)


@pytest.fixture(scope="module")
def ab_run(tmp_path_factory) -> Path:
    """Two targets (B's first token 30 ms later), two repeats: intervals and A/B."""
    out = tmp_path_factory.mktemp("ab")
    with (
        llmbench.SimServer(ttft_ms=20, itl_ms=4) as a,
        llmbench.SimServer(ttft_ms=50, itl_ms=4) as b,
    ):
        _sweep([a.target(name="fast"), b.target(name="slow")], out, repeats=2)
    return out


def test_report_of_two_targets_with_repeats_shows_intervals_and_ab(browser, ab_run):
    path = ab_run / "report.html"
    p = check_page(browser, path, [*SECTIONS, "comparison", "ab"])
    assert_table_equals_csv(p, "t-summary-all", ab_run / "metrics_summary.csv")
    # The headline table's values and intervals are the CSV's too.
    csv = pd.read_csv(ab_run / "metrics_summary.csv")
    lows = p.page.eval_on_selector_all(
        "#t-summary td[data-col=ttft_p50_ms] .ci", "s => s.map(x => x.dataset.ciLow)"
    )
    assert [float(v) for v in lows] == list(csv["ttft_p50_ms_ci_low"])
    # A/B: every TTFT p50 row resolves B (slow) as worse, as the servers were set.
    ab = p.table("t-ab")
    ttft = [r for r in ab if r["metric"][0] == "ttft_p50_ms"]
    assert len(ttft) == 2
    for r in ttft:
        assert float(r["diff_pct"][0]) > 30 and r["better"][0] == "A", r
    assert "slow's TTFT p50" in p.text("#ab")


def test_report_of_a_run_with_failures_counts_them_by_kind(browser, tmp_path):
    with llmbench.SimServer(
        ttft_ms=5, itl_ms=2, fault_rate=0.4, faults=["http_500", "reset_mid_stream"]
    ) as sim:
        res = _sweep(sim.target(), tmp_path, requests_per_stage=30, warmup_requests=0)
    assert res.summary["n_failed"].sum() > 0
    p = check_page(browser, tmp_path / "report.html")
    assert_table_equals_csv(p, "t-summary-all", tmp_path / "metrics_summary.csv")
    failures = p.table("t-failures")
    for row, expected in zip(failures, res.summary.to_dict(orient="records"), strict=True):
        assert int(row["n_failed"][0]) == expected["n_failed"]
        kinds = {
            k: int(float(v[0]))
            for k, v in row.items()
            if k not in {"target", "batch_size", "n_failed"}
        }
        assert sum(kinds.values()) == expected["n_failed"]
        for kind, n in kinds.items():
            assert n == expected[f"errors_{kind}"]
    text = p.text("#failures")
    assert "http_status" in text and "500" in text


def test_report_of_a_single_request(browser, tmp_path):
    with llmbench.SimServer(ttft_ms=5, itl_ms=2) as sim:
        _sweep(sim.target(), tmp_path, batch_sizes=[1], requests_per_stage=1, warmup_requests=0)
    p = check_page(browser, tmp_path / "report.html")
    assert_table_equals_csv(p, "t-summary-all", tmp_path / "metrics_summary.csv")
    assert len(p.table("t-summary")) == 1


def test_report_without_telemetry_has_no_nan_and_says_what_is_missing(browser, tmp_path):
    # No GPU (none here), no server metrics: the columns that need them are NaN.
    with llmbench.SimServer(ttft_ms=5, itl_ms=2) as sim:
        res = _sweep(sim.target(), tmp_path, server_metrics=False)
    assert res.summary.isna().any().any()
    p = check_page(browser, tmp_path / "report.html")
    assert_table_equals_csv(p, "t-summary-all", tmp_path / "metrics_summary.csv")
    import re

    assert not re.search(r"\bnan\b", p.text(), re.IGNORECASE)
    # The client's KV estimate is still drawn; no NVML chart.
    assert p.page.locator("#gpu .chart").count() == 1


def test_report_of_100000_requests_stays_small_and_fast(browser, tmp_path, monkeypatch):
    with llmbench.SimServer(
        ttft_ms=0.5, itl_ms=0.2, ttft_per_running_ms=0, itl_per_running_ms=0, max_batch=512
    ) as sim:
        res = llmbench.run_sweep(
            sim.target(api="completions"),
            batch_sizes=[64, 256],
            requests_per_stage=50_000,
            max_tokens=4,
            out_dir=tmp_path,
            progress=False,
            report=False,
            server_metrics=False,
        )
    assert int(res.summary["n_requests"].sum()) == 100_000
    assert not (tmp_path / "report.html").exists()  # report=False
    start = time.monotonic()
    path = llmbench.Results.load(tmp_path).to_html(tmp_path / "report.html")
    took = time.monotonic() - start
    size = path.stat().st_size
    # Bounds, not timings: a run's report holds quantiles, bins and a sample, never every
    # request (1.5 MB and under 2 s on the 2-core dev VM; docs/report.md).
    assert size < 2_500_000, size
    assert took < 30, took
    p = check_page(browser, path)
    assert_table_equals_csv(p, "t-summary-all", tmp_path / "metrics_summary.csv")
    assert "at most 2,000 requests per target drawn at random" in p.text("#timeline")
    assert "sampled" not in p.section_ids() and not p.page.locator("#sampled").count()
    # Past the records limit the charts come from every k-th record, and the page says so.
    monkeypatch.setattr(report_data, "RECORDS_LIMIT", 10_000)
    sampled = check_page(browser, res.to_html(tmp_path / "sampled.html"))
    assert "every 11th request" in sampled.text("#sampled")
    assert_table_equals_csv(sampled, "t-summary-all", tmp_path / "metrics_summary.csv")


def test_a_sampled_read_is_every_kth_record_of_each_file(tmp_path):
    with llmbench.SimServer(ttft_ms=1, itl_ms=1) as sim:
        _sweep(sim.target(), tmp_path, requests_per_stage=25, repeats=2)
    res = llmbench.Results.load(tmp_path)  # records read from the files
    full = res.read_requests(["id", "stage", "repeat"])
    for k in (1, 3, 7):
        part = res.read_requests(["id", "stage", "repeat"], every=k)
        expected = pd.concat([g.iloc[::k] for _, g in full.groupby("repeat", sort=True)])
        assert part.to_dict("list") == expected.reset_index(drop=True).to_dict("list")
        # The same from the records in memory.
        frame = llmbench.records.RecordFrame(res.all_requests, res.chunk_arrays)
        same = frame.read(["id", "stage", "repeat"], warmup=False, every=k)
        assert same.to_dict("list") == part.to_dict("list")


INTERRUPTED = [
    "metrics",
    "--embedded",
    "sim",
    "--sim-ttft-ms",
    "20",
    "--sim-itl-ms",
    "20",
    "--batch-sizes",
    "4,8",
    "--requests",
    "100000",
    "--max-tokens",
    "40",
    "--quiet",
]


def test_report_of_a_run_interrupted_with_ctrl_c(browser, tmp_path):
    proc = popen(
        [sys.executable, "-m", "llmbench.cli", *INTERRUPTED, "--out", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(4)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    p = check_page(browser, tmp_path / "report.html")
    assert "interrupted" in p.text("#interrupted")
    assert_table_equals_csv(p, "t-summary-all", tmp_path / "metrics_summary.csv")


def test_planted_api_key_and_url_password_appear_nowhere(browser, tmp_path, monkeypatch):
    key = "sk-REPORT-PLANTED-51"
    password = "pw-REPORT-PLANTED-77"
    monkeypatch.setenv("LLMBENCH_API_KEY", key)
    with llmbench.SimServer(ttft_ms=5, itl_ms=2) as sim:
        url = sim.url.replace("http://", f"http://bench:{password}@")
        target = llmbench.OpenAI(url, model="llmbench-sim", name="secret-test")
        assert target.api_key == key
        _sweep(target, tmp_path, repeats=2)
    html = (tmp_path / "report.html").read_text()
    assert key not in html and password not in html
    check_page(browser, tmp_path / "report.html")


def test_cli_writes_the_report_by_default_and_not_with_no_report(tmp_path):
    on, off = tmp_path / "on", tmp_path / "off"
    base = ["metrics", "--embedded", "sim", "--batch-sizes", "1", "--requests", "4", "--quiet"]
    r = run_cli(*base, "--out", str(on))
    assert r.returncode == 0, r.stderr
    assert (on / "report.html").is_file() and "report.html" in r.stdout
    r = run_cli(*base, "--out", str(off), "--no-report")
    assert r.returncode == 0, r.stderr
    assert not (off / "report.html").exists() and (off / "metrics_summary.csv").is_file()


def test_kv_cache_study_writes_its_report(browser, tmp_path):
    r = run_cli(
        "kv-cache", "--batch-sizes", "1,4", "--requests", "8", "--quiet", "--out", str(tmp_path)
    )
    assert r.returncode == 0, r.stderr
    p = check_page(browser, tmp_path / "report.html")
    # The scripted server stands in for LLaMA-2-7B: the KV estimate is drawn in GiB (the
    # legend is on the canvas; its text is in the page's chart data).
    assert p.page.locator("#gpu .chart").count() >= 1
    assert "client estimate (GiB)" in (tmp_path / "report.html").read_text()


def test_llmbench_report_of_several_runs_is_one_comparison(browser, ab_run, tmp_path):
    with llmbench.SimServer(ttft_ms=10, itl_ms=3) as sim:
        _sweep(sim.target(name="third"), tmp_path / "third")
    out = tmp_path / "cmp.html"
    r = run_cli("report", str(ab_run), str(tmp_path / "third"), "-o", str(out))
    assert r.returncode == 0, r.stderr
    p = check_page(browser, out, [*SECTIONS, "comparison"])
    cmp = p.table("t-cmp-output_tok_s")
    assert len(cmp) == 2 and {"fast", "slow", "third"} <= set(cmp[0])
    # Three targets: no A/B section, which compares two.
    assert "ab" not in p.section_ids()
    # One folder: its report is rewritten in place.
    r = run_cli("report", str(tmp_path / "third"))
    assert r.returncode == 0 and (tmp_path / "third" / "report.html").is_file()


def test_report_with_conversation_turns_draws_ttft_by_turn(browser, tmp_path):
    with llmbench.SimServer(ttft_ms=5, itl_ms=2) as sim:
        res = _sweep(sim.target(), tmp_path, batch_sizes=[2], requests_per_stage=12)
    every = res.all_requests.copy()
    # Records as a conversation run writes them: a turn index per request.
    every["turn"] = np.arange(len(every)) % 3
    res.records = llmbench.records.RecordFrame(every, res.chunk_arrays)
    res._all = None
    turns = report_data.by_turn(res.read_requests([*report_data.REQUEST_COLUMNS, "turn"]))
    measured = every[~every["warmup"]]
    for t in range(3):
        expect = np.quantile(measured.loc[measured["turn"] == t, "ttft_ms"], 0.5)
        assert turns.loc[turns["turn"] == t, "ttft_p50_ms"].item() == pytest.approx(expect)
    path = res.to_html(tmp_path / "turns.html")
    p = check_page(browser, path, [*SECTIONS, "turns"])
    assert len(p.table("t-turns")) == 3


def test_cdf_quantiles_are_the_stage_quantiles():
    # A known answer: 1..1000 ms in one stage.
    requests = pd.DataFrame(
        {
            "target": "t",
            "stage": 0,
            "ok": True,
            "ttft_ms": np.arange(1, 1001, dtype=float),
            "tpot_ms": 2.0,
            "e2e_ms": np.nan,
        }
    )
    cdf = report_data.latency_cdfs(requests, {("t", 0): "batch 1"})
    ttft = cdf[cdf["metric"] == "ttft_ms"].set_index("q")["value"]
    assert ttft.loc[0.0] == 1 and ttft.loc[1.0] == 1000
    assert ttft.loc[0.5] == pytest.approx(500.5)
    assert ttft.loc[0.999] == pytest.approx(999.001)
    assert set(cdf["metric"]) == {"ttft_ms", "tpot_ms"}  # all-NaN E2E: no curve


def test_requests_over_time_bins_count_every_request():
    n = 10_000
    sent = np.arange(n, dtype=np.int64) * 1_000_000  # one per ms for 10 s
    requests = pd.DataFrame(
        {
            "target": "t",
            "ok": np.arange(n) % 10 != 0,
            "t_sent_ns": sent,
            "t_done_ns": sent + 50_000_000,
            "n_out": 4,
        }
    )
    bins = report_data.requests_over_time(requests, t0=0)
    assert len(bins) == report_data.LIMITS["time_bins"]
    width = float(bins["t_s"].diff().iloc[1])
    assert (bins["done_per_s"] * width).sum() == pytest.approx(n * 0.9)
    assert (bins["failed_per_s"] * width).sum() == pytest.approx(n * 0.1)
    assert (bins["out_tok_s"] * width).sum() == pytest.approx(4 * n)
    # 50 ms each at one per ms: 50 in flight in the steady middle.
    assert bins["in_flight"].iloc[len(bins) // 2] == 50


def test_gpu_timeline_of_real_nvml_samples_is_bucketed_and_drawn(browser, tmp_path):
    import gzip
    import json

    from conftest import REPO

    # 119,286 NVML samples of a real H100 KV-cache study (docs/gpu_telemetry.md), moved
    # onto this run's clock: more than a chart should carry.
    study = json.loads(gzip.open(REPO / "docs/data/h100_gpu_memory_data.json.gz").read())
    gpu = pd.DataFrame(study["nvml"]["samples"])
    with llmbench.SimServer(ttft_ms=5, itl_ms=2) as sim:
        res = _sweep(sim.target(), tmp_path)
    t0 = res.run_start_ns()
    t = gpu["t_ns"].astype("int64")
    gpu["t_ns"] = t - t.min() + t0
    res.attach_telemetry({"gpu": gpu})
    series = report_data.gpu_series(res, t0)
    assert len(gpu) > 50_000
    assert len(series) <= report_data.LIMITS["series_points"] * gpu["gpu"].nunique()
    # Memory is bucketed by its maximum: the peak survives.
    peak = gpu["mem_used_bytes"].max() / 2**30
    assert series["mem_used_gib"].max() == pytest.approx(peak)
    p = check_page(browser, res.to_html(tmp_path / "gpu.html"))
    assert p.page.locator("#gpu .chart").count() == 2  # NVML memory, and the KV estimate


def test_report_breaks_ttft_into_the_servers_queue_prefill_and_the_rest(browser, tmp_path):
    # One slot for two clients: at batch 2 the TTFT doubles, and the bars say it queued.
    with llmbench.SimServer(ttft_ms=20, itl_ms=2, max_batch=1) as sim:
        res = _sweep(
            sim.target(),
            tmp_path,
            batch_sizes=[1, 2],
            warmup_requests=0,
            cooldown_s=0.3,
            server_metrics=50,
        )
    parts = charts.ttft_parts(res.summary)
    keys = [k for k, _ in charts.TTFT_PARTS]
    # The stacked parts add up to the client's mean TTFT of each stage.
    np.testing.assert_allclose(
        parts[keys].sum(axis=1), res.summary["ttft_mean_ms"].to_numpy(float), rtol=1e-9
    )
    by_batch = parts.set_index("x")
    assert by_batch.loc[2, "queue"] > 20 > by_batch.loc[1, "queue"]
    # End to end: queue, prefill, decode and the rest add up to the client's mean.
    e2e = charts.time_parts(res.summary, "e2e")
    keys = [k for k, _ in charts.BREAKDOWN_PARTS["e2e"]]
    np.testing.assert_allclose(
        e2e[keys].sum(axis=1), res.summary["e2e_mean_ms"].to_numpy(float), rtol=1e-9
    )
    p = check_page(browser, res.to_html(tmp_path / "r.html"), [*SECTIONS, "breakdown"])
    section = p.page.locator("section#breakdown")
    assert "Nothing to draw" not in section.inner_text()
    assert "per request" in section.inner_text()
    assert section.locator(".chart").count() == 2


def test_breakdown_chart_keeps_stages_at_the_same_load_apart_and_skips_servers_without_times():
    from bokeh.embed import components

    summary = pd.DataFrame(
        {
            "target": ["a", "a", "b"],
            "stage": [0, 1, 0],
            "batch_size": [4, 4, 4],
            "ttft_mean_ms": [30.0, 31.0, 12.0],
            "server_queue_mean_ms": [5.0, 6.0, np.nan],
            "server_prefill_mean_ms": [20.0, 20.0, np.nan],
            "server_ttft_mean_ms": [26.0, np.nan, np.nan],
        }
    )
    parts = charts.ttft_parts(summary)
    # Target b has no server times: no bar. A run saved before the breakdown columns is
    # split by its histogram means: the rest is the client's TTFT beyond queue + prefill.
    assert list(parts["target"]) == ["a", "a"]
    assert parts["rest"].tolist() == [5.0, 5.0]
    fig = charts.breakdown_chart(summary)
    assert len(set(fig.x_range.factors)) == 2
    components(fig)  # Bokeh's own validation: duplicate factors would raise here
    # No queue time (llama.cpp): drawn as 0, its time in the rest; no prefill: no chart.
    no_queue = charts.ttft_parts(summary.drop(columns=["server_queue_mean_ms"]))
    assert no_queue["queue"].tolist() == [0.0, 0.0] and no_queue["rest"].tolist() == [10.0, 11.0]
    assert charts.breakdown_chart(summary.drop(columns=["server_prefill_mean_ms"])) is None
