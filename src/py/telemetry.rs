//! Python classes for telemetry: the NVML sampler, the `/metrics` scraper, and the
//! KV-cache architecture helper.

use std::time::Duration;

use numpy::PyArray1;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use super::errors::to_pyerr;
use crate::runtime::runtime;
use crate::telemetry::kv::ModelArch;
use crate::telemetry::nvml::{GpuSampler, SamplerConfig, SamplerOutput};
use crate::telemetry::prom::{ScrapeOutput, Scraper};

fn opt_f64<T: Into<f64> + Copy>(v: Option<T>) -> f64 {
    v.map(Into::into).unwrap_or(f64::NAN)
}

fn sampler_output_to_dict<'py>(py: Python<'py>, o: &SamplerOutput) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    let s = &o.samples;
    let cols = PyDict::new(py);
    cols.set_item(
        "t_ns",
        PyArray1::from_vec(py, s.iter().map(|x| x.t_ns).collect()),
    )?;
    cols.set_item(
        "gpu",
        PyArray1::from_vec(py, s.iter().map(|x| x.gpu).collect()),
    )?;
    // u64 byte counts fit f64 exactly below 2^53 (8 PiB): fine for memory sizes.
    cols.set_item(
        "mem_used_bytes",
        PyArray1::from_vec(
            py,
            s.iter()
                .map(|x| opt_f64(x.mem_used.map(|v| v as f64)))
                .collect(),
        ),
    )?;
    cols.set_item(
        "mem_total_bytes",
        PyArray1::from_vec(
            py,
            s.iter()
                .map(|x| opt_f64(x.mem_total.map(|v| v as f64)))
                .collect(),
        ),
    )?;
    cols.set_item(
        "util_gpu_pct",
        PyArray1::from_vec(py, s.iter().map(|x| opt_f64(x.util_gpu)).collect()),
    )?;
    cols.set_item(
        "util_mem_pct",
        PyArray1::from_vec(py, s.iter().map(|x| opt_f64(x.util_mem)).collect()),
    )?;
    cols.set_item(
        "power_w",
        PyArray1::from_vec(py, s.iter().map(|x| opt_f64(x.power_mw) / 1e3).collect()),
    )?;
    cols.set_item(
        "energy_j",
        PyArray1::from_vec(
            py,
            s.iter()
                .map(|x| opt_f64(x.energy_mj.map(|v| v as f64)) / 1e3)
                .collect(),
        ),
    )?;
    cols.set_item(
        "sm_clock_mhz",
        PyArray1::from_vec(py, s.iter().map(|x| opt_f64(x.sm_clock_mhz)).collect()),
    )?;
    cols.set_item(
        "temp_c",
        PyArray1::from_vec(py, s.iter().map(|x| opt_f64(x.temp_c)).collect()),
    )?;
    d.set_item("samples", cols)?;
    let p = &o.processes;
    let procs = PyDict::new(py);
    procs.set_item(
        "t_ns",
        PyArray1::from_vec(py, p.iter().map(|x| x.t_ns).collect()),
    )?;
    procs.set_item(
        "gpu",
        PyArray1::from_vec(py, p.iter().map(|x| x.gpu).collect()),
    )?;
    procs.set_item(
        "pid",
        PyArray1::from_vec(py, p.iter().map(|x| x.pid).collect()),
    )?;
    procs.set_item(
        "mem_used_bytes",
        PyArray1::from_vec(
            py,
            p.iter()
                .map(|x| opt_f64(x.mem_used.map(|v| v as f64)))
                .collect(),
        ),
    )?;
    d.set_item("processes", procs)?;
    let gpus = PyList::empty(py);
    for g in &o.gpus {
        let gd = PyDict::new(py);
        gd.set_item("index", g.index)?;
        gd.set_item("name", &g.name)?;
        gd.set_item("uuid", &g.uuid)?;
        gd.set_item("mem_total_bytes", g.mem_total)?;
        gpus.append(gd)?;
    }
    d.set_item("gpus", gpus)?;
    d.set_item("rounds", o.rounds)?;
    d.set_item("overruns", o.overruns)?;
    d.set_item("period_ns", o.period_ns)?;
    d.set_item("t_start_ns", o.t_start_ns)?;
    d.set_item("t_stop_ns", o.t_stop_ns)?;
    d.set_item("busy_ns", o.busy_ns)?;
    d.set_item("cpu_ns", o.cpu_ns)?;
    let queries = PyDict::new(py);
    for (i, name) in crate::telemetry::nvml::QUERIES.iter().enumerate() {
        if o.query_count[i] > 0 {
            queries.set_item(*name, o.query_ns[i] as f64 / o.query_count[i] as f64 / 1e3)?;
        }
    }
    d.set_item("query_us", queries)?;
    Ok(d)
}

/// The NVML sampling thread (see `telemetry::nvml`).
#[pyclass(name = "GpuSampler", module = "llmbench._core")]
pub struct PyGpuSampler {
    inner: Option<GpuSampler>,
}

