//! Bindings of the naive baseline: the in-process study and the HTTP server.

use pyo3::prelude::*;
use pyo3::types::PyDict;
use tokio_util::sync::CancellationToken;

use super::errors::to_pyerr;
use super::{convert, from_py, wait_detached};
use crate::baseline::bench::{run, BaselineRun};
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
) -> PyResult<Bound<'py, PyDict>> {
    let config: BaselineRun = from_py("baseline config", config)?;
    let cancel = CancellationToken::new();
    let token = cancel.clone();
    let fut = async move {
        tokio::task::spawn_blocking(move || run(&config, &token))
            .await
            .map_err(|e| Error::Model(format!("the baseline thread failed: {e}")))?
    };
    let out = wait_detached(py, fut, cancel, |_| Ok(()))?;
    convert::sweep_to_dict(py, &out)
}

/// The baseline served over HTTP (OpenAI-compatible), in this process.
#[pyclass(name = "BaselineServer", module = "llmbench._core")]
pub struct PyBaselineServer {
    inner: Option<BaselineServer>,
    url: String,
    model: String,
    info_json: String,
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
            info_json: server.info().to_string(),
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

    /// What the server says about itself (`/info`), as JSON.
    fn info_json(&self) -> String {
        self.info_json.clone()
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
