"""The record file: what Python reads back equals what the engine measured, a file cut
anywhere keeps its whole batches, runs saved by earlier versions still load, only the
stages and columns asked for are read, and the streamed summary of a long run equals the
one computed from all its records."""

from __future__ import annotations

import json
import random
import shutil

import llmbench
import numpy as np
import pandas as pd
import pyarrow.ipc
import pytest
from llmbench import records as rf


def _run(sim, out_dir, **kw):
    args = {
        "batch_sizes": [1, 4, 8],
        "requests_per_stage": 24,
        "max_tokens": 6,
        "progress": False,
        "out_dir": out_dir,
    }
    args.update(kw)
    return llmbench.run_sweep(sim.target(), **args)


@pytest.fixture(scope="module")
def chunky_sim():
    # Several tokens per event and a failure now and then: every kind of field is written.
    with llmbench.SimServer(
        ttft_ms=3, itl_ms=1, tokens_per_chunk=2, fault_rate=0.2, faults=["http_503"], fault_seed=5
    ) as s:
        yield s


def test_every_field_and_chunk_time_reads_back_as_written(chunky_sim, tmp_path):
    res = _run(chunky_sim, tmp_path)
    req = res.all_requests
    assert len(req) == 1 + 3 * 24
    assert not req["ok"].all() and req["ok"].any()
    # The raw file, read by pyarrow alone: the frame is the file, field by field.
    raw = pyarrow.ipc.open_stream((tmp_path / "requests_sim-chat.arrows").read_bytes()).read_all()
    raw = raw.to_pylist()
    assert [r["id"] for r in raw] == req["id"].tolist()
    chunks = res.chunk_arrays
    for i, (row, r) in enumerate(zip(req.to_dict("records"), raw, strict=True)):
        for field in ("stage", "batch_size", "warmup", "prompt_index", "n_out", "n_chunks"):
            assert row[field] == r[field], field
        for field in ("error_kind", "error", "finish_reason", "n_in_source", "n_out_source"):
            assert _none_if_missing(row[field]) == r[field], field
        for field in ("t_sched_ns", "t_sent_ns", "t_done_ns"):
            assert int(row[field]) == r[field], field
        for field in ("t_headers_ns", "t_first_ns", "t_last_ns", "n_in", "http_status"):
            value = _none_if_missing(row[field])
            assert (None if value is None else int(value)) == r[field], field
        assert row["ok"] == (r["error_kind"] is None)
        # Chunk times: the first as an offset from the send, then gaps.
        a, b = int(chunks["offsets"][i]), int(chunks["offsets"][i + 1])
        times = chunks["t_ns"][a:b].astype(np.int64)
        assert times.tolist() == (r["t_sent_ns"] + np.cumsum(r["chunk_dt_ns"])).tolist()
        assert chunks["tokens"][a:b].tolist() == r["chunk_tokens"]
        if r["chunk_dt_ns"]:
            assert times[0] == r["t_first_ns"] and times[-1] == r["t_last_ns"]
            assert row["ttft_ms"] == pytest.approx((r["t_first_ns"] - r["t_sent_ns"]) / 1e6)
            assert row["e2e_ms"] == pytest.approx((r["t_last_ns"] - r["t_sent_ns"]) / 1e6)
            assert sum(r["chunk_tokens"]) == row["n_out_streamed"]
        else:
            assert np.isnan(row["ttft_ms"]) and np.isnan(row["e2e_ms"])
    # One request's chunks, and every chunk of a stage as one frame.
    rid = int(res.requests["id"][res.requests["ok"]].iloc[0])
    one = res.chunks(rid)
    assert (one["t_ms"] > 0).all() and one["tokens"].sum() == 6
    stage = res.chunks(stages=[1])
    req = res.requests
    # Every request that streamed something (a failed one has no chunk).
    assert set(stage["id"]) == set(req.loc[(req["stage"] == 1) & (req["n_chunks"] > 0), "id"])
    assert stage.groupby("id")["tokens"].sum().max() == 6


def _none_if_missing(v):
    import pandas as pd

    return None if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)) else v


def test_only_the_stages_and_columns_asked_for_are_read(sim, tmp_path):
    res = _run(sim, tmp_path)
    back = llmbench.Results.load(tmp_path)
    part = back.read_requests(["ttft_ms", "n_out"], stages=[2])
    assert list(part.columns) == ["target", "ttft_ms", "n_out"]
    assert len(part) == 24
    want = res.requests.loc[res.requests["stage"] == 2, "ttft_ms"].tolist()
    assert part["ttft_ms"].tolist() == pytest.approx(want)
    # Nothing was read whole to answer that.
    assert back._all is None
    assert back.n_records == 1 + 3 * 24
    assert len(back.read_requests(warmup=True)) == 1
    first = back.read_requests(["id"], limit=5)
    assert first["id"].tolist() == res.requests["id"].head(5).tolist()
    with pytest.raises(KeyError, match="no request column"):
        back.read_requests(["ttft"])