#[pymethods]
impl PyGpuSampler {
    /// Start sampling with a `SamplerConfig` dict; raises NvmlUnavailableError without a
    /// driver or GPU.
    #[new]
    #[pyo3(signature = (config=None))]
    fn new(config: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let config: SamplerConfig = match config {
            Some(c) => super::from_py("sampler config", c)?,
            None => SamplerConfig::default(),
        };
        let inner = GpuSampler::start(config).map_err(to_pyerr)?;
        Ok(PyGpuSampler { inner: Some(inner) })
    }

    /// Stop (idempotent) and return the samples as columns.
    fn stop<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let out = match self.inner.take() {
            Some(s) => py.detach(|| s.stop()),
            None => SamplerOutput::default(),
        };
        sampler_output_to_dict(py, &out)
    }
}

/// The GPUs NVML sees, as dicts; raises NvmlUnavailableError without a driver.
#[pyfunction]
pub fn list_gpus<'py>(py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
    let nvml = crate::telemetry::nvml::open().map_err(to_pyerr)?;
    let gpus = crate::telemetry::nvml::list_gpus(&nvml).map_err(to_pyerr)?;
    let out = PyList::empty(py);
    for g in gpus {
        let d = PyDict::new(py);
        d.set_item("index", g.index)?;
        d.set_item("name", g.name)?;
        d.set_item("uuid", g.uuid)?;
        d.set_item("mem_total_bytes", g.mem_total)?;
        out.append(d)?;
    }
    Ok(out)
}

fn scrape_output_to_json(o: &ScrapeOutput) -> String {
    serde_json::to_string(o).unwrap_or_else(|_| "{}".into())
}

/// Polls a Prometheus `/metrics` URL on the shared runtime.
#[pyclass(name = "MetricsScraper", module = "llmbench._core")]
pub struct PyMetricsScraper {
    inner: Option<Scraper>,
}

#[pymethods]
impl PyMetricsScraper {
    /// Start polling `url` every `period_ms`.
    #[new]
    fn new(url: String, period_ms: f64) -> PyResult<Self> {
        if !(period_ms.is_finite() && period_ms >= 10.0) {
            return Err(super::errors::InvalidArgumentError::new_err(
                "metrics scrape period must be at least 10 ms",
            ));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| super::errors::LlmbenchError::new_err(format!("HTTP client: {e}")))?;
        let _guard = runtime().enter();
        Ok(PyMetricsScraper {
            inner: Some(Scraper::start(
                http,
                url,
                Duration::from_secs_f64(period_ms / 1e3),
            )),
        })
    }

    /// Stop (idempotent) and return what was collected, as JSON: `url`, `points`
    /// (`t_ns`, `values`), `info`, `errors`, `attempts`.
    fn stop(&mut self, py: Python<'_>) -> String {
        match self.inner.take() {
            Some(s) => py.detach(|| scrape_output_to_json(&runtime().block_on(s.stop()))),
            None => scrape_output_to_json(&ScrapeOutput::default()),
        }
    }
}

/// Parse a Prometheus exposition into the kept series and info labels, as JSON.
#[pyfunction]
pub fn parse_metrics(text: &str) -> String {
    let (values, info) = crate::telemetry::prom::reduce(&crate::telemetry::prom::parse(text));
    serde_json::json!({"values": values, "info": info}).to_string()
}

/// A model's KV-cache architecture from a preset name or a `config.json` path, as a dict
/// with `bytes_per_token` and the `formula`.
#[pyfunction]
#[pyo3(signature = (preset=None, config_path=None, dtype_bytes=None))]
pub fn model_arch<'py>(
    py: Python<'py>,
    preset: Option<&str>,
    config_path: Option<std::path::PathBuf>,
    dtype_bytes: Option<u32>,
) -> PyResult<Bound<'py, PyDict>> {
    let arch = match (preset, config_path) {
        (Some(p), None) => ModelArch::preset(p, dtype_bytes.unwrap_or(2)).map_err(to_pyerr)?,
        (None, Some(path)) => {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| to_pyerr(crate::error::Error::io(path.clone(), e)))?;
            let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
                super::errors::InvalidArgumentError::new_err(format!(
                    "{} is not JSON: {e}",
                    path.display()
                ))
            })?;
            ModelArch::from_config(&value, dtype_bytes).map_err(to_pyerr)?
        }
        _ => {
            return Err(super::errors::InvalidArgumentError::new_err(
                "give exactly one of preset or config_path",
            ))
        }
    };
    let d = PyDict::new(py);
    d.set_item("name", &arch.name)?;
    d.set_item("layers", arch.layers)?;
    d.set_item("kv_heads", arch.kv_heads)?;
    d.set_item("head_dim", arch.head_dim)?;
    d.set_item("dtype_bytes", arch.dtype_bytes)?;
    d.set_item("bytes_per_token", arch.bytes_per_token())?;
    d.set_item("formula", arch.formula())?;
    Ok(d)
}
