//! The record file: every field and chunk time round-trips, a file cut anywhere keeps its
//! whole batches, batches reach the disk as the run goes, and a full disk is reported.

use std::path::Path;

use proptest::prelude::*;

use super::*;
use crate::record::{Chunks, ErrorKind, RequestRecord, TokenSource};

const SOURCES: [TokenSource; 8] = [
    TokenSource::ServerUsage,
    TokenSource::ContinuousUsage,
    TokenSource::TgiTokens,
    TokenSource::Tokenizer,
    TokenSource::OnePerChunk,
    TokenSource::UsageReconciled,
    TokenSource::Model,
    TokenSource::Unknown,
];

fn any_record() -> impl Strategy<Value = RequestRecord> {
    let times = (
        any::<u64>(),
        any::<u64>(),
        proptest::option::of(any::<u64>()),
        any::<u64>(),
    );
    let chunks = proptest::collection::vec((any::<u64>(), any::<u32>()), 0..40);
    let counts = (
        proptest::option::of(any::<u32>()),
        any::<u32>(),
        0..8usize,
        0..8usize,
        0..8usize,
    );
    let outcome = (
        proptest::option::of("[a-z_]{0,12}"),
        proptest::option::of(any::<u16>()),
        proptest::option::of(0..ErrorKind::ALL.len()),
        proptest::option::of("\\PC{0,40}"),
    );
    let ids = (
        any::<u64>(),
        any::<u32>(),
        any::<u32>(),
        any::<bool>(),
        any::<u32>(),
    );
    (ids, times, chunks, counts, outcome).prop_map(
        |(
            (id, stage, batch_size, warmup, prompt_index),
            (t_sched, t_sent, t_headers, t_done),
            chunks,
            (n_in, n_out, s0, s1, s2),
            (finish_reason, http_status, kind, error),
        )| {
            let (times, tokens): (Vec<u64>, Vec<u32>) = chunks.into_iter().unzip();
            RequestRecord {
                id,
                stage,
                batch_size,
                warmup,
                prompt_index,
                // Every third record a conversation's turn, so both column states round-trip.
                conversation: (id % 3 == 0).then_some(id / 2),
                turn: (id % 3 == 0).then_some(stage),
                t_sched,
                t_sent,
                t_headers,
                t_done,
                chunks: Chunks::from_parts(&times, &tokens),
                chunk_token_source: SOURCES[s0],
                n_in,
                n_in_source: SOURCES[s1],
                n_out,
                n_out_source: SOURCES[s2],
                server_times: crate::record::ServerTimes::default(),
                finish_reason,
                http_status,
                error_kind: kind.map(|k| ErrorKind::ALL[k]),
                error,
            }
        },
    )
}

fn write_all(path: &Path, records: &[RequestRecord]) -> u64 {
    let mut sink = RecordSink::create(path).expect("create");
    for r in records {
        sink.write(r.clone());
    }
    sink.close();
    assert_eq!(sink.error(), None);
    sink.written()
}

