//! Bindings of the naive baseline: the in-process study and the HTTP server.

use pyo3::prelude::*;
use tokio_util::sync::CancellationToken;

use super::errors::to_pyerr;
use super::{convert, from_py, wait_detached};
use crate::baseline::bench::{run, BaselineRun};
use crate::baseline::describe_model;
use crate::baseline::generate::BatchOutput;
use crate::baseline::recorder::{prompt_ids, StudyRecorder, WARMUP_STAGE};
use crate::baseline::serve::{BaselineServer, ServeConfig};
use crate::error::Error;
use crate::runtime::runtime;

/// Run the in-process baseline study described by `config` (a dict of `BaselineRun`).
/// Blocks with the GIL released; Ctrl-C stops at the next decode step and returns what
/// was measured (`interrupted` true). Returns the same dict as `run_sweep`.
#[pyfunction]
pub fn baseline_run<'py>(
    py: Python<'py>,
    config: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let config: BaselineRun = from_py("baseline config", config)?;
    super::require_records_path(config.records_path.as_deref())?;
    let cancel = CancellationToken::new();
    let token = cancel.clone();
    let fut = async move {
        tokio::task::spawn_blocking(move || run(&config, &token))
            .await
            .map_err(|e| Error::Model(format!("the baseline thread failed: {e}")))?
    };
    let out = wait_detached(py, fut, cancel, |_| Ok(()))?;
    convert::sweep_to_py(py, &out)
}

/// The baseline served over HTTP (OpenAI-compatible), in this process.
#[pyclass(name = "BaselineServer", module = "llmbench._core")]
pub struct PyBaselineServer {
    inner: Option<BaselineServer>,
    url: String,
    model: String,
    info: serde_json::Value,
}

#[pymethods]
impl PyBaselineServer {
    #[new]
    #[pyo3(signature = (config, host="127.0.0.1", port=0))]
    fn new(py: Python<'_>, config: &Bound<'_, PyAny>, host: &str, port: u16) -> PyResult<Self> {
        let config: ServeConfig = from_py("baseline server config", config)?;
        let host = host.to_string();
        let server = py
            .detach(|| runtime().block_on(BaselineServer::start(config, &host, port)))
            .map_err(to_pyerr)?;
        Ok(PyBaselineServer {
            url: server.url(),
            model: server.model().to_string(),
            info: server.info().clone(),
            inner: Some(server),
        })
    }

    /// `http://127.0.0.1:PORT`.
    #[getter]
    fn url(&self) -> String {
        self.url.clone()
    }

    /// The model name requests use.
    #[getter]
    fn model(&self) -> String {
        self.model.clone()
    }

    /// What the server says about itself (`/info`), as a dict.
    #[getter]
    fn info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        pythonize::pythonize(py, &self.info)
            .map_err(|e| to_pyerr(Error::InvalidArgument(e.to_string())))
    }

    /// Requests finished so far.
    #[getter]
    fn served(&self) -> u64 {
        self.inner.as_ref().map(|s| s.served()).unwrap_or(0)
    }

    /// Whether the server is running.
    #[getter]
    fn running(&self) -> bool {
        self.inner.is_some()
    }

    /// Stop the server (idempotent); waits for the running batch to end.
    fn close(&mut self, py: Python<'_>) {
        if let Some(mut server) = self.inner.take() {
            py.detach(move || server.stop());
        }
    }
}

/// The baseline study's bookkeeping for an engine that generates in Python (transformers):
/// the prompts of each batch, the records (on disk as each batch ends) and the stage
/// summaries, from the same code as candle's run. Times are `now_ns()` readings.
#[pyclass(name = "BaselineStudy", module = "llmbench._core", unsendable)]
pub struct PyBaselineStudy {
    inner: Option<StudyRecorder>,
    about: serde_json::Value,
}

impl PyBaselineStudy {
    fn study(&mut self) -> PyResult<&mut StudyRecorder> {
        self.inner
            .as_mut()
            .ok_or_else(|| to_pyerr(Error::InvalidArgument("the study is finished".into())))
    }
}

