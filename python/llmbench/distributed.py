"""The driver of a distributed sweep (docs/distributed.md): it plans every stage, starts
the workers' shares together, merges their records into one record file as they arrive,
and accounts for a worker that is lost.

Per stage:

1. Clocks: each worker's system clock and run clock are read together, several times,
   and the reading with the shortest round trip anchors that worker's run clock to the
   driver's system clock (offset and its uncertainty, half the round trip).
2. Start: every worker waits for one instant of its own system clock, the driver's
   chosen start (slightly in the future) plus the worker's offset.
3. Load: closed loop, the batch size is split across the workers (remainders spread);
   open loop, request `i` of the one seeded schedule goes to worker `i mod n`. The
   engine's `share` setting sends exactly those requests, with the sweep's seeds and
   prompt order, so the union is the single-process stage.
4. Records: drained from every worker about twice a second as Arrow columns, moved to
   the common time base (the driver's system clock, from its anchor) and appended to the
   target's record file, so a driver crash loses no completed stage.
5. After the stage the clocks are read again: how far each worker's anchor moved is the
   residual offset. A residual above `max_clock_skew_ms`, a worker that started late, a
   lost worker or an untrustworthy worker makes the stage untrustworthy, with the reason.

The stage summaries come from the merged record file (the engine's own statistics,
`_core.summarize_record_file`); the client-health columns are the worst worker's.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import _core
from .cluster import RayCluster, connect, start_workers

#: How often the driver collects records from the workers (s).
DRAIN_PERIOD_S = 0.5
#: Clock readings per worker per anchoring (the shortest round trip wins).
CLOCK_READINGS = 5
#: Lead between choosing a stage's start and the start itself (s), above the round trips.
START_LEAD_S = 0.3
#: A worker whose closed-loop stage started later than this after the agreed instant (ms)
#: makes the stage untrustworthy.
MAX_START_LATE_MS = 5.0
#: The absolute-time columns of a record (the chunk times are deltas).
TIME_COLUMNS = ("t_sched_ns", "t_sent_ns", "t_headers_ns", "t_first_ns", "t_last_ns", "t_done_ns")


@dataclass
class Anchor:
    """A worker's run clock on the driver's system clock: `driver_unix = t + delta_ns`."""

    delta_ns: int
    offset_ns: int
    uncertainty_ns: int


def anchor(ray: Any, worker: Any) -> Anchor:
    """Read the worker's clocks `CLOCK_READINGS` times; keep the shortest round trip."""
    best: tuple[int, int, int] | None = None
    for _ in range(CLOCK_READINGS):
        t0 = time.time_ns()
        unix_w, mono_w = ray.get(worker.clock.remote())
        t1 = time.time_ns()
        rtt = t1 - t0
        if best is None or rtt < best[0]:
            best = (rtt, unix_w - (t0 + t1) // 2, unix_w - mono_w)
    assert best is not None
    rtt, offset, anchor_w = best
    return Anchor(delta_ns=anchor_w - offset, offset_ns=offset, uncertainty_ns=rtt // 2)


def split(total: int, n: int) -> list[int]:
    """`total` streams over `n` workers, remainders to the first ones."""
    return [total // n + (1 if k < total % n else 0) for k in range(n)]


@dataclass
class Worker:
    """A live worker: its actor, its place, and what the driver knows of it."""

    index: int
    actor: Any
    lost: str | None = None


@dataclass
class StageShare:
    """One worker's part of one stage, and what came back of it."""

    worker: Worker
    place: int
    places: int
    streams: int
    anchor: Anchor
    ref: Any = None
    output: dict[str, Any] | None = None
    received: int = 0
    received_t_sched: list[np.ndarray] = field(default_factory=list)
    lost_at_ns: int | None = None
    residual_ns: int | None = None
    progress: dict[str, Any] | None = None


class MergedRecords:
    """The target's record file on the driver, appended batch by batch (each flushed, so
    a crash keeps every whole batch), on the common time base with unique ids."""

    def __init__(self, path: Path, keep: list[Any], unix_anchor_ns: int) -> None:
        import pyarrow as pa

        self.pa = pa
        #: Times in the file are ns since this instant of the driver's system clock.
        self.unix_anchor_ns = unix_anchor_ns
        self.path = path
        self.writer: Any = None
        self.sink: Any = None
        self.next_id = 0
        self.schema: Any = None
        for batch in keep:
            self.write(batch)
            self.next_id = max(self.next_id, int(np.max(batch.column("id").to_numpy())) + 1)

    def write(self, batch: Any) -> None:
        pa = self.pa
        if self.writer is None:
            self.schema = batch.schema
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.sink = pa.OSFile(str(self.path), "wb")
            options = pa.ipc.IpcWriteOptions(compression="zstd")
            self.writer = pa.ipc.new_stream(self.sink, batch.schema, options=options)
        self.writer.write_batch(batch.cast(self.schema) if batch.schema != self.schema else batch)
        self.sink.flush()

    def add(self, ipc: bytes, share: StageShare, n_workers: int, id_base: int) -> None:
        """Append a worker's batches: times moved to the common base, ids made unique
        (`id_base + local id × workers + place`)."""
        pa = self.pa
        with pa.ipc.open_stream(pa.py_buffer(ipc)) as reader:
            for batch in reader:
                batch = self._moved(batch, share, n_workers, id_base)
                self.write(batch)
                measured = ~batch.column("warmup").to_numpy(zero_copy_only=False)
                share.received += int(measured.sum())
                share.received_t_sched.append(batch.column("t_sched_ns").to_numpy()[measured])
                self.next_id = max(self.next_id, int(np.max(batch.column("id").to_numpy())) + 1)

    def _moved(self, batch: Any, share: StageShare, n_workers: int, id_base: int) -> Any:
        import pyarrow.compute as pc

        pa = self.pa
        cols = {name: batch.column(name) for name in batch.schema.names}
        delta = share.anchor.delta_ns - self.unix_anchor_ns
        for name in TIME_COLUMNS:
            shifted = pc.add(cols[name].cast(pa.int64()), pa.scalar(delta, pa.int64()))
            cols[name] = shifted.cast(pa.uint64())
        for name in ("id", "conversation"):
            scaled = pc.multiply(cols[name], pa.scalar(n_workers, pa.uint64()))
            cols[name] = pc.add(scaled, pa.scalar(id_base + share.place, pa.uint64()))
        return pa.RecordBatch.from_arrays(
            [cols[n] for n in batch.schema.names], schema=batch.schema
        )

    def lost(self, rows: list[dict[str, Any]]) -> None:
        """Append failed records of kind `worker_lost` (one per request the lost worker
        had in flight, or was due to send, whose record never reached the driver)."""
        if not rows:
            return
        if self.schema is None:
            self._schema_from_engine()
        pa = self.pa
        data: dict[str, list[Any]] = {n: [] for n in self.schema.names}
        for r in rows:
            full = {
                "id": self.next_id,
                "warmup": False,
                "conversation": None,
                "turn": None,
                "t_headers_ns": None,
                "t_first_ns": None,
                "t_last_ns": None,
                "n_in": None,
                "n_in_source": "unknown",
                "n_out": 0,
                "n_out_source": "unknown",
                "n_out_streamed": 0,
                "n_chunks": 0,
                "chunk_token_source": "unknown",
                "server_queue_us": None,
                "server_prefill_us": None,
                "server_decode_us": None,
                "finish_reason": None,
                "http_status": None,
                "error_kind": "worker_lost",
                "chunk_dt_ns": [],
                "chunk_tokens": [],
                **r,
            }
            self.next_id += 1
            for n in self.schema.names:
                data[n].append(full[n])
        self.write(pa.RecordBatch.from_pydict(data, schema=self.schema))

    def _schema_from_engine(self) -> None:
        """The record schema when no worker record arrived yet (all lost at once): read
        from an empty record file the engine writes."""
        import tempfile

        pa = self.pa
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "empty.arrows"
            _core.record_write_speed(path, records=1, tokens=1)
            with pa.ipc.open_stream(pa.memory_map(str(path))) as reader:
                self.schema = reader.schema

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.sink.close()
            self.writer = None


def _kept_batches(path: Path) -> list[Any]:
    """The whole batches of a record file (after `keep_complete_stages` rewrote it)."""
    import pyarrow as pa

    batches: list[Any] = []
    if not path.exists():
        return batches
    try:
        # Read into memory, not mapped: the file is rewritten from these batches next.
        with pa.ipc.open_stream(pa.py_buffer(path.read_bytes())) as reader:
            batches.extend(reader)
    except (pa.ArrowInvalid, OSError):
        pass
    return batches


def _n_stages(config: dict[str, Any]) -> int:
    open_loop = config.get("open_loop")
    return len(open_loop["rates"]) if open_loop else len(config["batch_sizes"])


class ClusterRun:
    """One `run_sweep` on a cluster: the connection and the workers, kept for every
    target and repeat of the sweep, given back at the end."""

    def __init__(self, cluster: RayCluster) -> None:
        self.cluster = cluster
        self.ray = connect(cluster)
        self.workers = [
            Worker(i, a) for i, a in enumerate(start_workers(self.ray, cluster, cluster.workers))
        ]
        self.hosts = self.ray.get([w.actor.hello.remote() for w in self.workers])
        # The common time base: the driver's system clock, from this instant.
        self.unix_anchor_ns = time.time_ns()
        self.stages: list[dict[str, Any]] = []
        self.stopped = False

    def close(self) -> None:
        for w in self.workers:
            if w.lost is None:
                try:
                    self.ray.kill(w.actor)
                except Exception:
                    pass

    def describe(self) -> dict[str, Any]:
        """What the manifest keeps: the settings, the workers and every stage's clocks
        and health per worker."""
        return {
            **self.cluster.describe(),
            "workers_started": self.hosts,
            "workers_lost": {w.index: w.lost for w in self.workers if w.lost},
            "time_base": "t_*_ns: ns on the driver's system clock since unix_anchor_ns, "
            "each worker's run clock anchored to it at every stage's start",
            "stages": self.stages,
        }

    def alive(self) -> list[Worker]:
        return [w for w in self.workers if w.lost is None]

    # -- one engine call: every stage of one target in one repeat ------------------------

    def run(self, config: dict[str, Any], progress: Any = None) -> dict[str, Any]:
        """Run `config`'s stages on the workers; return what `_core.run_sweep` returns,
        with the records in `config["records_path"]` on the driver."""
        path = Path(config["records_path"])
        n_stages = _n_stages(config)
        done: set[int] = set()
        warnings: list[str] = []
        if config.get("resume") and path.exists():
            kept = _core.keep_complete_stages(config)
            done = set(kept["done"])
            warnings.append(
                f"resumed: kept {len(done)} completed stage(s) ({kept['kept_records']} records), "
                f"dropped {kept['dropped']} record(s) of the stage that was cut short"
            )
            warnings += kept["notes"]
        merged = MergedRecords(path, _kept_batches(path), self.unix_anchor_ns)
        base = {**config, "resume": False, "records_path": None}
        server_info = None
        interrupted = False
        health: dict[int, dict[str, Any]] = {}
        try:
            todo = [s for s in range(n_stages) if s not in done]
            if todo and (config.get("warmup_requests") or config.get("warmup_s")):
                out = self._warm_up(base, merged)
                server_info = out or server_info
            for s in todo:
                if not self.alive() or self.stopped:
                    interrupted = True
                    break
                stage_health, info = self._stage(base, s, merged, progress)
                health[s] = stage_health
                server_info = info or server_info
                warnings += stage_health["warnings"]
                cooldown = config.get("cooldown_s")
                if cooldown:
                    time.sleep(cooldown)
        except KeyboardInterrupt:
            interrupted = True
            self.stopped = True
        finally:
            merged.close()
        summaries, note = _core.summarize_record_file(path, config["pricing"], config.get("slo"))
        if note:
            warnings.append(note)
        stages = []
        for st in summaries:
            s = st["index"]
            summary = st["summary"]
            summary.update(_health_columns(health.get(s)))
            stages.append(
                {
                    "index": s,
                    "batch_size": 0 if config.get("open_loop") else config["batch_sizes"][s],
                    "target_rate": config["open_loop"]["rates"][s]
                    if config.get("open_loop")
                    else None,
                    "interrupted": False,
                    "summary": summary,
                }
            )
        # Checked against the engine's one definition of a sweep's output.
        return _core.sweep_output(
            {
                "stages": stages,
                "server_info": server_info,
                "warnings": warnings,
                "interrupted": interrupted,
                "records_error": None,
                "t_start_ns": 0,
                "unix_anchor_ns": self.unix_anchor_ns,
                "monotonic_anchor_ns": None,
            }
        )

    def _warm_up(self, base: dict[str, Any], merged: MergedRecords) -> str | None:
        """Every worker sends the warm-up requests (its connections and the server warm)
        and its part of the warm-up wave, together; the records are kept, flagged."""
        workers = self.alive()
        first = base["batch_sizes"][0]
        shares = []
        parts = split(max(first, len(workers)), len(workers))
        for place, (w, streams) in enumerate(zip(workers, parts, strict=True)):
            share = StageShare(w, place, len(workers), max(streams, 1), anchor(self.ray, w.actor))
            cfg = {
                **base,
                "share": {"worker": place, "workers": len(workers), "streams": share.streams},
            }
            share.ref = w.actor.run.remote(cfg)
            shares.append(share)
        info = None
        for share in shares:
            try:
                share.output = self.ray.get(share.ref)
            except Exception as e:
                self._lose(share, e)
                continue
            info = share.output["server_info"]
            self._drain(share, merged, len(shares), merged.next_id)
        return info

    def _stage(
        self, base: dict[str, Any], s: int, merged: MergedRecords, progress: Any
    ) -> tuple[dict[str, Any], str | None]:
        open_loop = base.get("open_loop")
        batch = base["batch_sizes"][s]
        workers = self.alive()
        if not open_loop:
            # At most one worker per stream.
            workers = workers[: max(1, min(len(workers), batch))]
        n = len(workers)
        streams = [0] * n if open_loop else split(batch, n)
        shares = [
            StageShare(w, place, n, streams[place], anchor(self.ray, w.actor))
            for place, w in enumerate(workers)
        ]
        lead_ns = int(START_LEAD_S * 1e9) + 4 * max(sh.anchor.uncertainty_ns for sh in shares)
        start_at = time.time_ns() + lead_ns
        id_base = merged.next_id
        for sh in shares:
            cfg = {
                **base,
                "warmup_requests": 0,
                "warmup_s": None,
                "cooldown_s": None,
                "share": {
                    "worker": sh.place,
                    "workers": n,
                    "streams": sh.streams,
                    "stage": s,
                    "start_at_unix_ns": start_at + sh.anchor.offset_ns,
                },
            }
            sh.ref = sh.worker.actor.run.remote(cfg)
        pending = {sh.ref: sh for sh in shares}
        while pending:
            ready, _ = self.ray.wait(
                list(pending), num_returns=len(pending), timeout=DRAIN_PERIOD_S
            )
            for ref in ready:
                sh = pending.pop(ref)
                try:
                    sh.output = self.ray.get(ref)
                except Exception as e:
                    self._lose(sh, e)
            for sh in shares:
                if sh.worker.lost is None:
                    self._drain(sh, merged, n, id_base)
            if progress is not None:
                progress(_progress_of(s, batch, shares))
        info = None
        for sh in shares:
            if sh.worker.lost is None:
                # What was written after the last drain.
                while self._drain(sh, merged, n, id_base):
                    pass
                after = anchor(self.ray, sh.worker.actor)
                sh.residual_ns = abs(after.delta_ns - sh.anchor.delta_ns) + after.uncertainty_ns
                info = (sh.output or {}).get("server_info") or info
        lost_rows = [row for sh in shares for row in self._lost_rows(sh, base, s, start_at)]
        merged.lost(lost_rows)
        if any(sh.worker.lost for sh in shares) and self.cluster.on_worker_lost == "stop":
            self.stopped = True
        return self._stage_health(s, shares, start_at, bool(open_loop)), info

    def _drain(self, sh: StageShare, merged: MergedRecords, n: int, id_base: int) -> bool:
        """Take the worker's new records; whether any came."""
        try:
            ipc, prog = self.ray.get(sh.worker.actor.drain.remote())
        except Exception as e:
            self._lose(sh, e)
            return False
        sh.progress = prog
        if ipc is None:
            return False
        merged.add(ipc, sh, n, id_base)
        return True

    def _lose(self, sh: StageShare, error: BaseException) -> None:
        if sh.worker.lost is None:
            sh.worker.lost = f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"
            sh.lost_at_ns = time.time_ns()

    def _lost_rows(
        self, sh: StageShare, base: dict[str, Any], s: int, start_at: int
    ) -> list[dict[str, Any]]:
        """The requests of a lost worker's share that it had sent, or was due to send, by
        the time it was lost and whose records never came: each a `worker_lost` record."""
        if sh.worker.lost is None or sh.lost_at_ns is None:
            return []
        n = sh.places
        lost_at = sh.lost_at_ns - self.unix_anchor_ns
        open_loop = base.get("open_loop")
        rows: list[dict[str, Any]] = []
        if open_loop:
            offsets = _core.stage_schedule(base, s)
            t0 = start_at - self.unix_anchor_ns
            mine = [j for j in range(len(offsets)) if j % n == sh.place]
            due = [j for j in mine if t0 + int(offsets[j]) <= lost_at]
            got = (
                np.concatenate(sh.received_t_sched)
                if sh.received_t_sched
                else np.array([], np.uint64)
            )
            got_sched = set(np.round((got.astype(np.int64) - t0) / 1e5).astype(np.int64).tolist())
            missing = [j for j in due if round(int(offsets[j]) / 1e5) not in got_sched]
            for j in missing:
                t = t0 + int(offsets[j])
                rows.append(self._lost_row(sh, base, s, j, t, lost_at))
            return rows
        # Closed loop: each stream takes the share's next request as its last one ends, so
        # those in flight are the next `streams` after the ones received (the engine's count
        # of the stage's requests; a stage bounded by time stops earlier, never later).
        batch = base["batch_sizes"][s]
        requests = base.get("requests_per_stage") or _core.default_requests_for(batch)
        mine = range(sh.place, requests, n)
        for j in mine[sh.received : sh.received + sh.streams]:
            rows.append(self._lost_row(sh, base, s, j, lost_at, lost_at))
        return rows

    def _lost_row(
        self, sh: StageShare, base: dict[str, Any], s: int, j: int, t_sched: int, lost_at: int
    ) -> dict[str, Any]:
        return {
            "stage": s,
            "batch_size": 0 if base.get("open_loop") else base["batch_sizes"][s],
            "prompt_index": _prompt_of(base, s, j),
            "t_sched_ns": t_sched,
            "t_sent_ns": t_sched,
            "t_done_ns": max(lost_at, t_sched),
            # (times are on the common base, like every merged record)
            "error": f"worker {sh.worker.index} lost: {sh.worker.lost}",
        }

    def _stage_health(
        self, s: int, shares: list[StageShare], start_at: int, open_loop: bool
    ) -> dict[str, Any]:
        """The stage's client health from the worst worker, with the clocks' residual
        offsets, late starts and lost workers, and what the manifest keeps per worker."""
        per_worker = []
        problems: list[str] = []
        for sh in shares:
            summary = ((sh.output or {}).get("stages") or [{}])[0].get("summary", {})
            residual_ms = sh.residual_ns / 1e6 if sh.residual_ns is not None else math.nan
            late_ms = math.nan
            t_start = summary.get("t_start_ns")
            # Closed loop only: an open-loop worker's first request leaves at its first
            # arrival's offset in the schedule, so its lateness is its send lag (kept per
            # worker below), not the time from the agreed start to its first send.
            if t_start and summary.get("n_requests") and not open_loop:
                late_ms = (int(t_start) + sh.anchor.delta_ns - start_at) / 1e6
            row = {
                "worker": sh.worker.index,
                "streams": sh.streams,
                "records": sh.received,
                "clock_offset_ms": sh.anchor.offset_ns / 1e6,
                "clock_uncertainty_ms": sh.anchor.uncertainty_ns / 1e6,
                "clock_residual_ms": residual_ms,
                "start_late_ms": late_ms,
                "lost": sh.worker.lost,
                **{k: summary.get(k) for k in _HEALTH_KEYS},
            }
            per_worker.append(row)
            who = f"worker {sh.worker.index}"
            if sh.worker.lost:
                problems.append(f"{who} lost mid-stage ({sh.worker.lost})")
                continue
            limit = self.cluster.max_clock_skew_ms
            if residual_ms > limit:
                problems.append(f"{who}: clock residual {residual_ms:.2f} ms > {limit:g} ms")
            # Open loop: a late start is send lag, judged by the worker itself.
            if not open_loop and late_ms > MAX_START_LATE_MS:
                problems.append(f"{who} started {late_ms:.1f} ms late")
            if summary.get("client_trustworthy") == 0:
                problems.append(f"{who}: {summary.get('client_health')}")
        self.stages.append({"stage": s, "workers": per_worker})
        warnings = (
            [f"stage {s}: measurements not trustworthy: {'; '.join(problems)}"] if problems else []
        )
        # The workers' other warnings (a record file they could not write, a raised file
        # limit); their health verdicts are in `problems` already.
        warnings += [
            f"worker {sh.worker.index}: {w}"
            for sh in shares
            for w in (sh.output or {}).get("warnings", [])
            if "not trustworthy" not in w
        ]
        return {
            "per_worker": per_worker,
            "problems": problems,
            "warnings": warnings,
            "workers": len(shares),
            "cores": math.ceil(len(shares) * self.cluster.cores_per_worker),
            "lost": sum(1 for sh in shares if sh.worker.lost),
        }


_HEALTH_KEYS = (
    "client_task_lag_p50_ms",
    "client_task_lag_p99_ms",
    "client_task_lag_max_ms",
    "client_cpu_s",
    "client_cpu_share",
    "client_cores",
    "client_trustworthy",
    "client_health",
    "send_lag_p99_ms",
)


def _health_columns(health: dict[str, Any] | None) -> dict[str, Any]:
    """A stage's client-health columns from its workers: the worst task lag and CPU
    share, the summed CPU and cores, trustworthy only if every worker, the clocks and
    the start were; and the cluster's own columns."""
    if health is None:
        # A stage kept from an interrupted run: not watched.
        return {"client_trustworthy": math.nan, "client_health": "not watched"}
    rows = [r for r in health["per_worker"] if not r["lost"]]

    def worst(key: str, how: Any = max) -> float:
        vals = [float(r[key]) for r in rows if r.get(key) is not None and r[key] == r[key]]
        return float(how(vals)) if vals else math.nan

    residuals = [
        r["clock_residual_ms"] for r in rows if r["clock_residual_ms"] == r["clock_residual_ms"]
    ]
    return {
        "client_task_lag_p50_ms": worst("client_task_lag_p50_ms"),
        "client_task_lag_p99_ms": worst("client_task_lag_p99_ms"),
        "client_task_lag_max_ms": worst("client_task_lag_max_ms"),
        "client_cpu_s": worst("client_cpu_s", sum),
        "client_cpu_share": worst("client_cpu_share"),
        # Each worker reports its host's cores; the cluster reserved cores_per_worker each.
        "client_cores": health["cores"],
        "client_trustworthy": 0.0 if health["problems"] else 1.0,
        "client_health": "; ".join(health["problems"]),
        "cluster_workers": health["workers"],
        "cluster_workers_lost": health["lost"],
        "clock_residual_max_ms": max(residuals) if residuals else math.nan,
    }


def _progress_of(stage: int, batch: int, shares: list[StageShare]) -> dict[str, Any]:
    """One progress line for the stage from every worker's latest progress."""
    got = [sh.progress for sh in shares if sh.progress]
    ok = sum(int(p["ok"]) for p in got)
    ttft = [
        p["ttft_mean_ms"] * p["ok"]
        for p in got
        if p["ok"] and p["ttft_mean_ms"] == p["ttft_mean_ms"]
    ]
    return {
        "stage": stage,
        "batch_size": batch,
        "ok": ok,
        "failed": sum(int(p["failed"]) for p in got),
        "output_tok_s": sum(float(p["output_tok_s"]) for p in got),
        "ttft_mean_ms": sum(ttft) / ok if ok and ttft else math.nan,
    }


def _prompt_of(base: dict[str, Any], s: int, j: int) -> int:
    """The prompt (or conversation) request `j` of stage `s` sends: the engine's order."""
    open_loop = base.get("open_loop") or {}
    if open_loop.get("in_order"):
        return j % len(base["prompts"])
    per = base.get("stage_prompts")
    conversations = base.get("conversations")
    if conversations is not None:
        pool = len(conversations["items"])
    elif per is not None:
        pool = len(per[s])
    else:
        pool = len(base["prompts"])
    i = _core.prompt_order(pool, s, j + 1, int(base["seed"]))[j]
    return int(per[s][i]) if per is not None and conversations is None else int(i)