#[test]
fn every_token_source_and_error_kind_round_trips_by_name() {
    assert!(SOURCES.iter().all(|s| batch::token_source_round_trips(*s)));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn every_field_and_chunk_time_round_trips(records in proptest::collection::vec(any_record(), 0..50)) {
        let dir = crate::test_support::temp_dir("record-file-prop");
        let path = dir.join("r.arrows");
        prop_assert_eq!(write_all(&path, &records), records.len() as u64);
        let (back, read) = read_records(&path).expect("read");
        prop_assert_eq!(read.dropped_bytes, 0);
        prop_assert_eq!(back, records);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

fn many(n: u64) -> Vec<RequestRecord> {
    (0..n)
        .map(|i| {
            let mut r = crate::test_support::record(i, (i / 3000) as u32, false, None);
            let t0 = 1_000_000_000 + i * 1_000_000;
            r.t_sent = t0;
            r.t_sched = t0;
            let times: Vec<u64> = (0..32).map(|k| t0 + 50_000_000 + k * 10_000_017).collect();
            r.chunks = Chunks::from_parts(&times, &[1; 32]);
            r.t_done = times[31] + 1000;
            r
        })
        .collect()
}

#[test]
fn a_file_cut_at_any_byte_keeps_every_whole_batch_and_says_what_it_dropped() {
    use rand::{Rng, SeedableRng};
    let dir = crate::test_support::temp_dir("record-file-cut");
    let path = dir.join("r.arrows");
    // Three batches: MAX_ROWS, MAX_ROWS, and the rest at close.
    let records = many(2 * writer::MAX_ROWS as u64 + 100);
    write_all(&path, &records);
    let bytes = std::fs::read(&path).expect("read");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let cut_path = dir.join("cut.arrows");
    for _ in 0..40 {
        let at = rng.random_range(0..bytes.len());
        std::fs::write(&cut_path, &bytes[..at]).expect("write");
        let (back, read) = read_records(&cut_path).expect("a cut file is not an error");
        let n = back.len();
        assert!(
            [0, writer::MAX_ROWS, 2 * writer::MAX_ROWS, records.len()].contains(&n),
            "cut at {at}: {n} records is not a whole number of batches"
        );
        assert_eq!(back[..], records[..n], "cut at {at}");
        if n < records.len() {
            assert!(read.dropped_bytes > 0, "cut at {at}");
            let note = read.note.expect("a note says what was dropped");
            assert!(note.contains("dropped the last"), "{note}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn records_reach_the_disk_within_a_second_and_at_every_flush() {
    let dir = crate::test_support::temp_dir("record-file-live");
    let path = dir.join("r.arrows");
    let sink = RecordSink::create(&path).expect("create");
    sink.write(crate::test_support::record(0, 0, false, None));
    sink.flush();
    // Readable while the sink is still open.
    assert_eq!(read_records(&path).expect("read").0.len(), 1);
    sink.write(crate::test_support::record(1, 0, false, None));
    std::thread::sleep(writer::MAX_WAIT + std::time::Duration::from_millis(500));
    assert_eq!(
        read_records(&path).expect("read").0.len(),
        2,
        "written without a flush"
    );
    assert_eq!(sink.written(), 2);
    drop(sink);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_full_disk_is_remembered_not_raised() {
    // /dev/full accepts the open and fails every write with ENOSPC, like a disk that just
    // filled up; the schema is written at creation, so that fails first.
    match RecordSink::create(Path::new("/dev/full")) {
        Err(e) => assert!(e.to_string().to_lowercase().contains("space"), "{e}"),
        Ok(mut sink) => {
            sink.write(crate::test_support::record(0, 0, false, None));
            sink.close();
            let err = sink.error().expect("the failure is kept");
            assert!(err.to_lowercase().contains("space"), "{err}");
        }
    }
}

#[test]
fn a_million_requests_of_32_tokens_take_well_under_a_hundred_bytes_each() {
    // The size target of a long run (300 MB for 1,000,000 × 32 tokens), checked on a
    // sample with the scripted server's regular timings plus jitter.
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let records: Vec<RequestRecord> = many(20_000)
        .into_iter()
        .map(|mut r| {
            let mut t = r.t_sent + 40_000_000 + rng.random_range(0..2_000_000);
            let times: Vec<u64> = (0..32)
                .map(|_| {
                    t += 10_000_000 + rng.random_range(0..500_000);
                    t
                })
                .collect();
            r.chunks = Chunks::from_parts(&times, &[1; 32]);
            r
        })
        .collect();
    let dir = crate::test_support::temp_dir("record-file-size");
    let path = dir.join("r.arrows");
    write_all(&path, &records);
    let per_request = std::fs::metadata(&path).expect("size").len() as f64 / 20_000.0;
    assert!(per_request < 150.0, "{per_request} bytes per request");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The writer thread runs below the runtime's priority (Linux: a positive nice value), so
/// on a shared core it never preempts the threads that timestamp chunks.
#[cfg(target_os = "linux")]
#[test]
fn the_writer_thread_runs_below_normal_priority() {
    let path = crate::test_support::temp_dir("writer-nice").join("r.arrows");
    let sink = RecordSink::create(&path).expect("create");
    sink.flush(); // the thread has started and set its priority
    let mut nice = None;
    for task in std::fs::read_dir("/proc/self/task")
        .expect("tasks")
        .flatten()
    {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim().starts_with("llmbench-record") {
            let stat = std::fs::read_to_string(task.path().join("stat")).expect("stat");
            // Fields after the command's closing parenthesis; nice is the 19th field.
            let rest = &stat[stat.rfind(')').expect("comm") + 2..];
            nice = rest.split(' ').nth(16).and_then(|v| v.parse::<i32>().ok());
        }
    }
    assert!(nice.is_some_and(|n| n > 0), "writer thread nice: {nice:?}");
    drop(sink);
}
