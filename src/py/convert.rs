//! Sweep results into Python: request records as columns of numpy arrays (cheap for a
//! million rows), chunk times as one flat array with offsets, summaries as dicts.

use numpy::PyArray1;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::loadgen::SweepOutput;
use crate::metrics::{Cell, RequestMetrics, Summary};
use crate::record::RequestRecord;

fn opt_f64(v: Option<f64>) -> f64 {
    v.unwrap_or(f64::NAN)
}

fn opt_i64(v: Option<u64>) -> i64 {
    v.map(|x| x as i64).unwrap_or(-1)
}

/// Request records as a dict of equal-length columns.
pub fn records_to_columns<'py>(
    py: Python<'py>,
    records: &[RequestRecord],
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    macro_rules! col {
        ($name:expr, $f:expr) => {
            d.set_item(
                $name,
                PyArray1::from_vec(py, records.iter().map($f).collect::<Vec<_>>()),
            )?;
        };
    }
    macro_rules! list {
        ($name:expr, $f:expr) => {
            d.set_item(
                $name,
                PyList::new(py, records.iter().map($f).collect::<Vec<_>>())?,
            )?;
        };
    }
    let metrics: Vec<RequestMetrics> = records.iter().map(RequestMetrics::of).collect();
    col!("id", |r: &RequestRecord| r.id);
    col!("stage", |r: &RequestRecord| r.stage);
    col!("batch_size", |r: &RequestRecord| r.batch_size);
    col!("warmup", |r: &RequestRecord| r.warmup);
    col!("prompt_index", |r: &RequestRecord| r.prompt_index);
    col!("ok", |r: &RequestRecord| r.ok());
    list!("error_kind", |r: &RequestRecord| r
        .error_kind
        .map(|k| k.as_str()));
    list!("error", |r: &RequestRecord| r.error.clone());
    col!("http_status", |r: &RequestRecord| r
        .http_status
        .map(i32::from)
        .unwrap_or(-1));
    col!("t_sched_ns", |r: &RequestRecord| r.t_sched);
    col!("t_sent_ns", |r: &RequestRecord| r.t_sent);
    col!("t_headers_ns", |r: &RequestRecord| opt_i64(r.t_headers));
    col!("t_first_ns", |r: &RequestRecord| opt_i64(r.t_first()));
    col!("t_last_ns", |r: &RequestRecord| opt_i64(r.t_last()));
    col!("t_done_ns", |r: &RequestRecord| r.t_done);
    let m = &metrics;
    d.set_item(
        "ttft_ms",
        PyArray1::from_vec(py, m.iter().map(|x| opt_f64(x.ttft_ms)).collect()),
    )?;
    d.set_item(
        "ttft_sched_ms",
        PyArray1::from_vec(py, m.iter().map(|x| opt_f64(x.ttft_sched_ms)).collect()),
    )?;
    d.set_item(
        "send_lag_ms",
        PyArray1::from_vec(py, m.iter().map(|x| x.send_lag_ms).collect()),
    )?;
    d.set_item(
        "e2e_ms",
        PyArray1::from_vec(py, m.iter().map(|x| opt_f64(x.e2e_ms)).collect()),
    )?;
    d.set_item(
        "e2e_sched_ms",
        PyArray1::from_vec(py, m.iter().map(|x| opt_f64(x.e2e_sched_ms)).collect()),
    )?;
    d.set_item(
        "tpot_ms",
        PyArray1::from_vec(py, m.iter().map(|x| opt_f64(x.tpot_ms)).collect()),
    )?;
    col!("n_in", |r: &RequestRecord| r
        .n_in
        .map(i64::from)
        .unwrap_or(-1));
    list!("n_in_source", |r: &RequestRecord| r.n_in_source.as_str());
    col!("n_out", |r: &RequestRecord| r.n_out);
    list!("n_out_source", |r: &RequestRecord| r.n_out_source.as_str());
    col!("n_out_streamed", |r: &RequestRecord| r.n_out_streamed());
    col!("n_chunks", |r: &RequestRecord| r.chunks.len() as u32);
    list!("chunk_token_source", |r: &RequestRecord| r
        .chunk_token_source
        .as_str());
    list!("finish_reason", |r: &RequestRecord| r.finish_reason.clone());
    Ok(d)
}

/// Every record's chunks as flat arrays: record `i` owns `offsets[i]..offsets[i + 1]`.
pub fn chunks_to_columns<'py>(
    py: Python<'py>,
    records: &[RequestRecord],
) -> PyResult<Bound<'py, PyDict>> {
    let mut offsets = Vec::with_capacity(records.len() + 1);
    let total: usize = records.iter().map(|r| r.chunks.len()).sum();
    let mut times = Vec::with_capacity(total);
    let mut tokens = Vec::with_capacity(total);
    offsets.push(0u64);
    for r in records {
        for (t, k) in r.chunks.iter() {
            times.push(t);
            tokens.push(k);
        }
        offsets.push(times.len() as u64);
    }
    let d = PyDict::new(py);
    d.set_item("offsets", PyArray1::from_vec(py, offsets))?;
    d.set_item("t_ns", PyArray1::from_vec(py, times))?;
    d.set_item("tokens", PyArray1::from_vec(py, tokens))?;
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
    d.set_item("records", records_to_columns(py, &out.records)?)?;
    d.set_item("chunks", chunks_to_columns(py, &out.records)?)?;
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
    d.set_item("t_start_ns", out.t_start_ns)?;
    d.set_item("unix_anchor_ns", crate::clock::unix_anchor_ns())?;
    d.set_item("monotonic_anchor_ns", crate::clock::monotonic_anchor_ns())?;
    Ok(d)
}
