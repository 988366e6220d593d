//! One test per fault kind: a stage of six requests where exactly one prompt asks the
//! scripted server for the fault. The faulty request must be recorded as failed with the
//! right kind, the other five must succeed with the scripted numbers, the run must go on,
//! and the live record file must hold every request.

use std::sync::Arc;

use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::faults::Fault;
use super::{SimConfig, SimServer};
use crate::loadgen::progress::Progress;
use crate::loadgen::{run_sweep, SweepConfig};
use crate::protocol::Api;
use crate::record::{ErrorKind, RequestRecord};

const TOKENS: u32 = 12;

fn config(url: &str, api: Api, fault: Fault, records: &std::path::Path) -> SweepConfig {
    let mut prompts: Vec<String> = (0..5).map(|i| format!("a normal prompt {i}")).collect();
    prompts.push(format!("please fail: llmbench-fault:{}", fault.name()));
    // Every other setting is the engine's default.
    serde_json::from_value(json!({
        "target": {
            "url": url, "model": "llmbench-sim", "api": api,
            "timeouts": {"connect_s": 5, "ttft_s": 1.0, "idle_s": 1.0, "total_s": 20},
        },
        "batch_sizes": [3],
        "requests_per_stage": 6,
        "max_tokens": TOKENS,
        "prompts": prompts,
        "seed": 3,
        // The warm-up request uses the first prompt (a normal one).
        "warmup_requests": 0,
        "records_path": records,
    }))
    .expect("config")
}

/// The kind each fault must be recorded as; `None`: the request must succeed.
fn expected(fault: Fault) -> Option<ErrorKind> {
    match fault {
        Fault::ResetBeforeHeaders => Some(ErrorKind::Connect),
        Fault::ResetMidStream | Fault::NoFinish => Some(ErrorKind::Incomplete),
        Fault::Http429 | Fault::Http500 | Fault::Http503 => Some(ErrorKind::HttpStatus),
        Fault::InBandError => Some(ErrorKind::InBandError),
        Fault::MalformedJson | Fault::InvalidUtf8 | Fault::HugeLine | Fault::NonSse => {
            Some(ErrorKind::Malformed)
        }
        Fault::StallMidStream => Some(ErrorKind::TimeoutIdle),
        Fault::SlowFirstByte => Some(ErrorKind::TimeoutTtft),
        Fault::EmptyOutput => Some(ErrorKind::EmptyOutput),
        Fault::SplitWrites => None,
    }
}

