//! The `llmbench._core` extension module: the only place pyo3 is used.
//!
//! Long calls run on the shared tokio runtime while the calling thread waits with the GIL
//! released, in short slices, checking for Ctrl-C between them: a KeyboardInterrupt cancels
//! in-flight requests promptly and the partial results still come back.

mod baseline;
mod convert;
mod errors;
mod telemetry;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use tokio_util::sync::CancellationToken;

use crate::error::Error;
use crate::loadgen::progress::Progress;
use crate::loadgen::{run_sweep as engine_run_sweep, SweepConfig};
use crate::runtime::runtime;
use crate::sim::{SimConfig, SimServer};
use errors::to_pyerr;

/// A setting struct from the dict Python built: unknown keys and wrong types are errors
/// naming the key (`crate::settings::parse`), never a silent default.
fn from_py<T: serde::de::DeserializeOwned>(what: &str, obj: &Bound<'_, PyAny>) -> PyResult<T> {
    let value: serde_json::Value = pythonize::depythonize(obj)
        .map_err(|e| errors::InvalidArgumentError::new_err(format!("invalid {what}: {e}")))?;
    crate::settings::parse(what, value).map_err(to_pyerr)
}

/// Every setting's default and every choice, from the engine's definitions
/// (`crate::settings::defaults`).
#[pyfunction]
fn settings(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    pythonize::pythonize(py, &crate::settings::defaults())
        .map_err(|e| errors::LlmbenchError::new_err(e.to_string()))
}

/// Check a sweep config (the dict `run_sweep` takes) without running it.
#[pyfunction]
fn check_sweep(config: &Bound<'_, PyAny>) -> PyResult<()> {
    from_py::<SweepConfig>("sweep config", config)?
        .validate()
        .map_err(to_pyerr)
}

/// Check SLO limits (the dict `SLO.to_engine()` gives) as a sweep would.
#[pyfunction]
fn check_slo(slo: &Bound<'_, PyAny>) -> PyResult<()> {
    from_py::<crate::metrics::slo::Slo>("SLO", slo)?
        .validate()
        .map_err(to_pyerr)
}

/// Every stage's summary from a record file (a distributed run's merged records): a list
/// of `{"index", "summary"}` in stage order, and the note of a cut tail (or None).
#[pyfunction]
#[pyo3(signature = (path, pricing, slo=None))]
fn summarize_record_file<'py>(
    py: Python<'py>,
    path: std::path::PathBuf,
    pricing: &Bound<'py, PyAny>,
    slo: Option<&Bound<'py, PyAny>>,
) -> PyResult<(Bound<'py, pyo3::types::PyList>, Option<String>)> {
    let pricing: crate::metrics::Pricing = from_py("pricing", pricing)?;
    let slo: Option<crate::metrics::slo::Slo> = slo.map(|s| from_py("SLO", s)).transpose()?;
    let (stats, note) = py
        .detach(|| {
            crate::loadgen::resume::stage_summaries(&path, || {
                crate::metrics::StageStats::new(pricing, slo.as_ref())
            })
        })
        .map_err(to_pyerr)?;
    let out = pyo3::types::PyList::empty(py);
    for (index, st) in stats {
        let d = PyDict::new(py);
        d.set_item("index", index)?;
        d.set_item("summary", convert::summary_to_dict(py, &st.finish())?)?;
        out.append(d)?;
    }
    Ok((out, note))
}

/// Keep only the complete stages of an interrupted run's record file (the sweep config's
/// `records_path`, with `resume`), rewriting it by the engine's own rule: how the driver of
/// a distributed run resumes. Returns the kept stages and counts.
#[pyfunction]
fn keep_complete_stages<'py>(
    py: Python<'py>,
    config: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyDict>> {
    let config: SweepConfig = from_py("sweep config", config)?;
    let prior = py
        .detach(|| crate::loadgen::keep_complete_stages(&config))
        .map_err(to_pyerr)?;
    let d = PyDict::new(py);
    d.set_item("done", prior.done.iter().copied().collect::<Vec<u32>>())?;
    d.set_item("kept_records", prior.kept_records)?;
    d.set_item("dropped", prior.dropped)?;
    d.set_item("notes", prior.notes.clone())?;
    // Closing the sink writes the kept records' end of stream.
    drop(prior);
    Ok(d)
}

