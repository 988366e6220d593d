//! The record file's columns: its schema, request records into a batch of columns, and a
//! batch back into records (for `--resume`).

use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Int64Builder, ListBuilder, StringBuilder, UInt16Builder, UInt32Builder,
    UInt64Builder,
};
use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, UInt16Type, UInt32Type, UInt64Type};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef};
use serde::de::{Deserialize, IntoDeserializer};

#[cfg(test)]
use crate::record::TokenSource;
use crate::record::{Chunks, ErrorKind, RequestRecord, ServerTimes};

/// Bumped when a column is added or changes meaning or type; written into the schema's
/// metadata. 2 added `conversation` and `turn`; 3 added `server_queue_us`,
/// `server_prefill_us` and `server_decode_us` (each read as absent from older files).
pub const SCHEMA_VERSION: &str = "3";

fn list_of(item: DataType) -> DataType {
    // The item field as `ListBuilder` makes it, so built batches match the schema.
    DataType::List(Arc::new(Field::new("item", item, true)))
}

/// The schema of a record file: one row per request (docs/architecture.md, "The record
/// file", lists what each column means).
pub fn schema() -> SchemaRef {
    use DataType::{Boolean, Int64, UInt16, UInt32, UInt64, Utf8};
    let f = |name: &str, t: DataType, nullable: bool| Field::new(name, t, nullable);
    let fields = vec![
        f("id", UInt64, false),
        f("stage", UInt32, false),
        f("batch_size", UInt32, false),
        f("warmup", Boolean, false),
        f("prompt_index", UInt32, false),
        f("conversation", UInt64, true),
        f("turn", UInt32, true),
        f("t_sched_ns", UInt64, false),
        f("t_sent_ns", UInt64, false),
        f("t_headers_ns", UInt64, true),
        f("t_first_ns", UInt64, true),
        f("t_last_ns", UInt64, true),
        f("t_done_ns", UInt64, false),
        f("n_in", UInt32, true),
        f("n_in_source", Utf8, false),
        f("n_out", UInt32, false),
        f("n_out_source", Utf8, false),
        f("n_out_streamed", UInt32, false),
        f("n_chunks", UInt32, false),
        f("chunk_token_source", Utf8, false),
        f("server_queue_us", UInt32, true),
        f("server_prefill_us", UInt32, true),
        f("server_decode_us", UInt32, true),
        f("finish_reason", Utf8, true),
        f("http_status", UInt16, true),
        f("error_kind", Utf8, true),
        f("error", Utf8, true),
        f("chunk_dt_ns", list_of(Int64), false),
        f("chunk_tokens", list_of(UInt32), false),
    ];
    let meta = [
        (
            "llmbench.record_file".to_string(),
            SCHEMA_VERSION.to_string(),
        ),
        (
            "llmbench.chunk_dt_ns".to_string(),
            "first: ns from t_sent_ns to the first chunk; then ns since the previous chunk"
                .to_string(),
        ),
    ];
    Arc::new(
        Schema::new(fields).with_metadata(
            meta.into_iter()
                .collect::<std::collections::HashMap<_, _>>(),
        ),
    )
}

/// Column builders for one batch of records.
pub struct RecordColumns {
    id: UInt64Builder,
    stage: UInt32Builder,
    batch_size: UInt32Builder,
    warmup: BooleanBuilder,
    prompt_index: UInt32Builder,
    conversation: UInt64Builder,
    turn: UInt32Builder,
    t_sched: UInt64Builder,
    t_sent: UInt64Builder,
    t_headers: UInt64Builder,
    t_first: UInt64Builder,
    t_last: UInt64Builder,
    t_done: UInt64Builder,
    n_in: UInt32Builder,
    n_in_source: StringBuilder,
    n_out: UInt32Builder,
    n_out_source: StringBuilder,
    n_out_streamed: UInt32Builder,
    n_chunks: UInt32Builder,
    chunk_token_source: StringBuilder,
    server_queue: UInt32Builder,
    server_prefill: UInt32Builder,
    server_decode: UInt32Builder,
    finish_reason: StringBuilder,
    http_status: UInt16Builder,
    error_kind: StringBuilder,
    error: StringBuilder,
    chunk_dt: ListBuilder<Int64Builder>,
    chunk_tokens: ListBuilder<UInt32Builder>,
    rows: usize,
}

impl Default for RecordColumns {
    fn default() -> Self {
        RecordColumns {
            id: UInt64Builder::new(),
            stage: UInt32Builder::new(),
            batch_size: UInt32Builder::new(),
            warmup: BooleanBuilder::new(),
            prompt_index: UInt32Builder::new(),
            conversation: UInt64Builder::new(),
            turn: UInt32Builder::new(),
            t_sched: UInt64Builder::new(),
            t_sent: UInt64Builder::new(),
            t_headers: UInt64Builder::new(),
            t_first: UInt64Builder::new(),
            t_last: UInt64Builder::new(),
            t_done: UInt64Builder::new(),
            n_in: UInt32Builder::new(),
            n_in_source: StringBuilder::new(),
            n_out: UInt32Builder::new(),
            n_out_source: StringBuilder::new(),
            n_out_streamed: UInt32Builder::new(),
            n_chunks: UInt32Builder::new(),
            chunk_token_source: StringBuilder::new(),
            server_queue: UInt32Builder::new(),
            server_prefill: UInt32Builder::new(),
            server_decode: UInt32Builder::new(),
            finish_reason: StringBuilder::new(),
            http_status: UInt16Builder::new(),
            error_kind: StringBuilder::new(),
            error: StringBuilder::new(),
            chunk_dt: ListBuilder::new(Int64Builder::new()),
            chunk_tokens: ListBuilder::new(UInt32Builder::new()),
            rows: 0,
        }
    }
}

