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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::RequestRecord;

    fn record(id: u64) -> RequestRecord {
        crate::test_support::record(id, 0, false, None)
    }

    #[test]
    fn a_full_disk_is_remembered_not_raised() {
        // /dev/full fails every write with ENOSPC, like a disk that just filled up.
        let mut sink = RecordSink::open(Path::new("/dev/full")).expect("open");
        sink.write(&record(0));
        sink.write(&record(1));
        let err = sink.error().expect("the first failure is kept").to_string();
        assert!(err.contains("after 0 records"), "{err}");
        assert!(err.to_lowercase().contains("space"), "{err}");
    }

    #[test]
    fn records_are_whole_lines_on_disk_as_they_complete() {
        let path = std::env::temp_dir().join(format!("llmbench-sink-{}.jsonl", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let mut sink = RecordSink::open(&path).expect("open");
        sink.write(&record(0));
        // Readable before the sink is closed or flushed by anyone else.
        let (back, bad) = crate::loadgen::resume::read_records(&path).expect("read");
        assert_eq!((back.len(), bad), (1, 0));
        sink.write(&record(1));
        assert_eq!(
            crate::loadgen::resume::read_records(&path).expect("read").0,
            vec![record(0), record(1)]
        );
        let _ = std::fs::remove_file(&path);
    }
}
