"""GPU and server telemetry on the run's clock.

`GpuSampler` samples every GPU (or chosen ones) through NVML from a dedicated Rust thread,
down to a 1 ms period: memory used/total, per-process memory, GPU and memory utilisation,
power, the total energy counter, SM clock and temperature. `MetricsScraper` polls a
server's Prometheus `/metrics`. Both timestamp on the clock the request records use
(`t_ns` columns), so memory, KV use and load line up.
"""

from __future__ import annotations

import json
from typing import Any

from . import _core, _deps
from ._core import NvmlUnavailableError
from ._settings import GPU_SAMPLER

__all__ = ["GpuSampler", "MetricsScraper", "NvmlUnavailableError", "list_gpus"]


def list_gpus() -> list[dict[str, Any]]:
    """The GPUs NVML sees (index, name, uuid, mem_total_bytes).

    Raises NvmlUnavailableError where there is no NVIDIA driver.

    Example:
        >>> llmbench.list_gpus()
        [{'index': 0, 'name': 'NVIDIA H100 80GB HBM3', ...}]
    """
    return list(_core.list_gpus())


class GpuSampler:
    """Sample GPUs through NVML in a background thread.

    NVML queries are not free, nor equally so: on an H100 the total-energy counter took
    about 3.5 ms a read, the process list about 0.2 ms, memory 35 us, the others a few us.
    So memory used/total is read every `period_ms` and the other fields on slower cadences;
    rows without a field hold NaN there. `stats()` reports the cost of each kind of query as
    measured during the run.

    Args:
        period_ms: period of the memory readings (>= 0.5 ms; 1 ms works on an H100).
        gpus: GPU indices to sample (default all).
        aux_period_ms: period of utilisation, power, SM clock and temperature.
        energy_period_ms: period of the total-energy counter (the slow query).
        process_period_ms: period of the per-process memory query (0 turns it off).

    Raises NvmlUnavailableError where there is no driver or GPU.

    Example:
        >>> with llmbench.GpuSampler(period_ms=10) as s:
        ...     run_my_workload()
        >>> s.samples[["t_s", "gpu", "mem_used_gib", "power_w"]]
    """

    def __init__(
        self,
        period_ms: float = GPU_SAMPLER["period_ms"],
        gpus: list[int] | None = None,
        aux_period_ms: float = GPU_SAMPLER["aux_period_ms"],
        energy_period_ms: float = GPU_SAMPLER["energy_period_ms"],
        process_period_ms: float = GPU_SAMPLER["process_period_ms"],
    ) -> None:
        config = {
            "period_ms": float(period_ms),
            "gpus": list(gpus or []),
            "aux_period_ms": float(aux_period_ms),
            "energy_period_ms": float(energy_period_ms),
            "process_period_ms": float(process_period_ms),
        }
        self._sampler: Any = _core.GpuSampler(config)
        self._raw: dict[str, Any] | None = None

    def stop(self) -> GpuSampler:
        """Stop sampling (idempotent); the data is then in `.samples` and `.processes`."""
        if self._raw is None:
            self._raw = self._sampler.stop()
        return self

    def __enter__(self) -> GpuSampler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def raw(self) -> dict[str, Any]:
        """The engine's output (columns and counters); stops the sampler if running."""
        self.stop()
        assert self._raw is not None
        return self._raw

    @property
    def samples(self) -> Any:
        """One row per GPU per sample: `t_ns`, `t_s` (since start), `gpu`, memory in bytes
        and GiB, utilisation, power, energy, SM clock, temperature."""
        pd = _deps.pandas()
        df = pd.DataFrame(self.raw["samples"])
        if len(df):
            t = df["t_ns"].astype("int64") - int(self.raw["t_start_ns"])
            df.insert(1, "t_s", t / 1e9)
            df["mem_used_gib"] = df["mem_used_bytes"] / 2**30
        return df

    @property
    def processes(self) -> Any:
        """Per-process GPU memory: `t_ns`, `gpu`, `pid`, `mem_used_bytes`."""
        return _deps.pandas().DataFrame(self.raw["processes"])

    @property
    def gpus(self) -> list[dict[str, Any]]:
        """The GPUs sampled."""
        return list(self.raw["gpus"])

    def stats(self) -> dict[str, Any]:
        """How the sampler itself did: rounds, achieved rate, overruns, time in NVML."""
        r = self.raw
        elapsed = max(r["t_stop_ns"] - r["t_start_ns"], 1) / 1e9
        return {
            "rounds": r["rounds"],
            "elapsed_s": elapsed,
            "achieved_hz": r["rounds"] / elapsed,
            "requested_hz": 1e9 / r["period_ns"] if r["period_ns"] else float("nan"),
            "overruns": r["overruns"],
            "nvml_busy_fraction": r["busy_ns"] / 1e9 / elapsed,
            "nvml_us_per_round": r["busy_ns"] / 1e3 / max(r["rounds"], 1),
            # CPU seconds the sampler thread used per second of sampling (NaN where the
            # kernel does not report per-thread CPU time).
            "cpu_s_per_s": (r["cpu_ns"] / 1e9 / elapsed)
            if r["cpu_ns"] is not None
            else float("nan"),
            # Mean microseconds per NVML query of each kind.
            "query_us": dict(r["query_us"]),
        }


class MetricsScraper:
    """Poll a Prometheus `/metrics` URL in the background (kept series: see
    `src/telemetry/prom.rs`). A missing or broken endpoint is recorded, not raised.

    Example:
        >>> with llmbench.MetricsScraper("http://localhost:8000/metrics", period_ms=500) as m:
        ...     run_my_workload()
        >>> m.points  # t_ns and one column per kept series
    """

    def __init__(self, url: str, period_ms: float = 1000.0) -> None:
        self._scraper: Any = _core.MetricsScraper(url, float(period_ms))
        self._out: dict[str, Any] | None = None

    def stop(self) -> MetricsScraper:
        """Stop polling (idempotent)."""
        if self._out is None:
            self._out = json.loads(self._scraper.stop())
        return self

    def __enter__(self) -> MetricsScraper:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def output(self) -> dict[str, Any]:
        """Everything collected: `points`, `info`, `errors`, `attempts`, `url`."""
        self.stop()
        assert self._out is not None
        return self._out

    @property
    def points(self) -> Any:
        """One row per successful scrape: `t_ns` and the kept series."""
        pd = _deps.pandas()
        rows = [{"t_ns": p["t_ns"], **p["values"]} for p in self.output["points"]]
        return pd.DataFrame(rows)