/// The arrival offsets (ns from the stage's start) of a sweep's open-loop stage, exactly
/// as the engine sends them (what a distributed run's driver checks a lost worker against).
#[pyfunction]
fn stage_schedule<'py>(
    py: Python<'py>,
    config: &Bound<'py, PyAny>,
    stage: u32,
) -> PyResult<Bound<'py, numpy::PyArray1<u64>>> {
    let config: SweepConfig = from_py("sweep config", config)?;
    let offsets = crate::loadgen::stage_schedule(&config, stage).map_err(to_pyerr)?;
    Ok(numpy::PyArray1::from_vec(py, offsets))
}

/// Requests in a closed-loop stage of `batch_size` when none are given.
#[pyfunction]
fn default_requests_for(batch_size: u32) -> u64 {
    crate::settings::default_requests_for(batch_size)
}

/// The URL with credentials and secret query values removed (the engine's redaction).
#[pyfunction]
fn redact_url(url: &str) -> String {
    crate::util::redact_url(url)
}

/// Catch a panic inside an engine future and turn it into an error, so no panic ever
/// crosses into Python as a traceback from Rust.
async fn no_panic<T>(fut: impl Future<Output = Result<T, Error>>) -> Result<T, Error> {
    match AssertUnwindSafe(fut).catch_unwind().await {
        Ok(r) => r,
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            Err(Error::Target(format!("internal error in llmbench: {msg}")))
        }
    }
}

/// Run `fut` on the runtime and wait for it with the GIL released. Between slices: check
/// signals (Ctrl-C cancels via `cancel`, then waits for the run to wind down and returns its
/// result) and call `tick`.
fn wait_detached<T: Send + 'static>(
    py: Python<'_>,
    fut: impl Future<Output = Result<T, Error>> + Send + 'static,
    cancel: CancellationToken,
    mut tick: impl FnMut(Python<'_>) -> PyResult<()>,
) -> PyResult<T> {
    let (tx, rx) = mpsc::channel();
    runtime().spawn(async move {
        let _ = tx.send(no_panic(fut).await);
    });
    let mut cancelled = false;
    let mut rx = rx;
    loop {
        let slice = Duration::from_millis(if cancelled { 200 } else { 50 });
        // The receiver is not Sync: move it into the detached closure and back.
        let (got, back) = py.detach(move || (rx.recv_timeout(slice), rx));
        rx = back;
        match got {
            Ok(result) => return result.map_err(to_pyerr),
            Err(RecvTimeoutError::Disconnected) => {
                return Err(errors::LlmbenchError::new_err(
                    "the engine task ended without a result",
                ))
            }
            Err(RecvTimeoutError::Timeout) => {
                if !cancelled {
                    if let Err(e) = py.check_signals() {
                        // Cancel everything in flight; keep waiting so the records already
                        // measured come back (the engine returns promptly once cancelled).
                        cancel.cancel();
                        cancelled = true;
                        if !e.is_instance_of::<pyo3::exceptions::PyKeyboardInterrupt>(py) {
                            return Err(e);
                        }
                        continue;
                    }
                    tick(py)?;
                }
            }
        }
    }
}

fn progress_dict<'py>(py: Python<'py>, p: &Progress) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    let ok = p.ok.load(Ordering::Relaxed);
    let ttft_sum = p.ttft_sum_ns.load(Ordering::Relaxed);
    let start = p.stage_start_ns.load(Ordering::Relaxed);
    let elapsed_s = crate::clock::now_ns().saturating_sub(start) as f64 / 1e9;
    let tokens = p.tokens.load(Ordering::Relaxed);
    d.set_item("stage", p.stage.load(Ordering::Relaxed))?;
    d.set_item("batch_size", p.batch_size.load(Ordering::Relaxed))?;
    d.set_item("ok", ok)?;
    d.set_item("failed", p.failed.load(Ordering::Relaxed))?;
    d.set_item("tokens", tokens)?;
    d.set_item("elapsed_s", elapsed_s)?;
    d.set_item(
        "output_tok_s",
        if elapsed_s > 0.0 {
            tokens as f64 / elapsed_s
        } else {
            0.0
        },
    )?;
    d.set_item(
        "ttft_mean_ms",
        if ok > 0 {
            ttft_sum as f64 / ok as f64 / 1e6
        } else {
            f64::NAN
        },
    )?;
    Ok(d)
}

