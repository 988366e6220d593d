"""The everyday workflow: notebooks executed by a real Jupyter kernel, W&B offline logging
(and a stalled W&B), TOML sweep files, comparing saved runs, the plots' data, and an example
in every public docstring."""

from __future__ import annotations

import inspect
import json
import sys
import time
import types

import llmbench
import pytest
from conftest import REPO, records_so_far, run_cli

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def test_notebooks_are_committed_without_outputs():
    assert {p.name for p in NOTEBOOKS} >= {
        "metrics_study.ipynb",
        "kv_cache_study.ipynb",
        "naive_baseline.ipynb",
    }
    for path in NOTEBOOKS:
        nb = json.loads(path.read_text())
        for cell in nb["cells"]:
            if cell["cell_type"] == "code":
                assert cell["outputs"] == [] and cell["execution_count"] is None, path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_top_to_bottom_in_a_kernel(path, tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
    errors = [
        o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"
    ]
    assert not errors, errors
    # Each study wrote its results where a user would find them.
    assert any((tmp_path / "results").iterdir())


def _sweep(sim, out_dir=None, **kwargs):
    return llmbench.run_sweep(
        sim.target(name="scripted"),
        batch_sizes=[1, 4],
        requests_per_stage=8,
        max_tokens=4,
        out_dir=out_dir,
        progress=False,
        **kwargs,
    )


def test_wandb_offline_run_holds_the_logged_keys(sim, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    key = "sk-WANDB-PLANTED-7"
    monkeypatch.setenv("LLMBENCH_API_KEY", key)
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "results"
    res = _sweep(
        sim, out, wandb={"mode": "offline", "project": "llmbench-test", "dir": str(tmp_path)}
    )
    assert (out / "metrics_data.json").is_file()
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    log = next(runs[0].glob("run-*.wandb")).read_bytes()
    for k in (
        b"llmbench_version",
        b"scripted/output_tok_s",
        b"scripted/ttft_p50_ms",
        b"batch_size",
        b"summary_table",
        b"requests_table",
        b"plots/throughput",
        b"plots/cost",
        b"report",
    ):
        assert k in log, k
    media = runs[0] / "files" / "media"
    assert list(media.rglob("*.table.json")) and list(media.rglob("*.png"))
    # The self-contained report, as written beside the results.
    (page,) = list(media.rglob("report*.html"))
    html = page.read_text()
    assert "<title>llmbench" in html and 'id="t-summary"' in html and "bokeh.min.js" in html
    table = json.loads(next(media.rglob("summary_table*.table.json")).read_text())
    assert "output_tok_s" in table["columns"] and len(table["data"]) == len(res.summary)
    for p in (tmp_path / "wandb").rglob("*"):
        if p.is_file():
            assert key.encode() not in p.read_bytes(), p


def test_a_stalled_wandb_times_out_and_the_results_are_kept(sim, tmp_path, monkeypatch):
    # Fault injection: a W&B client whose init never returns.
    import threading

    never = threading.Event()
    stalled = types.ModuleType("wandb")
    stalled.init = lambda **_: never.wait()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "wandb", stalled)
    with pytest.warns(llmbench.wandb_log.WandbTimeoutWarning):
        res = _sweep(sim, tmp_path, wandb={"timeout_s": 1})
    assert int(res.summary["n_ok"].sum()) == 16
    assert (tmp_path / "metrics_data.json").is_file()
    never.set()


def test_config_file_round_trips_and_rejects_unknown_keys(sim, tmp_path):
    target = llmbench.OpenAI(
        sim.url,
        model="llmbench-sim",
        api="completions",
        name="cfg",
        timeouts=llmbench.Timeouts(ttft=30, idle=10),
        extra_body={"ignore_eos": True},
    )
    spec = llmbench.SweepSpec(
        [target, llmbench.TGI(sim.url, name="tgi")],
        {"batch_sizes": [1, 2], "requests_per_stage": 4, "max_tokens": 3, "slo": {"ttft_ms": 500}},
    )
    path = llmbench.save_config(spec, tmp_path / "sweep.toml")
    back = llmbench.load_config(path)
    assert [t.describe() for t in back.targets] == [t.describe() for t in spec.targets]
    assert [t.timeouts for t in back.targets] == [t.timeouts for t in spec.targets]
    assert back.options == spec.options
    with pytest.raises(llmbench.InvalidArgumentError, match="batch_size"):
        llmbench.parse_config('[[target]]\nurl = "http://h"\n[sweep]\nbatch_size = [1]\n')
    with pytest.raises(llmbench.InvalidArgumentError, match="modle"):
        llmbench.parse_config('[[target]]\nurl = "http://h"\nmodle = "m"\n')
    with pytest.raises(llmbench.InvalidArgumentError, match="LLMBENCH_API_KEY"):
        llmbench.parse_config('[[target]]\nurl = "http://h"\napi_key = "sk-1"\n')
    # The command runs the file.
    out = tmp_path / "out"
    r = run_cli("metrics", "--config", str(path), "--out", str(out), "--quiet")
    assert r.returncode == 0, r.stderr
    data = json.loads((out / "metrics_data.json").read_text())
    assert {s["target"] for s in data["summary"]} == {"cfg", "tgi"}
    assert all(s["n_ok"] == 4 for s in data["summary"])


def test_compare_saved_runs_in_one_table_and_plots(tmp_path):
    dirs = []
    for name, itl in (("fast", 2), ("slow", 8)):
        with llmbench.SimServer(ttft_ms=10, itl_ms=itl) as server:
            _sweep(server, tmp_path / name)
        dirs.append(tmp_path / name)
    both = llmbench.compare(dirs)
    assert sorted(set(both.summary["target"])) == ["scripted (fast)", "scripted (slow)"]
    table = llmbench.comparison_table(both)
    assert list(table.index) == [1, 4]
    fast, slow = (table["tpot_mean_ms"][f"scripted ({n})"] for n in ("fast", "slow"))
    assert (fast < slow).all()
    # The figures' data, not pixels: one line per target, x = batch sizes, y = the column.
    fig = both.plot()["throughput"]
    ax = fig.axes[0]
    assert ax.get_xlabel().startswith("batch size") and ax.get_xscale() == "log"
    lines = {line.get_label(): line for line in ax.get_lines()}
    for target, rows in both.summary.groupby("target"):
        line = lines[target]
        assert list(line.get_xdata()) == list(rows["batch_size"])
        assert list(line.get_ydata()) == pytest.approx(list(rows["output_tok_s"]))
    cost = both.plot()["cost"].axes[0]
    assert "USD" in cost.get_ylabel() and len(cost.get_lines()) == 2
    r = run_cli("compare", *map(str, dirs), "--out", str(tmp_path / "cmp"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "cmp" / "comparison_summary.csv").is_file()
    assert (tmp_path / "cmp" / "throughput_vs_batch_size.png").is_file()
    assert "scripted (fast)" in r.stdout


def _public_objects():
    for name in llmbench.__all__:
        obj = getattr(llmbench, name)
        if inspect.isfunction(obj) or inspect.isclass(obj):
            yield name, obj
    for name in ("run", "serve", "BaselineServer"):
        yield f"baseline.{name}", getattr(llmbench.baseline, name)


@pytest.mark.parametrize("name,obj", list(_public_objects()), ids=lambda x: str(x))
def test_public_functions_document_an_example(name, obj):
    if inspect.isclass(obj) and issubclass(obj, BaseException):
        return  # exceptions say what they mean in one line
    doc = inspect.getdoc(obj) or ""
    assert "Example" in doc and ">>>" in doc, f"{name} has no example in its docstring"


def test_user_guide_names_every_command_and_metric():
    guide = (REPO / "docs" / "user_guide.md").read_text()
    words = ["llmbench metrics", "llmbench kv-cache", "llmbench serve", "llmbench compare"]
    words += ["--config", "--resume", "ttft", "tpot", "itl", "goodput", "usd_per_1m"]
    for word in words:
        assert word in guide, word


def test_the_notebook_stop_button_cancels_a_sweep_and_keeps_what_it_measured(tmp_path):
    # A real kernel, interrupted the way Jupyter's stop button does it (SIGINT to the
    # kernel), while a sweep that would take a minute runs in a cell.
    manager = pytest.importorskip("jupyter_client.manager")
    km, kc = manager.start_new_kernel(kernel_name="python3", cwd=str(tmp_path))
    records = tmp_path / "results" / "requests_scripted.arrows"
    code = (
        "import llmbench\n"
        "sim = llmbench.SimServer(ttft_ms=20, itl_ms=20)\n"
        "stopped = None\n"
        "try:\n"
        "    llmbench.run_sweep(sim.target(name='scripted'), batch_sizes=[2], "
        "requests_per_stage=200, max_tokens=16, out_dir='results', progress=False)\n"
        "except llmbench.SweepInterrupted as e:\n"
        "    stopped = e\n"
    )
    outputs: list[dict] = []
    try:
        kc.execute(code)
        deadline = time.monotonic() + 60
        while len(records_so_far(records)) < 5:
            assert time.monotonic() < deadline, "the sweep never started"
            time.sleep(0.1)
        t_interrupt = time.monotonic()
        km.interrupt_kernel()
        reply = kc.get_shell_msg(timeout=60)
        took = time.monotonic() - t_interrupt
        assert reply["content"]["status"] == "ok", reply["content"]
        # Stopped at once (the whole sweep would take about a minute), with every request
        # measured before the stop kept, in the results and on disk.
        assert took < 5.0
        out = kc.execute_interactive(
            "print(len(stopped.results.all_requests), stopped.results.interrupted)",
            timeout=60,
            output_hook=lambda msg: outputs.append(msg),
        )
        assert out["content"]["status"] == "ok"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    text = "".join(m["content"].get("text", "") for m in outputs)
    kept, interrupted = text.split()
    assert interrupted == "True"
    on_disk = llmbench.records.read_file(records)
    assert int(kept) == len(on_disk) >= 5
    assert on_disk["id"].is_unique
