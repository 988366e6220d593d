//! Sweep results into Python: the sweep's output as one typed structure (`SweepResult`,
//! serialized with pythonize; the request records stay in the record file, which Python
//! reads itself), summaries as dicts, per-request latencies of record-file columns, and the
//! scripted server's truth as columns of numpy arrays.

use numpy::PyArray1;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use serde::{Deserialize, Serialize};

use crate::loadgen::SweepOutput;
use crate::metrics::{Cell, RequestMetrics, Summary};

fn opt_f64(v: Option<f64>) -> f64 {
    v.unwrap_or(f64::NAN)
}

/// Per-request latencies (`RequestMetrics`) of rows given as columns: the times in ns
/// (`t_first_ns`/`t_last_ns` -1 where the request has none) and `n_out`. NaN where a
/// latency is undefined.
pub fn request_metrics<'py>(
    py: Python<'py>,
    t_sched: &[u64],
    t_sent: &[u64],
    t_first: &[i64],
    t_last: &[i64],
    n_out: &[u32],
) -> PyResult<Bound<'py, PyDict>> {
    let n = t_sched.len();
    if [t_sent.len(), t_first.len(), t_last.len(), n_out.len()]
        .iter()
        .any(|&l| l != n)
    {
        return Err(pyo3::exceptions::PyValueError::new_err(
            "request_metrics: the columns differ in length",
        ));
    }
    let opt = |t: i64| u64::try_from(t).ok();
    let m: Vec<RequestMetrics> = (0..n)
        .map(|i| {
            RequestMetrics::from_times(
                t_sched[i],
                t_sent[i],
                opt(t_first[i]),
                opt(t_last[i]),
                n_out[i],
            )
        })
        .collect();
    let d = PyDict::new(py);
    let col = |f: fn(&RequestMetrics) -> Option<f64>| -> Vec<f64> {
        m.iter().map(|x| opt_f64(f(x))).collect()
    };
    d.set_item("ttft_ms", PyArray1::from_vec(py, col(|x| x.ttft_ms)))?;
    d.set_item(
        "ttft_sched_ms",
        PyArray1::from_vec(py, col(|x| x.ttft_sched_ms)),
    )?;
    d.set_item(
        "send_lag_ms",
        PyArray1::from_vec(py, col(|x| Some(x.send_lag_ms))),
    )?;
    d.set_item("e2e_ms", PyArray1::from_vec(py, col(|x| x.e2e_ms)))?;
    d.set_item(
        "e2e_sched_ms",
        PyArray1::from_vec(py, col(|x| x.e2e_sched_ms)),
    )?;
    d.set_item("tpot_ms", PyArray1::from_vec(py, col(|x| x.tpot_ms)))?;
    Ok(d)
}

/// The scripted server's truth records as columns (chunks flattened with offsets).
pub fn truth_to_columns<'py>(
    py: Python<'py>,
    truth: &[crate::sim::TruthRecord],
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    let ids: Vec<i64> = truth
        .iter()
        .map(|t| t.request_id.map(|i| i as i64).unwrap_or(-1))
        .collect();
    let received: Vec<u64> = truth.iter().map(|t| t.t_received).collect();
    let mut offsets = vec![0u64];
    let mut times = Vec::new();
    let mut tokens = Vec::new();
    for t in truth {
        times.extend_from_slice(&t.chunk_times);
        tokens.extend_from_slice(&t.chunk_tokens);
        offsets.push(times.len() as u64);
    }
    d.set_item("request_id", PyArray1::from_vec(py, ids))?;
    d.set_item("t_received_ns", PyArray1::from_vec(py, received))?;
    d.set_item("chunk_offsets", PyArray1::from_vec(py, offsets))?;
    d.set_item("chunk_t_ns", PyArray1::from_vec(py, times))?;
    d.set_item("chunk_tokens", PyArray1::from_vec(py, tokens))?;
    Ok(d)
}

/// A summary as an ordered dict (floats keep inf and NaN).
pub fn summary_to_dict<'py>(py: Python<'py>, s: &Summary) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (name, cell) in &s.0 {
        match cell {
            Cell::Int(i) => d.set_item(name, *i)?,
            Cell::Num(x) => d.set_item(name, *x)?,
            Cell::Text(t) => d.set_item(name, t)?,
            Cell::Bool(b) => d.set_item(name, *b)?,
        }
    }
    Ok(d)
}