def test_pieces_give_every_row_and_chunk_once_and_skip_chunks_when_asked(
    sim, tmp_path, monkeypatch
):
    _run(sim, tmp_path)
    source = llmbench.Results.load(tmp_path).records
    # Pieces smaller than the run: several pieces, whose rows and chunks are the whole.
    monkeypatch.setattr(rf, "PIECE_ROWS", 10)
    cols = ["id", "t_done_ns", "n_out"]
    pieces = list(source.pieces(cols, warmup=False))
    assert len(pieces) > 2 and all(len(f) <= 10 + 24 for f, _ in pieces)
    whole = source.read(cols, warmup=False)
    got = pd.concat([f for f, _ in pieces], ignore_index=True)
    assert got["id"].tolist() == whole["id"].tolist()
    chunks = rf.concat_chunks([c for _, c in pieces])
    want = source.chunk_arrays(warmup=False)
    for key in ("offsets", "t_ns", "tokens"):
        np.testing.assert_array_equal(chunks[key], want[key])
    lean = list(source.pieces(cols, warmup=False, chunks=False))
    assert [c for _, c in lean] == [None] * len(pieces)
    assert pd.concat([f for f, _ in lean], ignore_index=True)["id"].tolist() == whole["id"].tolist()


def test_a_file_cut_at_any_byte_keeps_every_whole_batch_and_says_what_it_dropped(sim, tmp_path):
    _run(sim, tmp_path, requests_per_stage=200, batch_sizes=[8, 16, 32])
    path = tmp_path / "requests_sim-chat.arrows"
    whole = rf.read_file(path, ["id"])["id"].tolist()
    data = path.read_bytes()
    # The batch boundaries: every stage ends with one (its records are flushed).
    sizes = [b.num_rows for b in pyarrow.ipc.open_stream(data)]
    assert len(sizes) >= 3
    prefixes = set(np.cumsum([0, *sizes]).tolist())
    rng = random.Random(7)
    cut = tmp_path / "cut.arrows"
    for at in [rng.randrange(len(data)) for _ in range(25)]:
        cut.write_bytes(data[:at])
        with pytest.warns(rf.RecordFileWarning, match="dropped the rest") as w:
            got = rf.read_file(cut, ["id"])["id"].tolist()
        assert len(got) in prefixes, at
        assert got == whole[: len(got)], at
        assert f"({len(got)} records)" in str(w[0].message)


def test_runs_saved_by_earlier_versions_still_load(sim, tmp_path):
    # What earlier versions wrote: every record in metrics_data.json, no record file.
    res = _run(sim, tmp_path / "new")
    old = tmp_path / "old"
    old.mkdir()
    data = res.to_dict(records_in_json=True)
    del data["records"]
    (old / "metrics_data.json").write_text(json.dumps(data))
    back = llmbench.Results.load(old)
    assert back.requests["id"].tolist() == res.requests["id"].tolist()
    assert back.requests["ttft_ms"].tolist() == pytest.approx(res.requests["ttft_ms"].tolist())
    rid = int(res.requests["id"][0])
    assert back.chunks(rid)["t_ms"].tolist() == pytest.approx(res.chunks(rid)["t_ms"].tolist())
    assert len(back.read_requests(["ttft_ms"], stages=[0])) == 24
    assert back.n_records == res.n_records


def test_a_run_saved_by_the_previous_release_loads(tmp_path):
    # A real folder written by the release before the record file (tests/fixtures/).
    from conftest import REPO

    folder = tmp_path / "run"
    shutil.copytree(REPO / "tests" / "fixtures" / "run_before_record_file", folder)
    back = llmbench.Results.load(folder)
    assert len(back.requests) == int(back.summary["n_requests"].sum()) > 0
    assert back.requests["ttft_ms"].notna().all()
    rid = int(back.requests["id"][0])
    assert len(back.chunks(rid)) == int(back.requests["n_chunks"][0])
    assert llmbench.compare([folder, folder]) is not None