/// The record file a run from Python writes: Python reads every record from it, so a
/// config without one would measure and keep nothing.
pub(crate) fn require_records_path(path: Option<&std::path::Path>) -> PyResult<()> {
    match path {
        Some(_) => Ok(()),
        None => Err(to_pyerr(Error::InvalidArgument(
            "records_path is required: the run's records go to that file".into(),
        ))),
    }
}

/// Per-request latencies (`ttft_ms`, `ttft_sched_ms`, `send_lag_ms`, `e2e_ms`,
/// `e2e_sched_ms`, `tpot_ms`) of records given as columns, by the engine's definitions;
/// `t_first_ns`/`t_last_ns` are -1 where a request has none.
#[pyfunction]
fn request_metrics<'py>(
    py: Python<'py>,
    t_sched_ns: numpy::PyReadonlyArray1<'py, u64>,
    t_sent_ns: numpy::PyReadonlyArray1<'py, u64>,
    t_first_ns: numpy::PyReadonlyArray1<'py, i64>,
    t_last_ns: numpy::PyReadonlyArray1<'py, i64>,
    n_out: numpy::PyReadonlyArray1<'py, u32>,
) -> PyResult<Bound<'py, PyDict>> {
    let slice = |e: numpy::AsSliceError| pyo3::exceptions::PyValueError::new_err(e.to_string());
    convert::request_metrics(
        py,
        t_sched_ns.as_slice().map_err(slice)?,
        t_sent_ns.as_slice().map_err(slice)?,
        t_first_ns.as_slice().map_err(slice)?,
        t_last_ns.as_slice().map_err(slice)?,
        n_out.as_slice().map_err(slice)?,
    )
}

/// Run a sweep described by `config` (a dict of `SweepConfig`, with its `records_path`).
/// Blocks with the GIL released; `progress`, if given, is called about twice a second with
/// a dict of counters. Returns the sweep's output (`convert::SweepResult` as a dict:
/// `stages`, `server_info`, `warnings`, `interrupted` — true after Ctrl-C, with
/// everything measured before it — ...); the records are in the record file.
#[pyfunction]
#[pyo3(signature = (config, progress=None))]
fn run_sweep<'py>(
    py: Python<'py>,
    config: &Bound<'py, PyAny>,
    progress: Option<Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let config: SweepConfig = from_py("sweep config", config)?;
    require_records_path(config.records_path.as_deref())?;
    let cancel = CancellationToken::new();
    let counters = Arc::new(Progress::default());
    let fut = engine_run_sweep(config, cancel.clone(), counters.clone());
    let mut last_tick = std::time::Instant::now();
    let out = wait_detached(py, fut, cancel, |py| {
        if let Some(cb) = &progress {
            if last_tick.elapsed() >= Duration::from_millis(500) {
                last_tick = std::time::Instant::now();
                cb.call1((progress_dict(py, &counters)?,))?;
            }
        }
        Ok(())
    })?;
    convert::sweep_to_py(py, &out)
}

/// Stops an engine run the way Ctrl-C does: what was measured is returned, marked
/// interrupted (`run_sweep_async` takes one, so that a cancelled asyncio task can still
/// collect the run's output and save it).
#[pyclass(name = "StopHandle", module = "llmbench._core")]
#[derive(Default)]
struct PyStopHandle {
    token: CancellationToken,
}

#[pymethods]
impl PyStopHandle {
    #[new]
    fn new() -> Self {
        Self::default()
    }

    /// Stop the run (idempotent).
    fn stop(&self) {
        self.token.cancel();
    }