/// One summary value as it crosses into Python (the engine's `Cell`, or what the
/// distributed driver adds: its own health columns, missing values).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ColumnValue {
    /// A verdict.
    Bool(bool),
    /// A count.
    Int(i64),
    /// A count beyond `i64`.
    UInt(u64),
    /// A measurement (±inf and NaN kept).
    Num(f64),
    /// A label.
    Text(String),
    /// No value.
    Missing,
}

impl From<&Cell> for ColumnValue {
    fn from(c: &Cell) -> Self {
        match c {
            Cell::Int(i) => i64::try_from(*i).map_or(ColumnValue::UInt(*i), ColumnValue::Int),
            Cell::Num(x) => ColumnValue::Num(*x),
            Cell::Text(t) => ColumnValue::Text(t.clone()),
            Cell::Bool(b) => ColumnValue::Bool(*b),
        }
    }
}

/// A stage summary's columns, in order, crossing as a dict.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Columns(pub Vec<(String, ColumnValue)>);

impl Serialize for Columns {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Columns {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Columns;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a dict of summary columns")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<Columns, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, ColumnValue>()? {
                    out.push((k, v));
                }
                Ok(Columns(out))
            }
        }
        d.deserialize_map(Visit)
    }
}

/// One stage of a sweep's output.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageEntry {
    /// Stage index.
    pub index: u32,
    /// Concurrency (0 for an open-loop stage).
    pub batch_size: u32,
    /// Target request rate of an open-loop stage.
    pub target_rate: Option<f64>,
    /// The stage was cut short.
    pub interrupted: bool,
    /// Its summary columns.
    pub summary: Columns,
}

/// A sweep's output as it crosses into Python: the one definition of its shape, for the
/// run in this process (`run_sweep`, `run_sweep_async`) and the distributed driver, which
/// builds its merged output through `sweep_output` (so it cannot drift from this one).
/// The records are in the record file, not here.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepResult {
    /// One entry per stage that started.
    pub stages: Vec<StageEntry>,
    /// What the server says about itself (`/v1/models`, `/version`, `/info`), null where
    /// absent.
    pub server_info: serde_json::Value,
    /// Problems that did not stop the run.
    pub warnings: Vec<String>,
    /// The run was cut short (Ctrl-C, cancellation, lost workers).
    pub interrupted: bool,
    /// The record file's first write error, if any.
    #[serde(default)]
    pub records_error: Option<String>,
    /// Run clock at the start.
    pub t_start_ns: u64,
    /// Unix time of the run clock's zero.
    pub unix_anchor_ns: u64,
    /// `CLOCK_MONOTONIC` at the run clock's zero (None where the clocks are several
    /// machines').
    pub monotonic_anchor_ns: Option<u64>,
}

impl SweepResult {
    /// The output of a sweep run in this process.
    pub fn of(out: &SweepOutput) -> Self {
        SweepResult {
            stages: out
                .stages
                .iter()
                .map(|st| StageEntry {
                    index: st.index,
                    batch_size: st.batch_size,
                    target_rate: st.target_rate,
                    interrupted: st.interrupted,
                    summary: Columns(
                        st.summary
                            .0
                            .iter()
                            .map(|(k, c)| (k.clone(), ColumnValue::from(c)))
                            .collect(),
                    ),
                })
                .collect(),
            server_info: out.server_info.clone(),
            warnings: out.warnings.clone(),
            interrupted: out.interrupted,
            records_error: out.records_error.clone(),
            t_start_ns: out.t_start_ns,
            unix_anchor_ns: crate::clock::unix_anchor_ns(),
            monotonic_anchor_ns: Some(crate::clock::monotonic_anchor_ns()),
        }
    }

    /// As Python objects (dicts, lists, floats keeping NaN).
    pub fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        pythonize::pythonize(py, self).map_err(|e| PyValueError::new_err(e.to_string()))
    }
}

/// The whole sweep output, as Python objects (`SweepResult`).
pub fn sweep_to_py<'py>(py: Python<'py>, out: &SweepOutput) -> PyResult<Bound<'py, PyAny>> {
    SweepResult::of(out).to_py(py)
}