#[pymethods]
impl PyBaselineStudy {
    /// Check `config` (a dict of `BaselineRun`), resolve the model's shape, tokenize the
    /// prompts and open the record file. No weights are loaded.
    #[new]
    fn new(config: &Bound<'_, PyAny>) -> PyResult<Self> {
        let t_start_ns = crate::clock::now_ns();
        let run: BaselineRun = from_py("baseline config", config)?;
        super::require_records_path(run.records_path.as_deref())?;
        let build = || -> crate::error::Result<(StudyRecorder, serde_json::Value)> {
            let shape = run.model.shape()?;
            let dtype = run.model.dtype()?;
            let codec = run.model.codec(&shape)?;
            let prompts = prompt_ids(&run, &shape, &codec)?;
            let mut about = describe_model(&run.model.model, &shape, dtype, &codec.source);
            about["folder"] = serde_json::json!(run.model.folder());
            let bytes_per_token = shape.arch(dtype).bytes_per_token();
            let study = StudyRecorder::new(&run, prompts, bytes_per_token, t_start_ns)?;
            Ok((study, about))
        };
        let (study, about) = build().map_err(to_pyerr)?;
        Ok(PyBaselineStudy {
            inner: Some(study),
            about,
        })
    }

    /// What the engine runs (`describe_model`, plus the model `folder` or null), as JSON.
    fn about_json(&self) -> String {
        self.about.to_string()
    }

    /// Batch `k` of size `b` in `stage` (`None`: warm-up): a dict of `prompt_index`,
    /// `prompts`, `max_new_tokens`, `ignore_eos`, `sampling` (one entry per row).
    #[pyo3(signature = (b, stage, k))]
    fn batch<'py>(
        &mut self,
        py: Python<'py>,
        b: u32,
        stage: Option<u32>,
        k: u32,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (idx, req) = self.study()?.batch(b, stage.unwrap_or(WARMUP_STAGE), k);
        let mut v = serde_json::to_value(&req)
            .map_err(|e| to_pyerr(Error::InvalidArgument(e.to_string())))?;
        v["prompt_index"] = serde_json::json!(idx);
        pythonize::pythonize(py, &v).map_err(|e| to_pyerr(Error::InvalidArgument(e.to_string())))
    }

    /// Start a measured stage.
    fn begin_stage(&mut self) -> PyResult<()> {
        self.study()?.begin_stage();
        Ok(())
    }

    /// GPU memory in use (bytes), read while a batch held its KV cache.
    fn gpu_used(&mut self, bytes: u64) -> PyResult<()> {
        self.study()?.gpu_used(bytes);
        Ok(())
    }

    /// A finished batch (a dict of `BatchOutput`) for the prompts `prompt_index`.
    fn record(
        &mut self,
        batch: &Bound<'_, PyAny>,
        prompt_index: Vec<usize>,
        stage: u32,
        warmup: bool,
    ) -> PyResult<()> {
        let out: BatchOutput = from_py("batch output", batch)?;
        if out.rows.len() != prompt_index.len() {
            return Err(to_pyerr(Error::InvalidArgument(format!(
                "{} rows for {} prompts",
                out.rows.len(),
                prompt_index.len()
            ))));
        }
        self.study()?.record(out, &prompt_index, stage, warmup);
        Ok(())
    }

    /// Close measured stage `stage` of batch size `b`.
    fn end_stage(&mut self, stage: u32, b: u32, interrupted: bool) -> PyResult<()> {
        self.study()?.end_stage(stage, b, interrupted);
        Ok(())
    }

    /// Everything measured, as the dict `baseline_run` returns; `server_info` (a dict)
    /// describes the engine.
    fn finish<'py>(
        &mut self,
        py: Python<'py>,
        server_info: &Bound<'py, PyAny>,
        interrupted: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let info: serde_json::Value = from_py("server info", server_info)?;
        let study = self
            .inner
            .take()
            .ok_or_else(|| to_pyerr(Error::InvalidArgument("the study is finished".into())))?;
        convert::sweep_to_py(py, &study.finish(info, interrupted))
    }
}
