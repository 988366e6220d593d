//! The Python exception hierarchy (rooted at `LlmbenchError`) and the one place engine
//! errors become Python exceptions.

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyKeyboardInterrupt};
use pyo3::prelude::*;

use crate::error::Error;

create_exception!(
    llmbench._core,
    LlmbenchError,
    PyException,
    "Base class of every error llmbench raises."
);
create_exception!(
    llmbench._core,
    InvalidArgumentError,
    LlmbenchError,
    "An argument cannot work (bad URL, empty prompt list, non-positive batch size, ...)."
);
create_exception!(
    llmbench._core,
    UnreachableError,
    LlmbenchError,
    "The target server could not be reached at all."
);
create_exception!(
    llmbench._core,
    TargetError,
    LlmbenchError,
    "The target answered, but not as a streaming LLM server (unknown model, no SSE, ...)."
);
create_exception!(
    llmbench._core,
    ResultsIOError,
    LlmbenchError,
    "Results could not be read or written."
);
create_exception!(
    llmbench._core,
    NvmlUnavailableError,
    LlmbenchError,
    "NVML (the NVIDIA driver's library) is missing or sees no GPU."
);
create_exception!(
    llmbench._core,
    TokenizerError,
    LlmbenchError,
    "The tokenizer file could not be loaded."
);
create_exception!(
    llmbench._core,
    ModelError,
    LlmbenchError,
    "The baseline model could not be loaded or run (missing files, shape mismatch, unsupported architecture, device)."
);

/// Map an engine error onto its Python class.
pub fn to_pyerr(e: Error) -> PyErr {
    let msg = e.to_string();
    match e {
        Error::InvalidArgument(_) => InvalidArgumentError::new_err(msg),
        Error::Unreachable { .. } => UnreachableError::new_err(msg),
        Error::Target(_) => TargetError::new_err(msg),
        Error::Io { .. } => ResultsIOError::new_err(msg),
        Error::Tokenizer { .. } => TokenizerError::new_err(msg),
        Error::NvmlUnavailable(_) => NvmlUnavailableError::new_err(msg),
        Error::Model(_) => ModelError::new_err(msg),
        Error::Cancelled => PyKeyboardInterrupt::new_err("llmbench run cancelled"),
    }
}

/// Register the exception classes on the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("LlmbenchError", py.get_type::<LlmbenchError>())?;
    m.add(
        "InvalidArgumentError",
        py.get_type::<InvalidArgumentError>(),
    )?;
    m.add("UnreachableError", py.get_type::<UnreachableError>())?;
    m.add("TargetError", py.get_type::<TargetError>())?;
    m.add("ResultsIOError", py.get_type::<ResultsIOError>())?;
    m.add("TokenizerError", py.get_type::<TokenizerError>())?;
    m.add("ModelError", py.get_type::<ModelError>())?;
    m.add(
        "NvmlUnavailableError",
        py.get_type::<NvmlUnavailableError>(),
    )?;
    Ok(())
}
