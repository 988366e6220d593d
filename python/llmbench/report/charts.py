"""The report's interactive charts, drawn with Bokeh from the bounded frames of
`report.data` (hover for values, drag to pan, wheel to zoom, click a legend entry to hide
a line). Each function returns one Bokeh figure, or None when there is nothing to draw.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _deps
from ..plots import x_axis

#: Summary metrics drawn against batch size or rate: (key, title, y label,
#: [(column, series label)]). With repeats, a column with `_ci_low`/`_ci_high` gets a band.
SUMMARY_CHARTS: list[tuple[str, str, str, list[tuple[str, str]]]] = [
    ("throughput", "Output throughput", "output tokens / s", [("output_tok_s", "")]),
    ("ttft", "Time to first token", "TTFT (ms)", [("ttft_p50_ms", "p50"), ("ttft_p99_ms", "p99")]),
    (
        "itl",
        "Inter-token latency and time per output token",
        "ms per output token",
        [("itl_mean_ms", "ITL mean"), ("tpot_mean_ms", "TPOT mean"), ("itl_p99_ms", "ITL p99")],
    ),
    ("e2e", "End-to-end latency", "E2E (ms)", [("e2e_p50_ms", "p50"), ("e2e_p99_ms", "p99")]),
    (
        "cost",
        "Cost per million output tokens",
        "USD per 1M output tokens",
        [("usd_per_1m_output_tokens", "")],
    ),
]

_DASHES = ("solid", "dashed", "dotted", "dotdash")
_TOOLS = "pan,wheel_zoom,box_zoom,reset,save"


def colors_for(values: Any) -> dict[Any, str]:
    """A distinguishable colour (Bokeh's Category10, repeated past ten) for each distinct
    value, in order of first appearance."""
    colors = list(_deps.require("bokeh.palettes", "bokeh").Category10[10])
    return {v: colors[i % len(colors)] for i, v in enumerate(dict.fromkeys(values))}


def _figure(title: str, x_label: str, y_label: str, **kw: Any) -> Any:
    plotting = _deps.require("bokeh.plotting", "bokeh")
    p = plotting.figure(
        title=title,
        height=340,
        sizing_mode="stretch_width",
        tools=_TOOLS,
        toolbar_location="right",
        **kw,
    )
    p.xaxis.axis_label = x_label
    p.yaxis.axis_label = y_label
    return p


def _legend(p: Any) -> None:
    if p.legend:
        p.legend.click_policy = "hide"
        p.legend.location = "top_left"
        p.legend.label_text_font_size = "9pt"
        p.legend.background_fill_alpha = 0.7


def summary_chart(summary: Any, key: str) -> Any:
    """One `SUMMARY_CHARTS` metric against batch size or input length (a log axis labelled
    1, 2, 4 …) or, for open-loop stages, the achieved request rate; one line per target
    and series, a band for the 95% interval where there were repeats."""
    models = _deps.require("bokeh.models", "bokeh")
    _, title, y_label, series = next(s for s in SUMMARY_CHARTS if s[0] == key)
    series = [(c, label) for c, label in series if c in summary and summary[c].notna().any()]
    if not len(summary) or not series:
        return None
    x, x_label, words = x_axis(summary)
    if x == "sent_rate_req_s":
        p = _figure(f"{title} vs {words}", x_label, y_label)
    else:
        p = _figure(f"{title} vs {words}", x_label, y_label, x_axis_type="log")
        sizes = sorted({int(b) for b in summary[x].dropna()})
        p.xaxis.ticker = models.FixedTicker(ticks=sizes)
        p.xaxis.major_label_overrides = {s: str(s) for s in sizes}
    targets = list(dict.fromkeys(summary["target"]))
    # One target: a colour per series; several: a colour per target, a dash per series.
    one = len(targets) == 1
    colors = colors_for([c for c, _ in series] if one else targets)
    for target in targets:
        rows = summary[summary["target"] == target].sort_values(x)
        for (col, label), dash in zip(series, _DASHES, strict=False):
            color = colors[col if one else target]
            name = " ".join(
                s for s in (target if len(targets) > 1 or not label else "", label) if s
            )
            data = {"x": rows[x].to_numpy(float), "y": rows[col].to_numpy(float)}
            tips = [("target", target), (x, "@x{0,0.[00]}"), (label or col, "@y{0,0.[000]}")]
            if f"{col}_ci_low" in rows:
                data["low"] = rows[f"{col}_ci_low"].to_numpy(float)
                data["high"] = rows[f"{col}_ci_high"].to_numpy(float)
                tips.append(("95% interval", "@low{0,0.[000]} – @high{0,0.[000]}"))
                p.varea(
                    x="x",
                    y1="low",
                    y2="high",
                    source=models.ColumnDataSource(data),
                    fill_color=color,
                    fill_alpha=0.18,
                    legend_label=name or target,
                )
            source = models.ColumnDataSource(data)
            p.line(
                "x",
                "y",
                source=source,
                color=color,
                line_dash=dash,
                line_width=2,
                legend_label=name or target,
            )
            r = p.scatter("x", "y", source=source, color=color, size=7, legend_label=name or target)
            p.add_tools(models.HoverTool(renderers=[r], tooltips=tips))
    _legend(p)
    return p


def cdf_chart(cdfs: Any, metric: str, label: str) -> Any:
    """The distribution of one per-request latency: one curve per target and stage
    (quantiles, `report.data.CDF_LEVELS`), x on a log axis."""
    models = _deps.require("bokeh.models", "bokeh")
    rows = cdfs[cdfs["metric"] == metric] if cdfs is not None else None
    if rows is None or not len(rows):
        return None
    positive = rows["value"] > 0
    p = _figure(
        f"{label.split(' (')[0]}: distribution per stage",
        label,
        "fraction of requests at or below",
        x_axis_type="log" if positive.all() else "linear",
    )
    curves = list(dict.fromkeys(zip(rows["target"], rows["stage"], strict=True)))
    colors = colors_for(rows["target"])
    stages_of: dict[str, list[int]] = {}
    for target, stage in curves:
        stages_of.setdefault(target, []).append(stage)
    for target, stage in curves:
        g = rows[(rows["target"] == target) & (rows["stage"] == stage)]
        # Within a target, later (larger) stages are drawn darker.
        k = stages_of[target].index(stage)
        alpha = 0.35 + 0.65 * (k + 1) / len(stages_of[target])
        name = (
            f"{target} · {g['stage_label'].iloc[0]}"
            if len(colors) > 1
            else g["stage_label"].iloc[0]
        )
        src = models.ColumnDataSource(
            {"x": g["value"].to_numpy(float), "q": g["q"].to_numpy(float), "n": g["n"].to_numpy()}
        )
        r = p.line(
            "x",
            "q",
            source=src,
            color=colors[target],
            line_alpha=alpha,
            line_width=2,
            legend_label=name,
        )
        p.add_tools(
            models.HoverTool(
                renderers=[r],
                tooltips=[
                    ("curve", name),
                    ("value", "@x{0,0.[000]}"),
                    ("quantile", "@q{0.[000]}"),
                    ("requests", "@n"),
                ],
                mode="vline",
            )
        )
    _legend(p)
    p.legend.location = "bottom_right"
    return p


def over_time_chart(bins: Any, sample: Any) -> Any:
    """Requests over time: completions per second per target (lines), failures per second
    where any, and sampled requests' TTFT (points, right axis)."""
    models = _deps.require("bokeh.models", "bokeh")
    if bins is None or not len(bins):
        return None
    p = _figure("Requests over time", "time since the run started (s)", "requests / s")
    colors = colors_for(bins["target"])
    if sample is not None and len(sample):
        top = float(np.nanmax(sample["ttft_ms"])) if sample["ttft_ms"].notna().any() else 1.0
        p.extra_y_ranges = {"ttft": models.Range1d(0, top * 1.05 or 1.0)}
        p.add_layout(
            models.LinearAxis(y_range_name="ttft", axis_label="TTFT (ms), sampled"), "right"
        )
    for target in colors:
        g = bins[bins["target"] == target]
        src = models.ColumnDataSource({c: g[c].to_numpy() for c in g.columns if c != "target"})
        r = p.line(
            "t_s",
            "done_per_s",
            source=src,
            color=colors[target],
            line_width=2,
            legend_label=f"{target} completed/s",
        )
        p.add_tools(
            models.HoverTool(
                renderers=[r],
                tooltips=[
                    ("t (s)", "@t_s{0.0}"),
                    ("completed/s", "@done_per_s{0,0.0}"),
                    ("failed/s", "@failed_per_s{0,0.0}"),
                    ("in flight", "@in_flight"),
                    ("output tok/s", "@out_tok_s{0,0}"),
                ],
                mode="vline",
            )
        )
        if g["failed_per_s"].sum() > 0:
            p.line(
                "t_s",
                "failed_per_s",
                source=src,
                color="#d62728",
                line_dash="dashed",
                legend_label=f"{target} failed/s",
            )
        if sample is not None and len(sample):
            s = sample[sample["target"] == target]
            pts = models.ColumnDataSource(
                {
                    "t_s": s["t_s"].to_numpy(),
                    "ttft_ms": s["ttft_ms"].to_numpy(),
                    "stage": s["stage_label"].to_numpy(),
                }
            )
            r = p.scatter(
                "t_s",
                "ttft_ms",
                source=pts,
                y_range_name="ttft",
                color=colors[target],
                alpha=0.35,
                size=4,
                legend_label=f"{target} TTFT",
            )
            p.add_tools(
                models.HoverTool(
                    renderers=[r],
                    tooltips=[
                        ("stage", "@stage"),
                        ("sent at (s)", "@t_s{0.000}"),
                        ("TTFT (ms)", "@ttft_ms{0,0.0}"),
                    ],
                )
            )
    _legend(p)
    return p


def turn_chart(turns: Any) -> Any:
    """TTFT p50 and p90 by conversation turn, one line per target (runs with
    conversations)."""
    models = _deps.require("bokeh.models", "bokeh")
    if turns is None or not len(turns):
        return None
    p = _figure("TTFT by conversation turn", "turn", "TTFT (ms)")
    for target, color in colors_for(turns["target"]).items():
        g = turns[turns["target"] == target]
        src = models.ColumnDataSource({c: g[c].to_numpy() for c in g.columns if c != "target"})
        for col, dash in (("ttft_p50_ms", "solid"), ("ttft_p90_ms", "dashed")):
            r = p.line(
                "turn",
                col,
                source=src,
                color=color,
                line_dash=dash,
                line_width=2,
                legend_label=f"{target} {col[5:8]}",
            )
        tips = [("turn", "@turn"), ("requests", "@n"), ("TTFT p50", "@ttft_p50_ms{0,0.0}")]
        if "n_in_mean" in g:
            tips.append(("context tokens (mean)", "@n_in_mean{0,0}"))
        p.add_tools(models.HoverTool(renderers=[r], tooltips=tips, mode="vline"))
    _legend(p)
    return p


def gpu_chart(gpu: Any) -> Any:
    """GPU memory used over time per GPU (its total dotted), from NVML."""
    models = _deps.require("bokeh.models", "bokeh")
    if gpu is None or not len(gpu):
        return None
    p = _figure("GPU memory (NVML)", "time since the run started (s)", "GiB")
    for index, color in colors_for(gpu["gpu"]).items():
        g = gpu[gpu["gpu"] == index]
        src = models.ColumnDataSource({c: g[c].to_numpy() for c in g.columns})
        r = p.line(
            "t_s",
            "mem_used_gib",
            source=src,
            color=color,
            line_width=2,
            legend_label=f"GPU {index} used",
        )
        tips = [("t (s)", "@t_s{0.00}"), ("used (GiB)", "@mem_used_gib{0.00}")]
        tips += [(c, f"@{c}{{0.0}}") for c in ("util_gpu_pct", "power_w") if c in g]
        p.add_tools(models.HoverTool(renderers=[r], tooltips=tips, mode="vline"))
        total = g["mem_total_gib"].iloc[0]
        if total == total:
            p.add_layout(
                models.Span(
                    location=float(total), dimension="width", line_color=color, line_dash="dotted"
                )
            )
    _legend(p)
    return p


def kv_chart(kv: Any) -> Any:
    """KV-cache use over time: the server's own figure where its `/metrics` has one, and
    the client's estimate from the requests in flight."""
    models = _deps.require("bokeh.models", "bokeh")
    if kv is None or not len(kv):
        return None
    units = sorted(set(kv["unit"]))
    p = _figure("KV cache in use", "time since the run started (s)", " / ".join(units))
    keys = list(dict.fromkeys(zip(kv["target"], kv["source"], strict=True)))
    colors = colors_for(kv["target"])
    for target, source in keys:
        g = kv[(kv["target"] == target) & (kv["source"] == source)]
        src = models.ColumnDataSource({"t_s": g["t_s"].to_numpy(), "value": g["value"].to_numpy()})
        r = p.step(
            "t_s",
            "value",
            source=src,
            mode="after",
            color=colors[target],
            line_width=2,
            line_dash="solid" if source == "server" else "dashed",
            legend_label=f"{target}: {source} ({g['unit'].iloc[0]})",
        )
        p.add_tools(
            models.HoverTool(
                renderers=[r],
                tooltips=[("t (s)", "@t_s{0.00}"), ("in use", "@value{0,0.[00]}")],
                mode="vline",
            )
        )
    _legend(p)
    return p


#: The parts of a stage's mean TTFT and end-to-end latency the breakdown stacks, bottom
#: first: (name, label); `columns/breakdown.py` computes them.
REST_LABEL = "network, front end and client"
BREAKDOWN_PARTS = {
    "ttft": [("queue", "server queue"), ("prefill", "server prefill"), ("rest", REST_LABEL)],
    "e2e": [
        ("queue", "server queue"),
        ("prefill", "server prefill"),
        ("decode", "server decode"),
        ("rest", REST_LABEL),
    ],
}
TTFT_PARTS = BREAKDOWN_PARTS["ttft"]


def time_parts(summary: Any, kind: str = "ttft") -> Any:
    """Per stage with the server's times, its mean TTFT (`kind` "ttft") or end-to-end
    latency ("e2e") in `BREAKDOWN_PARTS[kind]` (ms): the `breakdown_*` columns (a run
    saved before them: the server's histogram means); a part the server does not report
    is 0 and its time is in the rest. None when no stage has them."""
    from ..columns import breakdown

    if not len(summary):
        return None
    if "breakdown_prefill_ms" not in summary:
        if "server_prefill_mean_ms" not in summary:
            return None
        summary, _ = breakdown.add(summary, None)
    rows = summary[summary["breakdown_prefill_ms"].notna()]
    if not len(rows):
        return None
    x, _, _ = x_axis(rows)
    rest = "breakdown_ttft_rest_ms" if kind == "ttft" else "breakdown_e2e_rest_ms"
    pd = _deps.pandas()
    out = pd.DataFrame(
        {"target": rows["target"].astype(str).to_numpy(), "x": rows[x].to_numpy(float)}
    )
    for name, _ in BREAKDOWN_PARTS[kind]:
        column = rest if name == "rest" else f"breakdown_{name}_ms"
        out[name] = np.nan_to_num(rows[column].to_numpy(float))
    out["rest"] = np.clip(out["rest"], 0, None)
    return out


def ttft_parts(summary: Any) -> Any:
    """`time_parts` of the TTFT."""
    return time_parts(summary, "ttft")


def breakdown_chart(summary: Any, kind: str = "ttft") -> Any:
    """Where each stage's mean TTFT (`kind` "ttft") or end-to-end latency ("e2e") goes, as
    stacked bars against load: the server's own queue, prefill (and decode), and the
    network, the server's front end and the client on top."""
    parts = time_parts(summary, kind)
    if parts is None:
        return None
    models = _deps.require("bokeh.models", "bokeh")
    _, x_label, words = x_axis(summary)
    factors = [(t, f"{v:g}") for t, v in zip(parts["target"], parts["x"], strict=True)]
    if len(set(factors)) < len(factors):
        # Two stages at the same load (a ramp, a study): each keeps its own bar.
        factors = [(t, f"{x} #{i}") for i, (t, x) in enumerate(factors)]
    named = BREAKDOWN_PARTS[kind]
    data = {"stage": factors, **{k: parts[k].to_numpy(float) for k, _ in named}}
    what = "the time to first token" if kind == "ttft" else "a request's latency"
    p = _figure(
        f"Where {what} goes vs {words}",
        x_label,
        f"mean {'TTFT' if kind == 'ttft' else 'end-to-end latency'} (ms)",
        x_range=models.FactorRange(*factors),
    )
    keys = [k for k, _ in named]
    # One colour per part, the same in both charts.
    palette = colors_for(["queue", "prefill", "decode", "rest"])
    colors = [palette[k] for k in keys]
    bars = p.vbar_stack(
        keys,
        x="stage",
        width=0.8,
        color=colors,
        source=models.ColumnDataSource(data),
        legend_label=[label for _, label in named],
    )
    tips = [("stage", "@stage"), *((label, f"@{k}{{0,0.[00]}} ms") for k, label in named)]
    p.add_tools(models.HoverTool(renderers=bars, tooltips=tips))
    _legend(p)
    return p
