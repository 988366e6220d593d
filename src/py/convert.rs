//! Sweep results into Python: summaries as dicts (the request records stay in the record
//! file, which Python reads itself), per-request latencies of record-file columns, and the
//! scripted server's truth as columns of numpy arrays.

use numpy::PyArray1;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

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

/// The whole sweep output.
pub fn sweep_to_dict<'py>(py: Python<'py>, out: &SweepOutput) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    let stages = PyList::empty(py);
    for st in &out.stages {
        let s = PyDict::new(py);
        s.set_item("index", st.index)?;
        s.set_item("batch_size", st.batch_size)?;
        s.set_item("target_rate", st.target_rate)?;
        s.set_item("interrupted", st.interrupted)?;
        s.set_item("summary", summary_to_dict(py, &st.summary)?)?;
        stages.append(s)?;
    }
    d.set_item("stages", stages)?;
    d.set_item("server_info_json", out.server_info.to_string())?;
    d.set_item("warnings", out.warnings.clone())?;
    d.set_item("interrupted", out.interrupted)?;
    d.set_item("records_error", out.records_error.clone())?;
    d.set_item("t_start_ns", out.t_start_ns)?;
    d.set_item("unix_anchor_ns", crate::clock::unix_anchor_ns())?;
    d.set_item("monotonic_anchor_ns", crate::clock::monotonic_anchor_ns())?;
    Ok(d)
}