def test_a_run_of_the_previous_release_resumes_from_its_json_lines(tmp_path):
    # Its two stages are whole: kept as they were; the third runs now, into the record file.
    from conftest import REPO

    folder = tmp_path / "run"
    shutil.copytree(REPO / "tests" / "fixtures" / "run_before_record_file", folder)
    before = [json.loads(x) for x in (folder / "requests_sim-chat.jsonl").read_text().splitlines()]
    with llmbench.SimServer(ttft_ms=5, itl_ms=2) as sim:
        res = llmbench.run_sweep(
            sim.target(),
            batch_sizes=[1, 2, 4],
            requests_per_stage=4,
            max_tokens=4,
            out_dir=folder,
            resume=True,
            progress=False,
        )
    assert res.summary["n_ok"].tolist() == [4, 4, 4]
    kept = res.requests[res.requests["stage"] < 2]
    assert sorted(kept["t_sent_ns"].tolist()) == sorted(
        r["t_sent"] for r in before if not r["warmup"]
    )
    on_disk = rf.read_file(folder / "requests_sim-chat.arrows", ["id", "stage", "warmup"])
    measured = on_disk[~on_disk["warmup"]]
    assert sorted(measured["stage"].tolist()) == [0] * 4 + [1] * 4 + [2] * 4
    assert on_disk["id"].is_unique
    assert any("resumed" in w for w in res.manifest["warnings"])


def test_big_runs_keep_their_records_out_of_the_json(sim, tmp_path, monkeypatch):
    monkeypatch.setattr(llmbench.run_data, "JSON_RECORDS_LIMIT", 10)
    res = _run(sim, tmp_path)
    data = json.loads((tmp_path / "metrics_data.json").read_text())
    assert "requests" not in data
    assert data["records"]["files"] == {"sim-chat": "requests_sim-chat.arrows"}
    assert data["records"]["n_records"] == 73 and data["records"]["in_json"] is False
    res.save(tmp_path / "again", records_in_json=True)
    again = json.loads((tmp_path / "again" / "metrics_data.json").read_text())
    assert len(again["requests"]) == 73
    # Saving elsewhere takes the record file along.
    assert (tmp_path / "again" / "requests_sim-chat.arrows").is_file()


def test_a_run_without_out_dir_keeps_its_records_while_the_results_live(sim):
    res = _run(sim, None, batch_sizes=[2], requests_per_stage=4)
    ((path,),) = res.records.files.values()
    assert path.is_file() and len(res.requests) == 4
    del res
    import gc

    gc.collect()
    assert not path.exists()


def test_the_summary_of_a_200000_request_run_equals_the_one_from_all_its_records(tmp_path):
    # Streamed statistics (exact below a million requests per stage) against numpy over
    # every record read back from the file.
    with llmbench.SimServer(ttft_ms=0.2, itl_ms=0.05, ttft_per_running_ms=0, max_batch=256) as fast:
        res = llmbench.run_sweep(
            fast.target(),
            batch_sizes=[256],
            requests_per_stage=200_000,
            max_tokens=3,
            warmup_requests=0,
            out_dir=tmp_path,
            progress=False,
        )
    s = res.summary.iloc[0]
    req = res.read_requests(["ok", "ttft_ms", "e2e_ms", "tpot_ms", "n_out", "t_sched_ns"])
    req = req.join(res.read_requests(["t_done_ns", "send_lag_ms"]).drop(columns="target"))
    assert len(req) == 200_000 == int(s["n_requests"])
    ok = req[req["ok"]]
    for name in ("ttft", "e2e", "tpot"):
        v = ok[f"{name}_ms"].dropna().to_numpy()
        assert s[f"{name}_mean_ms"] == pytest.approx(v.mean(), rel=1e-9)
        for q in (50, 90, 95, 99):
            assert s[f"{name}_p{q}_ms"] == np.percentile(v, q), (name, q)
        assert s[f"{name}_max_ms"] == v.max()
    assert s["send_lag_p99_ms"] == np.percentile(req["send_lag_ms"], 99)
    duration = (int(req["t_done_ns"].max()) - int(req["t_sched_ns"].min())) / 1e9
    assert s["duration_s"] == pytest.approx(duration, rel=1e-12)
    assert s["output_tok_s"] == pytest.approx(ok["n_out"].sum() / duration, rel=1e-12)
    # ITL from every chunk of every request.
    c = res.records.chunk_arrays(warmup=False)
    offsets = c["offsets"].astype(np.int64)
    t = c["t_ns"].astype(np.int64)
    k = c["tokens"].astype(np.int64)
    first = np.zeros(len(t), dtype=bool)
    first[offsets[:-1][np.diff(offsets) > 0]] = True
    gaps = np.diff(t, prepend=0)[~first] / 1e6
    samples = np.concatenate(
        [np.repeat(gaps / k[~first], k[~first]), np.zeros(int((k[first] - 1).sum()))]
    )
    assert s["itl_mean_ms"] == pytest.approx(samples.mean(), rel=1e-9)
    assert s["itl_p99_ms"] == pytest.approx(np.percentile(samples, 99), rel=1e-12)