    /// Whether `stop` was called.
    #[getter]
    fn stopped(&self) -> bool {
        self.token.is_cancelled()
    }
}

/// The async twin of `run_sweep`, for notebooks with a running event loop. `stop.stop()`
/// ends the run promptly with what it measured (marked interrupted); dropping the
/// awaitable (asyncio cancellation without a shield) cancels the run too, and then only
/// the records already on disk remain.
#[pyfunction]
#[pyo3(signature = (config, stop=None))]
fn run_sweep_async<'py>(
    py: Python<'py>,
    config: &Bound<'py, PyAny>,
    stop: Option<PyRef<'py, PyStopHandle>>,
) -> PyResult<Bound<'py, PyAny>> {
    let config: SweepConfig = from_py("sweep config", config)?;
    require_records_path(config.records_path.as_deref())?;
    let cancel = stop.map(|s| s.token.clone()).unwrap_or_default();
    pyo3_async_runtimes::tokio::future_into_py(py, async move {
        // Dropping this future (asyncio cancellation) drops the guard, cancelling the run.
        let _guard = cancel.clone().drop_guard();
        let out = no_panic(engine_run_sweep(
            config,
            cancel,
            Arc::new(Progress::default()),
        ))
        .await
        .map_err(to_pyerr)?;
        Python::attach(|py| convert::sweep_to_py(py, &out).map(|d| d.unbind()))
    })
}

/// A sweep output assembled elsewhere (the distributed driver's merge of its workers'
/// stages), checked against the one definition of its shape (`convert::SweepResult`):
/// an unknown or missing key, or a value of the wrong type, is an error naming it.
#[pyfunction]
fn sweep_output<'py>(py: Python<'py>, output: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let parsed: convert::SweepResult = pythonize::depythonize(output)
        .map_err(|e| errors::InvalidArgumentError::new_err(format!("invalid sweep output: {e}")))?;
    parsed.to_py(py)
}

/// An open-loop arrival schedule (offsets in ns from the stage start), exactly as a sweep
/// with the same process, bounds and seed uses it.
#[pyfunction]
#[pyo3(signature = (arrival, max_requests=None, duration_s=None, seed=0))]
fn arrival_schedule<'py>(
    py: Python<'py>,
    arrival: &Bound<'py, PyAny>,
    max_requests: Option<u64>,
    duration_s: Option<f64>,
    seed: u64,
) -> PyResult<Bound<'py, numpy::PyArray1<u64>>> {
    let arrival: crate::loadgen::arrival::Arrival = from_py("arrival process", arrival)?;
    let offsets = crate::loadgen::arrival::schedule(&arrival, max_requests, duration_s, seed)
        .map_err(to_pyerr)?;
    Ok(numpy::PyArray1::from_vec(py, offsets))
}

/// The prompt indices the `requests` first requests of stage `stage` use, for a prompt
/// list of `n_prompts` and a sweep `seed` (the engine's own order).
#[pyfunction]
fn prompt_order(n_prompts: usize, stage: u32, requests: u64, seed: u64) -> Vec<usize> {
    let order = crate::loadgen::prompts::PromptOrder::new(n_prompts, seed);
    (0..requests).map(|j| order.index(stage, j)).collect()
}

/// Parse `requests` scripted streams of `tokens` tokens on this thread, handed over in
/// reads of `read_bytes` (0: one event per read), timestamping every read: the client's
/// parse speed without a socket. Returns `{"tokens", "bytes", "seconds", "tokens_per_s"}`.
#[pyfunction]
#[pyo3(signature = (api="chat", requests=1000, tokens=64, read_bytes=0))]
fn parse_speed<'py>(
    py: Python<'py>,
    api: &str,
    requests: u32,
    tokens: u32,
    read_bytes: usize,
) -> PyResult<Bound<'py, PyDict>> {
    let api: crate::client::Api = serde_json::from_value(serde_json::json!(api))
        .map_err(|_| to_pyerr(Error::InvalidArgument(format!("unknown api {api:?}"))))?;
    let s = py.detach(|| crate::parse_bench::parse_speed(api, requests, tokens, read_bytes));
    let d = PyDict::new(py);
    d.set_item("tokens", s.tokens)?;
    d.set_item("bytes", s.bytes)?;
    d.set_item("seconds", s.seconds)?;
    d.set_item("tokens_per_s", s.tokens_per_s())?;
    Ok(d)
}

