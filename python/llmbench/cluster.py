"""Client machines on Ray: `RayCluster` (where the workers run and how many), connecting
to the cluster with the checks that must pass before any load is sent, and the worker
actor (one llmbench engine per Ray actor). What the driver does with them is
`llmbench.distributed` (docs/distributed.md).

Ray is an optional extra (`pip install 'llmbench[ray]'`): it is imported only here, and
only when a cluster is asked for.
"""

from __future__ import annotations

import math
import os
import platform
import socket
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from . import _core
from ._core import InvalidArgumentError, UnreachableError

#: What happens to the sweep when a worker is lost mid-stage.
ON_WORKER_LOST = ("continue", "stop")
#: Ray's namespace for llmbench's worker actors.
NAMESPACE = "llmbench"


def ray_module() -> Any:
    """Ray, or a clear error naming the extra that installs it."""
    try:
        import ray
    except ImportError:
        raise InvalidArgumentError(
            "a cluster run needs Ray, an optional extra: pip install 'llmbench[ray]'"
        ) from None
    return ray


@dataclass(frozen=True)
class RayCluster:
    """Run a sweep's load from `workers` Ray actors (one llmbench engine each, spread
    across the cluster's nodes) instead of this process: `run_sweep(..., cluster=...)`.

    Args:
        address: the Ray cluster: "host:port" of its head (`ray start --head` prints it),
            "ray://host:10001" (Ray Client), "auto" (the cluster this machine belongs to),
            or None to start a local Ray instance on this machine.
        workers: engine workers. A closed-loop stage's batch size is split across them
            (remainders spread; at most one worker per stream); an open-loop stage's one
            seeded schedule is dealt out, request `i` to worker `i mod workers`.
        cores_per_worker: CPUs Ray reserves for each worker (its engine uses them all).
        max_clock_skew_ms: a stage whose workers' clocks are known to the driver only
            within more than this (the residual offset after anchoring) is marked
            untrustworthy.
        on_worker_lost: "continue" (the sweep goes on with the remaining workers) or
            "stop" (it stops after the stage, keeping everything measured).
        connect_timeout_s: how long to wait for the cluster's address to answer, and
            for the workers to be placed, before giving up with an error.

    Example:
        >>> res = llmbench.run_sweep(target, batch_sizes=[64, 256],
        ...                          cluster=llmbench.RayCluster("10.0.0.5:6379", workers=8))
    """

    address: str | None = None
    workers: int = 2
    cores_per_worker: float = 1.0
    max_clock_skew_ms: float = 5.0
    on_worker_lost: str = "continue"
    connect_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1:
            raise InvalidArgumentError(f"workers must be an integer >= 1, got {self.workers!r}")
        if not self.cores_per_worker > 0:
            raise InvalidArgumentError(
                f"cores_per_worker must be positive, got {self.cores_per_worker!r}"
            )
        if not self.max_clock_skew_ms > 0:
            raise InvalidArgumentError("max_clock_skew_ms must be positive")
        if self.on_worker_lost not in ON_WORKER_LOST:
            raise InvalidArgumentError(
                f"on_worker_lost must be one of {', '.join(ON_WORKER_LOST)}, "
                f"got {self.on_worker_lost!r}"
            )

    @classmethod
    def of(cls, value: RayCluster | dict[str, Any] | None) -> RayCluster | None:
        """A cluster from itself, a table of its fields (a TOML `[sweep.cluster]`), or None."""
        if value is None or isinstance(value, RayCluster):
            return value
        if isinstance(value, dict):
            try:
                return cls(**value)
            except TypeError as e:
                raise InvalidArgumentError(f"cluster: {e}") from None
        raise InvalidArgumentError("cluster must be a llmbench.RayCluster or a table of its fields")

    def describe(self) -> dict[str, Any]:
        """The settings, for the manifest."""
        return asdict(self)


def _check_reachable(address: str, timeout_s: float) -> None:
    """Fail fast when the head's port does not answer: Ray itself retries for minutes."""
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise InvalidArgumentError(
            f"Ray address {address!r}: expected host:port, ray://host:port, 'auto' or None"
        )
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except OSError as e:
        raise UnreachableError(
            f"cannot reach the Ray cluster at {address} ({e}); nothing was sent"
        ) from None


_connected: dict[str, Any] = {}


def connect(cluster: RayCluster) -> Any:
    """Connect this process to the cluster (once; a different address reconnects) and
    check it can hold the workers. Returns the `ray` module."""
    ray = ray_module()
    address = cluster.address
    if address not in (None, "auto"):
        _check_reachable(address, min(cluster.connect_timeout_s, 10.0))
    if ray.is_initialized() and _connected.get("address", "?") != address:
        ray.shutdown()
    if not ray.is_initialized():
        try:
            ray.init(
                # None: always a new instance here ("local"), never a stale `ray start`
                # cluster Ray would otherwise look for and retry against for minutes.
                address=address if address is not None else "local",
                namespace=NAMESPACE,
                include_dashboard=False,
                log_to_driver=False,
                logging_level="warning",
            )
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise UnreachableError(f"cannot connect to the Ray cluster at {address}: {e}") from None
        _connected["address"] = address
    cpus = float(ray.cluster_resources().get("CPU", 0.0))
    needed = cluster.workers * cluster.cores_per_worker
    if cpus < needed:
        raise InvalidArgumentError(
            f"the Ray cluster at {address or 'this machine'} has {cpus:g} CPUs; "
            f"{cluster.workers} workers x {cluster.cores_per_worker:g} cores need {needed:g} "
            "(fewer workers, fewer cores per worker, or a bigger cluster); nothing was sent"
        )
    return ray


