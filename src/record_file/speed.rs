//! How many records per second the record file's writer sustains: records shaped like a
//! real run's (jittered 10 ms token gaps, one token per chunk) handed to a [`RecordSink`]
//! as fast as the caller can, timed until the last is on disk. Run from
//! `benches/long_run.py`.

use std::path::Path;
use std::time::Instant;

use rand::{Rng, SeedableRng};

use super::RecordSink;
use crate::error::Result;
use crate::record::{Chunks, RequestRecord, TokenSource};

/// What one run of the benchmark measured.
#[derive(Debug, Clone, Copy)]
pub struct WriteSpeed {
    /// Records written.
    pub records: u64,
    /// Size of the file.
    pub bytes: u64,
    /// Seconds from the first record handed over to the file closed.
    pub seconds: f64,
}

/// Write `records` records of `tokens` tokens each to `path`.
pub fn write_speed(path: &Path, records: u64, tokens: u32) -> Result<WriteSpeed> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let made: Vec<RequestRecord> = (0..records)
        .map(|i| {
            let t_sent = 1_000_000_000 + i * 200_000;
            let mut t = t_sent + 40_000_000 + rng.random_range(0..2_000_000);
            let mut chunks = Chunks::default();
            for _ in 0..tokens {
                t += 10_000_000 + rng.random_range(0..500_000);
                chunks.push(t, 1);
            }
            RequestRecord {
                id: i,
                stage: 0,
                batch_size: 256,
                warmup: false,
                prompt_index: (i % 512) as u32,
                conversation: None,
                turn: None,
                t_sched: t_sent,
                t_sent,
                t_headers: Some(t_sent + 1_000_000),
                t_done: t + 100_000,
                chunks,
                chunk_token_source: TokenSource::ContinuousUsage,
                n_in: Some(100),
                n_in_source: TokenSource::ServerUsage,
                n_out: tokens,
                n_out_source: TokenSource::ServerUsage,
                server_times: crate::record::ServerTimes::default(),
                finish_reason: Some("length".into()),
                http_status: Some(200),
                error_kind: None,
                error: None,
            }
        })
        .collect();
    let started = Instant::now();
    let mut sink = RecordSink::create(path)?;
    for r in made {
        sink.write(r);
    }
    sink.close();
    let seconds = started.elapsed().as_secs_f64();
    if let Some(e) = sink.error() {
        return Err(crate::error::Error::InvalidArgument(e));
    }
    let bytes = std::fs::metadata(path)
        .map_err(|e| crate::error::Error::io(path, e))?
        .len();
    Ok(WriteSpeed {
        records,
        bytes,
        seconds,
    })
}