fn read_records(path: &std::path::Path) -> Vec<RequestRecord> {
    let (records, read) = crate::record_file::read_records(path).expect("records file");
    assert_eq!(read.dropped_bytes, 0, "every batch whole: {:?}", read.note);
    records
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_is_recorded_with_its_kind_and_the_run_goes_on() {
    let cfg = SimConfig {
        ttft_ms: 20.0,
        itl_ms: 2.0,
        // Past the client's 1 s first-token and idle timeouts.
        fault_delay_ms: 3000.0,
        ..SimConfig::default()
    };
    let server = SimServer::start(cfg, "127.0.0.1", 0).await.expect("start");
    let dir = std::env::temp_dir().join(format!("llmbench-faults-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    for api in [Api::Chat, Api::Completions, Api::Tgi] {
        for fault in Fault::ALL {
            let records = dir.join(format!("{api:?}-{}.arrows", fault.name()));
            let _ = std::fs::remove_file(&records);
            let out = run_sweep(
                config(&server.url(), api, fault, &records),
                CancellationToken::new(),
                Arc::new(Progress::default()),
            )
            .await
            .unwrap_or_else(|e| panic!("{api:?} {fault:?}: the run stopped: {e}"));
            let what = format!("{api:?} {fault:?}");
            // Everything is on disk, faulty request included, and nothing kept in memory.
            assert!(out.records.is_empty(), "{what}");
            let on_disk = read_records(&records);
            let measured: Vec<&RequestRecord> = on_disk.iter().filter(|r| !r.warmup).collect();
            assert_eq!(measured.len(), 6, "{what}");
            assert_eq!(out.stages[0].summary.f64("n_requests"), 6.0, "{what}");
            let faulty: Vec<&&RequestRecord> =
                measured.iter().filter(|r| r.prompt_index == 5).collect();
            assert_eq!(faulty.len(), 1, "{what}");
            let f = faulty[0];
            assert_eq!(f.error_kind, expected(fault), "{what}: {:?}", f.error);
            if let Some(kind) = expected(fault) {
                let msg = f.error.as_deref().unwrap_or("");
                assert!(!msg.is_empty(), "{what}: a message");
                let count = out.stages[0]
                    .summary
                    .f64(&format!("errors_{}", kind.as_str()));
                assert_eq!(count, 1.0, "{what}: counted in the summary");
            } else {
                assert_eq!(f.n_out, TOKENS, "{what}");
            }
            // The other five: scripted numbers.
            for r in measured.iter().filter(|r| r.prompt_index != 5) {
                assert!(r.ok(), "{what}: a normal request failed: {:?}", r.error);
                assert_eq!(r.n_out, TOKENS, "{what}");
                let ttft = (r.t_first().expect("a first token") - r.t_sent) as f64 / 1e6;
                assert!((20.0..400.0).contains(&ttft), "{what}: ttft {ttft}");
            }
            let mut ids: Vec<u64> = on_disk.iter().map(|r| r.id).collect();
            ids.sort();
            ids.dedup();
            assert_eq!(ids.len(), on_disk.len(), "{what}: each record once");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_by_rate_fail_about_that_share_and_nothing_else() {
    let cfg = SimConfig {
        ttft_ms: 5.0,
        itl_ms: 1.0,
        fault_rate: 0.25,
        faults: vec![Fault::Http503, Fault::ResetMidStream, Fault::InBandError],
        fault_seed: 11,
        ..SimConfig::default()
    };
    let server = SimServer::start(cfg, "127.0.0.1", 0).await.expect("start");
    let dir = std::env::temp_dir().join(format!("llmbench-fault-rate-{}", std::process::id()));
    let mut c = config(
        &server.url(),
        Api::Chat,
        Fault::SplitWrites,
        &dir.join("r.arrows"),
    );
    c.prompts.truncate(5);
    c.requests_per_stage = Some(200);
    c.batch_sizes = vec![16];
    let out = run_sweep(c, CancellationToken::new(), Arc::new(Progress::default()))
        .await
        .expect("sweep");
    let records = read_records(&dir.join("r.arrows"));
    assert_eq!(records.len(), 200);
    assert_eq!(out.stages[0].summary.f64("n_requests"), 200.0);
    let failed: Vec<&RequestRecord> = records.iter().filter(|r| !r.ok()).collect();
    assert!(
        (25..80).contains(&failed.len()),
        "{} of 200 at 25%",
        failed.len()
    );
    for r in &failed {
        assert!(matches!(
            r.error_kind,
            Some(ErrorKind::HttpStatus | ErrorKind::Incomplete | ErrorKind::InBandError)
        ));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_is_recorded_and_the_run_ends_normally() {
    // A port nobody listens on (bound, then closed).
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let dir = std::env::temp_dir().join(format!("llmbench-refused-{}", std::process::id()));
    let c = config(
        &format!("http://127.0.0.1:{port}"),
        Api::Chat,
        Fault::SplitWrites,
        &dir.join("r.arrows"),
    );
    let out = run_sweep(c, CancellationToken::new(), Arc::new(Progress::default()))
        .await
        .expect("no warm-up: the run records the failures instead of stopping");
    let records = read_records(&dir.join("r.arrows"));
    assert_eq!(records.len(), 6);
    for r in &records {
        assert_eq!(r.error_kind, Some(ErrorKind::Connect), "{:?}", r.error);
        assert!(
            r.error.as_deref().unwrap_or("").contains("127.0.0.1"),
            "{:?}",
            r.error
        );
    }
    assert_eq!(out.stages[0].summary.f64("errors_connect"), 6.0);
    let _ = std::fs::remove_dir_all(&dir);
}