class EngineWorker:
    """One llmbench engine in a Ray actor. `run` measures one share of a stage (the
    engine releases the GIL), while `drain` hands the driver the records written since its
    last call, as Arrow IPC bytes (columns through Ray's object store)."""

    def __init__(self, index: int, threads: int) -> None:
        # The engine's runtime starts at its first use, with this many threads: the cores
        # Ray reserved for the worker, not every core of the node.
        os.environ.setdefault("TOKIO_WORKER_THREADS", str(threads))
        self.index = index
        self.folder = Path(tempfile.mkdtemp(prefix=f"llmbench-worker{index}-"))
        self.calls = 0
        self.path: Path | None = None
        # The current file's schema message, and where its undrained bytes start.
        self.head: bytes | None = None
        self.offset = 0
        self.progress: dict[str, Any] | None = None
        self.lock = threading.Lock()

    def hello(self) -> dict[str, Any]:
        """Who and where this worker is (for the manifest and the error messages)."""
        return {
            "worker": self.index,
            "pid": os.getpid(),
            "hostname": platform.node(),
            "cpu_count": os.cpu_count(),
            "llmbench_version": _core.__version__,
        }

    def clock(self) -> tuple[int, int]:
        """The system clock and the engine's run clock, read together (ns)."""
        return time.time_ns(), _core.now_ns()

    def run(self, config: dict[str, Any]) -> dict[str, Any]:
        """Run one share (a stage, or the warm-up) to its end; the records stay in this
        worker's file until drained."""
        with self.lock:
            self.calls += 1
            self.path = self.folder / f"share{self.calls}.arrows"
            self.head, self.offset = None, 0
            self.progress = None
        out = _core.run_sweep({**config, "records_path": str(self.path)}, self._on_progress)
        return {k: out[k] for k in ("stages", "warnings", "interrupted", "server_info")}

    def _on_progress(self, p: dict[str, Any]) -> None:
        self.progress = p

    def drain(self) -> tuple[bytes | None, dict[str, Any] | None]:
        """The whole record batches written since the last drain, as one Arrow IPC
        stream (None when there are none), and the engine's latest progress. Only the
        bytes after the last drain are read and checked; they go out as written (the
        file's schema message in front), never decoded and encoded again."""
        with self.lock:
            path = self.path
            if path is None or not path.exists():
                return None, self.progress
            with open(path, "rb") as f:
                if self.head is None:
                    self.head = _schema_message(f.read())
                    if self.head is None:
                        return None, self.progress
                    self.offset = len(self.head)
                f.seek(self.offset)
                tail = f.read()
            whole = _whole_batches(self.head, tail)
            if not whole:
                return None, self.progress
            self.offset += whole
            return self.head + tail[:whole], self.progress

    def call(self, fn: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        """`fn(**kwargs)` on this worker's host (Ray ships `fn` by reference), with where
        it ran: `{"worker", "hostname", "value"}` (how `llmbench calibrate --ray` measures
        every host without this module importing the studies)."""
        return {"worker": self.index, "hostname": platform.node(), "value": fn(**kwargs)}


def _schema_message(data: bytes) -> bytes | None:
    """The leading schema message of an Arrow IPC stream (None until it is whole)."""
    import pyarrow as pa

    source = pa.BufferReader(data)
    try:
        pa.ipc.open_stream(source)
    except (pa.ArrowInvalid, OSError):
        return None
    return data[: source.tell()]


def _whole_batches(head: bytes, tail: bytes) -> int:
    """How many bytes at the start of `tail` are whole record batches (the batch being
    written, cut short, is left for the next drain)."""
    import pyarrow as pa

    source = pa.BufferReader(head + tail)
    end = len(head)
    try:
        reader = pa.ipc.open_stream(source)
        while True:
            reader.read_next_batch()
            end = source.tell()
    except (pa.ArrowInvalid, OSError, StopIteration):
        pass
    return end - len(head)


def start_workers(ray: Any, cluster: RayCluster, n: int | None = None) -> list[Any]:
    """`n` (default: the cluster's) worker actors, spread across the nodes, each ready;
    an error naming the cluster when Ray cannot place them in time."""
    n = cluster.workers if n is None else n
    actor = ray.remote(EngineWorker).options(
        num_cpus=cluster.cores_per_worker,
        max_concurrency=2,
        scheduling_strategy="SPREAD",
        max_restarts=0,
    )
    threads = max(1, math.ceil(cluster.cores_per_worker))
    workers = [actor.remote(i, threads) for i in range(n)]
    try:
        ray.get([w.hello.remote() for w in workers], timeout=max(cluster.connect_timeout_s, 1.0))
    except Exception as e:
        for w in workers:
            ray.kill(w)
        raise InvalidArgumentError(
            f"the Ray cluster could not start {n} llmbench workers of "
            f"{cluster.cores_per_worker:g} cores within {cluster.connect_timeout_s:g} s "
            f"({type(e).__name__}: {e}); is llmbench installed on every node?"
        ) from None
    return workers