/// Write `records` records of `tokens` tokens each (shaped like a real run's) to the record
/// file `path` as fast as the writer takes them: `{"records", "bytes", "seconds",
/// "records_per_s"}`. The writer's throughput, for `benches/long_run.py`.
#[pyfunction]
#[pyo3(signature = (path, records=200_000, tokens=32))]
fn record_write_speed<'py>(
    py: Python<'py>,
    path: std::path::PathBuf,
    records: u64,
    tokens: u32,
) -> PyResult<Bound<'py, PyDict>> {
    let s = py
        .detach(|| crate::record_file::speed::write_speed(&path, records, tokens))
        .map_err(to_pyerr)?;
    let d = PyDict::new(py);
    d.set_item("records", s.records)?;
    d.set_item("bytes", s.bytes)?;
    d.set_item("seconds", s.seconds)?;
    d.set_item("records_per_s", s.records as f64 / s.seconds)?;
    Ok(d)
}

/// Prompts of exactly `n_tokens` tokens each under the given `tokenizer.json`, made of
/// words from `words`, seeded (prompt `i` uses `seed + i`).
#[pyfunction]
fn synthetic_prompts(
    py: Python<'_>,
    tokenizer: std::path::PathBuf,
    n_tokens: Vec<u32>,
    words: Vec<String>,
    seed: u64,
) -> PyResult<Vec<String>> {
    let counter = crate::tokens::TokenCounter::from_file(&tokenizer).map_err(to_pyerr)?;
    py.detach(|| {
        let refs: Vec<&str> = words.iter().map(String::as_str).collect();
        n_tokens
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                counter
                    .synthetic_prompt(n, &refs, seed.wrapping_add(i as u64))
                    .ok_or_else(|| {
                        errors::InvalidArgumentError::new_err(format!(
                            "could not build a prompt of exactly {n} tokens with this tokenizer"
                        ))
                    })
            })
            .collect()
    })
}

/// Token counts of `texts` under a `tokenizer.json` (without special tokens).
#[pyfunction]
fn count_tokens(
    py: Python<'_>,
    tokenizer: std::path::PathBuf,
    texts: Vec<String>,
) -> PyResult<Vec<u32>> {
    let counter = crate::tokens::TokenCounter::from_file(&tokenizer).map_err(to_pyerr)?;
    Ok(py.detach(|| texts.iter().map(|t| counter.count(t)).collect()))
}

/// Nanoseconds on the run clock (the clock every record uses).
#[pyfunction]
fn now_ns() -> u64 {
    crate::clock::now_ns()
}

/// The built-in scripted server, running in this process on the shared runtime.
#[pyclass(name = "SimServer", module = "llmbench._core")]
struct PySimServer {
    inner: Option<SimServer>,
    url: String,
    port: u16,
}

#[pymethods]
impl PySimServer {
    #[new]
    #[pyo3(signature = (config=None, host="127.0.0.1", port=0))]
    fn new(
        py: Python<'_>,
        config: Option<&Bound<'_, PyAny>>,
        host: &str,
        port: u16,
    ) -> PyResult<Self> {
        let config: SimConfig = match config {
            Some(c) => from_py("sim config", c)?,
            None => SimConfig::default(),
        };
        let host = host.to_string();
        let server = py
            .detach(|| runtime().block_on(SimServer::start(config, &host, port)))
            .map_err(to_pyerr)?;
        Ok(PySimServer {
            url: server.url(),
            port: server.addr().port(),
            inner: Some(server),
        })
    }

    /// `http://127.0.0.1:PORT`.
    #[getter]
    fn url(&self) -> String {
        self.url.clone()
    }

    /// The bound port.
    #[getter]
    fn port(&self) -> u16 {
        self.port
    }