impl RecordColumns {
    /// Rows buffered.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether no row is buffered.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Append one record as a row.
    pub fn push(&mut self, r: &RequestRecord) {
        self.id.append_value(r.id);
        self.stage.append_value(r.stage);
        self.batch_size.append_value(r.batch_size);
        self.warmup.append_value(r.warmup);
        self.prompt_index.append_value(r.prompt_index);
        self.conversation.append_option(r.conversation);
        self.turn.append_option(r.turn);
        self.t_sched.append_value(r.t_sched);
        self.t_sent.append_value(r.t_sent);
        self.t_headers.append_option(r.t_headers);
        self.t_first.append_option(r.t_first());
        self.t_last.append_option(r.t_last());
        self.t_done.append_value(r.t_done);
        self.n_in.append_option(r.n_in);
        self.n_in_source.append_value(r.n_in_source.as_str());
        self.n_out.append_value(r.n_out);
        self.n_out_source.append_value(r.n_out_source.as_str());
        self.n_out_streamed.append_value(r.n_out_streamed());
        self.n_chunks.append_value(r.chunks.len() as u32);
        self.chunk_token_source
            .append_value(r.chunk_token_source.as_str());
        self.server_queue.append_option(r.server_times.queue_us);
        self.server_prefill.append_option(r.server_times.prefill_us);
        self.server_decode.append_option(r.server_times.decode_us);
        self.finish_reason.append_option(r.finish_reason.as_deref());
        self.http_status.append_option(r.http_status);
        self.error_kind
            .append_option(r.error_kind.map(ErrorKind::as_str));
        self.error.append_option(r.error.as_deref());
        let mut prev = r.t_sent;
        for (t, k) in r.chunks.iter() {
            self.chunk_dt
                .values()
                .append_value(t.wrapping_sub(prev) as i64);
            self.chunk_tokens.values().append_value(k);
            prev = t;
        }
        self.chunk_dt.append(true);
        self.chunk_tokens.append(true);
        self.rows += 1;
    }

    /// The buffered rows as a batch; the builders start empty again.
    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.id.finish()),
            Arc::new(self.stage.finish()),
            Arc::new(self.batch_size.finish()),
            Arc::new(self.warmup.finish()),
            Arc::new(self.prompt_index.finish()),
            Arc::new(self.conversation.finish()),
            Arc::new(self.turn.finish()),
            Arc::new(self.t_sched.finish()),
            Arc::new(self.t_sent.finish()),
            Arc::new(self.t_headers.finish()),
            Arc::new(self.t_first.finish()),
            Arc::new(self.t_last.finish()),
            Arc::new(self.t_done.finish()),
            Arc::new(self.n_in.finish()),
            Arc::new(self.n_in_source.finish()),
            Arc::new(self.n_out.finish()),
            Arc::new(self.n_out_source.finish()),
            Arc::new(self.n_out_streamed.finish()),
            Arc::new(self.n_chunks.finish()),
            Arc::new(self.chunk_token_source.finish()),
            Arc::new(self.server_queue.finish()),
            Arc::new(self.server_prefill.finish()),
            Arc::new(self.server_decode.finish()),
            Arc::new(self.finish_reason.finish()),
            Arc::new(self.http_status.finish()),
            Arc::new(self.error_kind.finish()),
            Arc::new(self.error.finish()),
            Arc::new(self.chunk_dt.finish()),
            Arc::new(self.chunk_tokens.finish()),
        ];
        self.rows = 0;
        RecordBatch::try_new(schema(), columns)
    }
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef, String> {
    batch
        .column_by_name(name)
        .ok_or_else(|| format!("the record file has no column {name:?}"))
}

fn named<T: for<'de> Deserialize<'de>>(what: &str, s: &str) -> Result<T, String> {
    T::deserialize(IntoDeserializer::<serde::de::value::Error>::into_deserializer(s))
        .map_err(|_| format!("unknown {what} {s:?} in the record file"))
}

