//! llmbench's engine: everything whose timing matters, with no Python in it.
//!
//! `settings` defines every setting once; `protocol` holds the wire formats (request bodies,
//! decoders, the built-in servers' encoders); `sse` parses event streams; `client` sends
//! streaming requests and turns responses into [`record::RequestRecord`]s; `loadgen` drives
//! closed- and open-loop sweeps; `metrics` computes the summary statistics; `sim` is the
//! scripted server used as default target and known-answer oracle; `telemetry` samples GPUs
//! (NVML) and servers' `/metrics` on the same clock; `baseline` is the naive candle LLaMA,
//! measured in process and served over HTTP. The Python bindings live only in `py`
//! (feature `python`). The map of it all: `docs/architecture.md`.

pub mod baseline;
pub mod builtin_server;
pub mod chunks;
pub mod client;
pub mod clock;
pub mod error;
pub mod loadgen;
pub mod metrics;
pub mod parse_bench;
pub mod protocol;
pub mod record;
pub mod record_file;
pub mod redact;
pub mod runtime;
pub mod settings;
pub mod sim;
pub mod sse;
pub mod telemetry;
pub mod tokens;
pub mod util;

#[cfg(feature = "python")]
mod py;

#[cfg(test)]
mod fuzz_tests;
#[cfg(test)]
mod test_support;
