//! Appends request records to a JSONL file as each request completes, so an interrupted or
//! killed run keeps everything it measured (one line per record, flushed per record).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::record::RequestRecord;

/// A JSONL record file opened for appending.
pub struct RecordSink {
    path: PathBuf,
    file: File,
    /// The first write error, kept so the run can go on and report it at the end.
    error: Option<String>,
    written: u64,
}

impl RecordSink {
    /// Create (or append to) `path`, creating parent folders.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        Ok(RecordSink {
            path: path.to_path_buf(),
            file,
            error: None,
            written: 0,
        })
    }

    /// Append one record as a line. A failed write (disk full) is remembered, not raised:
    /// the record is still kept in memory by the caller.
    pub fn write(&mut self, record: &RequestRecord) {
        if self.error.is_some() {
            return;
        }
        let mut line = match serde_json::to_vec(record) {
            Ok(l) => l,
            Err(e) => {
                self.error = Some(format!("cannot serialize record {}: {e}", record.id));
                return;
            }
        };
        line.push(b'\n');
        // One write call per record: a crash leaves whole lines (at most the last is cut).
        match self.file.write_all(&line) {
            Ok(()) => self.written += 1,
            Err(e) => {
                self.error = Some(format!(
                    "writing {} failed after {} records: {e}",
                    self.path.display(),
                    self.written
                ))
            }
        }
    }

    /// The first write error, if any.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }
}