/// A batch of the record file back into request records.
pub fn records_of_batch(batch: &RecordBatch) -> Result<Vec<RequestRecord>, String> {
    macro_rules! prim {
        ($name:expr, $t:ty) => {
            column(batch, $name)?
                .as_primitive_opt::<$t>()
                .ok_or_else(|| {
                    format!(
                        "column {:?} has type {}",
                        $name,
                        column(batch, $name)
                            .map(|c| c.data_type().to_string())
                            .unwrap_or_default()
                    )
                })?
        };
    }
    macro_rules! text {
        ($name:expr) => {
            column(batch, $name)?
                .as_string_opt::<i32>()
                .ok_or_else(|| format!("column {:?} is not text", $name))?
        };
    }
    let id = prim!("id", UInt64Type);
    let stage = prim!("stage", UInt32Type);
    let batch_size = prim!("batch_size", UInt32Type);
    let warmup = column(batch, "warmup")?
        .as_boolean_opt()
        .ok_or("column \"warmup\" is not boolean")?;
    let prompt_index = prim!("prompt_index", UInt32Type);
    // Files written before conversations have neither column: every row single-turn.
    let conversation = batch
        .column_by_name("conversation")
        .and_then(|c| c.as_primitive_opt::<UInt64Type>());
    let turn = batch
        .column_by_name("turn")
        .and_then(|c| c.as_primitive_opt::<UInt32Type>());
    // Files written before the server's times (version < 3) have none: each absent.
    let server_time = |name: &str| {
        batch
            .column_by_name(name)
            .and_then(|c| c.as_primitive_opt::<UInt32Type>())
    };
    let (queue, prefill, decode) = (
        server_time("server_queue_us"),
        server_time("server_prefill_us"),
        server_time("server_decode_us"),
    );
    let t_sched = prim!("t_sched_ns", UInt64Type);
    let t_sent = prim!("t_sent_ns", UInt64Type);
    let t_headers = prim!("t_headers_ns", UInt64Type);
    let t_done = prim!("t_done_ns", UInt64Type);
    let n_in = prim!("n_in", UInt32Type);
    let n_in_source = text!("n_in_source");
    let n_out = prim!("n_out", UInt32Type);
    let n_out_source = text!("n_out_source");
    let chunk_token_source = text!("chunk_token_source");
    let finish_reason = text!("finish_reason");
    let http_status = prim!("http_status", UInt16Type);
    let error_kind = text!("error_kind");
    let error = text!("error");
    let chunk_dt = column(batch, "chunk_dt_ns")?
        .as_list_opt::<i32>()
        .ok_or("column \"chunk_dt_ns\" is not a list")?;
    let chunk_tokens = column(batch, "chunk_tokens")?
        .as_list_opt::<i32>()
        .ok_or("column \"chunk_tokens\" is not a list")?;
    let opt_u64 = |a: &arrow_array::UInt64Array, i: usize| (!a.is_null(i)).then(|| a.value(i));
    let opt_u32 = |a: Option<&arrow_array::UInt32Array>, i: usize| {
        a.and_then(|a| (!a.is_null(i)).then(|| a.value(i)))
    };
    let opt_text =
        |a: &arrow_array::StringArray, i: usize| (!a.is_null(i)).then(|| a.value(i).to_string());
    let mut out = Vec::with_capacity(batch.num_rows());
    for i in 0..batch.num_rows() {
        let dts = chunk_dt.value(i);
        let dts = dts
            .as_primitive_opt::<Int64Type>()
            .ok_or("chunk_dt_ns items are not int64")?;
        let ks = chunk_tokens.value(i);
        let ks = ks
            .as_primitive_opt::<UInt32Type>()
            .ok_or("chunk_tokens items are not uint32")?;
        let mut t = t_sent.value(i);
        let mut chunks = Chunks::default();
        for (dt, k) in dts.values().iter().zip(ks.values()) {
            t = t.wrapping_add(*dt as u64);
            chunks.push(t, *k);
        }
        out.push(RequestRecord {
            id: id.value(i),
            stage: stage.value(i),
            batch_size: batch_size.value(i),
            warmup: warmup.value(i),
            prompt_index: prompt_index.value(i),
            conversation: conversation.and_then(|a| (!a.is_null(i)).then(|| a.value(i))),
            turn: turn.and_then(|a| (!a.is_null(i)).then(|| a.value(i))),
            t_sched: t_sched.value(i),
            t_sent: t_sent.value(i),
            t_headers: opt_u64(t_headers, i),
            t_done: t_done.value(i),
            chunks,
            chunk_token_source: named("token source", chunk_token_source.value(i))?,
            n_in: (!n_in.is_null(i)).then(|| n_in.value(i)),
            n_in_source: named("token source", n_in_source.value(i))?,
            n_out: n_out.value(i),
            n_out_source: named("token source", n_out_source.value(i))?,
            server_times: ServerTimes {
                queue_us: opt_u32(queue, i),
                prefill_us: opt_u32(prefill, i),
                decode_us: opt_u32(decode, i),
            },
            finish_reason: opt_text(finish_reason, i),
            http_status: (!http_status.is_null(i)).then(|| http_status.value(i)),
            error_kind: opt_text(error_kind, i)
                .map(|k| named::<ErrorKind>("error kind", &k))
                .transpose()?,
            error: opt_text(error, i),
        });
    }
    Ok(out)
}

/// Whether two token sources parse from their names (kept beside the parser they check).
#[cfg(test)]
pub(super) fn token_source_round_trips(s: TokenSource) -> bool {
    named::<TokenSource>("token source", s.as_str()).ok() == Some(s)
}
