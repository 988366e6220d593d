//! The engine's one error type. Python maps each variant onto a class of the
//! `LlmbenchError` hierarchy in `src/py/errors.rs`; nothing else converts errors.

use std::path::PathBuf;

/// Everything that can stop a whole run (as opposed to one request, which is recorded as
/// failed and never raises).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The caller asked for something that cannot work (bad sweep settings, bad URL, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The target could not be reached at all (the warm-up request failed to connect).
    #[error("cannot reach {url}: {detail}")]
    Unreachable {
        /// The URL that was tried (credentials redacted).
        url: String,
        /// What went wrong, and what was tried.
        detail: String,
    },
    /// The target answered, but not like a streaming LLM server (wrong model, no SSE, ...).
    #[error("{0}")]
    Target(String),
    /// Reading or writing results failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or folder involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The tokenizer file could not be loaded.
    #[error("tokenizer {path}: {detail}")]
    Tokenizer {
        /// The `tokenizer.json` path.
        path: PathBuf,
        /// What the tokenizers crate said.
        detail: String,
    },
    /// NVML (the NVIDIA driver's management library) is missing or sees no GPU.
    #[error("{0}")]
    NvmlUnavailable(String),
    /// The baseline model could not be loaded or run (missing files, shape mismatch,
    /// unsupported architecture, device errors).
    #[error("{0}")]
    Model(String),
    /// The run was cancelled (Ctrl-C); what was measured is kept.
    #[error("cancelled")]
    Cancelled,
}

/// Shorthand for the engine's results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wrap an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

impl From<candle_core::Error> for Error {
    fn from(e: candle_core::Error) -> Self {
        // With RUST_BACKTRACE set, candle appends a backtrace: keep the message only.
        let text = e.to_string();
        let msg = text.split("\n   0: ").next().unwrap_or(&text).trim_end();
        Error::Model(msg.to_string())
    }
}