    /// The served model name.
    #[getter]
    fn model(&self) -> String {
        self.inner
            .as_ref()
            .map(|s| s.config().model.clone())
            .unwrap_or_default()
    }

    /// Requests served so far.
    #[getter]
    fn served(&self) -> u64 {
        self.inner.as_ref().map(|s| s.served()).unwrap_or(0)
    }

    /// The configuration, as a dict (None once closed).
    #[getter]
    fn config<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.inner
            .as_ref()
            .map(|s| {
                pythonize::pythonize(py, s.config())
                    .map_err(|e| errors::LlmbenchError::new_err(e.to_string()))
            })
            .transpose()
    }

    /// Take the server-side truth recorded so far (needs `record_truth`): a dict with
    /// `request_id` (-1 where the client sent none), `t_received_ns`, and the chunks as
    /// flat arrays (`chunk_offsets`, `chunk_t_ns`, `chunk_tokens`).
    fn take_truth<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let truth = self
            .inner
            .as_ref()
            .map(|s| s.take_truth())
            .unwrap_or_default();
        convert::truth_to_columns(py, &truth)
    }

    /// Whether the server is running.
    #[getter]
    fn running(&self) -> bool {
        self.inner.is_some()
    }

    /// Stop the server (idempotent).
    fn close(&mut self, py: Python<'_>) {
        if let Some(server) = self.inner.take() {
            py.detach(|| runtime().block_on(server.shutdown()));
        }
    }
}

/// Tasks alive on the engine's runtime right now (a leak check: once a sweep has returned,
/// none of its request, stage or connection tasks may remain).
#[pyfunction]
fn alive_tasks() -> usize {
    runtime().metrics().num_alive_tasks()
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // Share our runtime with pyo3-async-runtimes (ignore "already initialised").
    let _ = pyo3_async_runtimes::tokio::init_with_runtime(runtime());
    errors::register(m)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(run_sweep, m)?)?;
    m.add_function(wrap_pyfunction!(run_sweep_async, m)?)?;
    m.add_function(wrap_pyfunction!(sweep_output, m)?)?;
    m.add_class::<PyStopHandle>()?;
    m.add_function(wrap_pyfunction!(now_ns, m)?)?;
    m.add_function(wrap_pyfunction!(request_metrics, m)?)?;
    m.add_function(wrap_pyfunction!(alive_tasks, m)?)?;
    m.add_function(wrap_pyfunction!(settings, m)?)?;
    m.add_function(wrap_pyfunction!(check_sweep, m)?)?;
    m.add_function(wrap_pyfunction!(check_slo, m)?)?;
    m.add_function(wrap_pyfunction!(default_requests_for, m)?)?;
    m.add_function(wrap_pyfunction!(redact_url, m)?)?;
    m.add_function(wrap_pyfunction!(summarize_record_file, m)?)?;
    m.add_function(wrap_pyfunction!(keep_complete_stages, m)?)?;
    m.add_function(wrap_pyfunction!(stage_schedule, m)?)?;
    m.add_function(wrap_pyfunction!(arrival_schedule, m)?)?;
    m.add_function(wrap_pyfunction!(prompt_order, m)?)?;
    m.add_function(wrap_pyfunction!(synthetic_prompts, m)?)?;
    m.add_function(wrap_pyfunction!(count_tokens, m)?)?;
    m.add_function(wrap_pyfunction!(parse_speed, m)?)?;
    m.add_function(wrap_pyfunction!(record_write_speed, m)?)?;
    m.add_class::<PySimServer>()?;
    m.add_class::<baseline::PyBaselineServer>()?;
    m.add_function(wrap_pyfunction!(baseline::baseline_run, m)?)?;
    m.add_class::<baseline::PyBaselineStudy>()?;
    m.add_class::<telemetry::PyGpuSampler>()?;
    m.add_class::<telemetry::PyMetricsScraper>()?;
    m.add_function(wrap_pyfunction!(telemetry::list_gpus, m)?)?;
    m.add_function(wrap_pyfunction!(telemetry::parse_metrics, m)?)?;
    m.add_function(wrap_pyfunction!(telemetry::model_arch, m)?)?;
    Ok(())
}
