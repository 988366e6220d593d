//! Writes request records to the record file from a thread of its own: the run hands each
//! record over as it completes (a channel send, nothing more on the load generator's
//! tasks) and the writer thread batches, compresses and appends them. A batch is written
//! once it holds [`MAX_ROWS`] records or its oldest record waited [`MAX_WAIT`], and
//! whenever the run asks ([`RecordSink::flush`], at every stage's end), so a crash loses at
//! most the last second's records.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arrow_ipc::writer::{IpcWriteOptions, StreamWriter};
use arrow_ipc::CompressionType;

use super::batch::{schema, RecordColumns};
use crate::error::{Error, Result};
use crate::record::RequestRecord;

/// Records per batch: large enough that zstd and the per-batch header cost little (about
/// 2 MB of columns), small enough to keep the writer's memory flat.
pub const MAX_ROWS: usize = 8192;

/// The longest a completed record waits in memory before it is written.
pub const MAX_WAIT: Duration = Duration::from_secs(1);

/// The same for a worker of a distributed run, whose driver collects the file's new
/// batches twice a second: a worker lost mid-stage then takes at most this much of its
/// completed records with it.
pub const SHARE_MAX_WAIT: Duration = Duration::from_millis(100);

enum Msg {
    Record(Box<RequestRecord>),
    /// Write what is buffered, then answer.
    Flush(mpsc::Sender<()>),
}

/// What the writer thread reports back.
#[derive(Default)]
struct Shared {
    written: AtomicU64,
    /// The first error, kept so the run goes on and reports it at the end.
    error: Mutex<Option<String>>,
}

impl Shared {
    fn fail(&self, message: String) {
        if let Ok(mut e) = self.error.lock() {
            e.get_or_insert(message);
        }
    }
}

/// The record file, open for writing (a fresh file: the schema comes first).
pub struct RecordSink {
    path: PathBuf,
    tx: Option<mpsc::Sender<Msg>>,
    thread: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
}

impl RecordSink {
    /// Create `path` (replacing a file there), creating parent folders, and start the
    /// writer thread.
    pub fn create(path: &Path) -> Result<Self> {
        Self::create_with_wait(path, MAX_WAIT)
    }

    /// [`RecordSink::create`], writing a completed record within `max_wait`.
    pub fn create_with_wait(path: &Path, max_wait: Duration) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let file = File::create(path).map_err(|e| Error::io(path, e))?;
        let options = IpcWriteOptions::default()
            .try_with_compression(Some(CompressionType::ZSTD))
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let writer = StreamWriter::try_new_with_options(BufWriter::new(file), &schema(), options)
            .and_then(|mut w| w.flush().map(|()| w))
            .map_err(|e| Error::io(path, std::io::Error::other(e)))?;
        let shared = Arc::new(Shared::default());
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("llmbench-records".into())
            .spawn({
                let shared = shared.clone();
                let path = path.to_path_buf();
                move || {
                    yield_to_the_runtime();
                    write_loop(writer, rx, &shared, &path, max_wait)
                }
            })
            .map_err(|e| Error::io(path, e))?;
        Ok(RecordSink {
            path: path.to_path_buf(),
            tx: Some(tx),
            thread: Some(thread),
            shared,
        })
    }

    /// Hand one record to the writer. Never blocks and never fails: a write error is
    /// remembered and reported by [`RecordSink::error`].
    pub fn write(&self, record: RequestRecord) {
        if let Some(tx) = &self.tx {
            // The thread only ends when the sink is dropped; a send cannot fail before.
            let _ = tx.send(Msg::Record(Box::new(record)));
        }
    }

    /// Wait until every record handed over so far is in the file.
    pub fn flush(&self) {
        let (ack_tx, ack_rx) = mpsc::channel();
        if let Some(tx) = &self.tx {
            if tx.send(Msg::Flush(ack_tx)).is_ok() {
                let _ = ack_rx.recv();
            }
        }
    }

    /// Move the file to `path` (replacing a file there) once everything handed over so far
    /// is in it; writing goes on into the moved file.
    pub fn rename_to(&mut self, path: &Path) -> Result<()> {
        self.flush();
        std::fs::rename(&self.path, path).map_err(|e| Error::io(path, e))?;
        self.path = path.to_path_buf();
        Ok(())
    }

    /// Records written to the file so far.
    pub fn written(&self) -> u64 {
        self.shared.written.load(Ordering::Relaxed)
    }

    /// The first write error, if any.
    pub fn error(&self) -> Option<String> {
        self.shared.error.lock().ok().and_then(|e| e.clone())
    }

    /// Write what is left, end the stream and stop the thread.
    pub fn close(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                self.shared
                    .fail(format!("the writer of {} panicked", self.path.display()));
            }
        }
    }
}

