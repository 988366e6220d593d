//! Reads a record file back (for `--resume` and tests), one batch at a time. A file cut
//! anywhere (a crash, a full disk) gives every whole batch before the cut, and says what
//! it dropped; it is never an error. Also reads the JSON-lines record files of earlier
//! versions.

use std::cell::Cell;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;
use std::rc::Rc;

use arrow_ipc::reader::StreamReader;

use super::batch::records_of_batch;
use crate::error::{Error, Result};
use crate::record::RequestRecord;

/// What reading a record file found besides its records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadSummary {
    /// Records read.
    pub records: u64,
    /// Whole batches read.
    pub batches: u64,
    /// Bytes after the last whole batch that could not be read (a cut tail), 0 when the
    /// file ended cleanly.
    pub dropped_bytes: u64,
    /// Why the tail was dropped, when it was.
    pub note: Option<String>,
}

/// Counts the bytes the stream reader took, so a cut tail can be measured.
struct Counting<R> {
    inner: R,
    taken: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.taken.set(self.taken.get() + n as u64);
        Ok(n)
    }
}

/// Call `f` with every record of the file at `path`, in file order, one batch in memory at
/// a time.
pub fn for_each_record(path: &Path, mut f: impl FnMut(RequestRecord)) -> Result<ReadSummary> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let taken = Rc::new(Cell::new(0u64));
    let source = Counting {
        inner: BufReader::new(file),
        taken: taken.clone(),
    };
    let mut summary = ReadSummary::default();
    let cut = |summary: &mut ReadSummary, good: u64, why: String| {
        summary.dropped_bytes = len.saturating_sub(good);
        summary.note = Some(format!(
            "{}: kept {} whole batches ({} records); dropped the last {} bytes ({why})",
            path.display(),
            summary.batches,
            summary.records,
            summary.dropped_bytes
        ));
    };
    let mut reader = match StreamReader::try_new(source, None) {
        Ok(r) => r,
        Err(e) => {
            cut(&mut summary, 0, e.to_string());
            return Ok(summary);
        }
    };
    let mut good = taken.get();
    loop {
        match reader.next() {
            None => break,
            Some(Ok(batch)) => {
                let records = records_of_batch(&batch)
                    .map_err(|e| Error::InvalidArgument(format!("{}: {e}", path.display())))?;
                summary.records += records.len() as u64;
                summary.batches += 1;
                records.into_iter().for_each(&mut f);
                good = taken.get();
            }
            Some(Err(e)) => {
                cut(&mut summary, good, e.to_string());
                break;
            }
        }
    }
    Ok(summary)
}

/// Every record of a record file.
pub fn read_records(path: &Path) -> Result<(Vec<RequestRecord>, ReadSummary)> {
    let mut records = Vec::new();
    let summary = for_each_record(path, |r| records.push(r))?;
    Ok((records, summary))
}

/// Read a JSON-lines record file (`requests_<target>.jsonl`, the format before the record
/// file). A line that does not parse (the last one, cut by a crash) is skipped and
/// counted, never fatal.
pub fn read_jsonl(path: &Path) -> Result<(Vec<RequestRecord>, usize)> {
    let text = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let mut records = Vec::new();
    let mut bad = 0;
    for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        match serde_json::from_slice::<RequestRecord>(line) {
            Ok(r) => records.push(r),
            Err(_) => bad += 1,
        }
    }
    Ok((records, bad))
}
