//! The record file (docs/architecture.md, "The record file"): every request record of a run
//! in one Arrow IPC stream (`requests_<target>.arrows`), written in compressed column
//! batches as the run goes, so a crash keeps every whole batch and a reader can take only
//! the columns it needs.
//!
//! Why Arrow IPC rather than Parquet: a stream of self-delimited batches can be appended
//! while the run goes and read back after a crash cut it anywhere (Parquet's footer comes
//! last, so a cut file is unreadable); every column is compressed with zstd, and pyarrow
//! (or any Arrow reader) opens it without llmbench.
//!
//! Chunk times are stored as `chunk_dt_ns`, one list per request: the first element is the
//! first chunk's offset from `t_sent_ns`, each next one the gap to the previous chunk
//! (delta-encoded, so zstd squeezes them to about two bytes each).

mod batch;
mod reader;
pub mod speed;
mod writer;

pub use batch::{records_of_batch, schema, RecordColumns, SCHEMA_VERSION};
pub use reader::{for_each_record, read_jsonl, read_records, ReadSummary};
pub use writer::{RecordKeeper, RecordSink, SHARE_MAX_WAIT};

#[cfg(test)]
mod tests;