impl Drop for RecordSink {
    fn drop(&mut self) {
        self.close();
    }
}

/// The writer's work (a batch a second to encode, compress and write) can wait; the
/// runtime's threads, which take every chunk's timestamp, cannot. Where they share a core,
/// a writer woken at normal priority preempts a runtime thread for its whole slice and the
/// chunks read meanwhile are stamped late (tens of milliseconds at 1,024 streams on one
/// core, docs/BENCHMARKS.md). So the writer runs at a lower priority (about nice 10):
/// it still gets a tenth of a contended core, enough to keep up, but no longer preempts.
/// Failure (a platform without per-thread niceness) leaves it as it was.
fn yield_to_the_runtime() {
    use thread_priority::{set_current_thread_priority, ThreadPriority, ThreadPriorityValue};
    if let Ok(p) = ThreadPriorityValue::try_from(WRITER_PRIORITY) {
        let _ = set_current_thread_priority(ThreadPriority::Crossplatform(p));
    }
}

/// The writer thread's priority on the crate's 0–99 scale (23: nice 9 on Linux).
const WRITER_PRIORITY: u8 = 23;

fn write_loop(
    mut writer: StreamWriter<BufWriter<File>>,
    rx: mpsc::Receiver<Msg>,
    shared: &Shared,
    path: &Path,
    max_wait: Duration,
) {
    let mut columns = RecordColumns::default();
    let mut oldest: Option<Instant> = None;
    let write = |columns: &mut RecordColumns, writer: &mut StreamWriter<_>| {
        if columns.is_empty() {
            return;
        }
        let rows = columns.len() as u64;
        let result = columns
            .finish()
            .and_then(|batch| writer.write(&batch))
            .and_then(|()| writer.flush());
        match result {
            Ok(()) => {
                shared.written.fetch_add(rows, Ordering::Relaxed);
            }
            Err(e) => shared.fail(format!(
                "writing {} failed after {} records: {e}",
                path.display(),
                shared.written.load(Ordering::Relaxed)
            )),
        }
    };
    loop {
        let wait = oldest.map_or(Duration::from_secs(3600), |t| {
            max_wait.saturating_sub(t.elapsed())
        });
        match rx.recv_timeout(wait) {
            Ok(Msg::Record(r)) => {
                columns.push(&r);
                oldest.get_or_insert_with(Instant::now);
                if columns.len() >= MAX_ROWS {
                    write(&mut columns, &mut writer);
                    oldest = None;
                }
            }
            Ok(Msg::Flush(ack)) => {
                write(&mut columns, &mut writer);
                oldest = None;
                let _ = ack.send(());
            }
            Err(RecvTimeoutError::Timeout) => {
                write(&mut columns, &mut writer);
                oldest = None;
            }
            Err(RecvTimeoutError::Disconnected) => {
                write(&mut columns, &mut writer);
                if let Err(e) = writer.finish().and_then(|()| writer.flush()) {
                    shared.fail(format!("closing {} failed: {e}", path.display()));
                }
                return;
            }
        }
    }
}

/// Where a run's records go: to the record file when the run has one (nothing kept in
/// memory, so memory stays flat however long the run), else kept in memory for the caller.
pub struct RecordKeeper {
    sink: Option<RecordSink>,
    memory: Vec<RequestRecord>,
}

impl RecordKeeper {
    /// Records to `sink`, or in memory when it is `None`.
    pub fn new(sink: Option<RecordSink>) -> Self {
        RecordKeeper {
            sink,
            memory: Vec::new(),
        }
    }

    /// Keep one record.
    pub fn keep(&mut self, record: RequestRecord) {
        match &self.sink {
            Some(s) => s.write(record),
            None => self.memory.push(record),
        }
    }

    /// Wait until every record so far is on disk (nothing to do in memory).
    pub fn flush(&self) {
        if let Some(s) = &self.sink {
            s.flush();
        }
    }

    /// The records kept in memory (none when they go to a file), and the file's first
    /// write error.
    pub fn finish(mut self) -> (Vec<RequestRecord>, Option<String>) {
        let error = self.sink.as_mut().and_then(|s| {
            s.close();
            s.error()
        });
        (std::mem::take(&mut self.memory), error)
    }
}
