//! Telemetry on the run's clock: GPU sampling through NVML (`nvml`), the server's own
//! Prometheus metrics (`prom`), and the KV-cache arithmetic that turns both into bytes
//! (`kv`).

pub mod kv;
pub mod nvml;
pub mod prom;
