//! Kept connections against real servers: the scripted one (every API) and a raw socket
//! server that closes idle connections. Known answers: how many connections were opened.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;

use super::*;
use crate::client::stream::{send, Job, RunContext};
use crate::sim::{SimConfig, SimServer};

fn spec(url: &str, api: &str) -> TargetSpec {
    serde_json::from_value(serde_json::json!({"url": url, "model": "llmbench-sim", "api": api}))
        .expect("spec")
}

async fn sim(ttft_ms: f64, itl_ms: f64) -> SimServer {
    let cfg = SimConfig {
        ttft_ms,
        itl_ms,
        ..SimConfig::default()
    };
    SimServer::start(cfg, "127.0.0.1", 0).await.expect("start")
}

/// What a run gives its requests, for `spec`.
fn context(spec: TargetSpec) -> RunContext {
    RunContext {
        http: crate::client::build_http_client(&spec, 4).expect("client"),
        kept: Pool::for_target(&spec, 4),
        spec,
        counter: None,
        cancel: tokio_util::sync::CancellationToken::new(),
    }
}

fn job(id: u64, max_tokens: u32) -> Job<'static> {
    Job {
        id,
        stage: 0,
        batch_size: 1,
        warmup: false,
        prompt_index: 0,
        prompt: "hello there",
        messages: None,
        turn: None,
        max_tokens,
        t_sched: crate::clock::now_ns(),
    }
}

/// Send one streaming completion on `conn` and read its body to the end; the pieces read.
async fn read_one(pool: &Pool, conn: &mut Conn, max_tokens: u32) -> usize {
    let body = format!(
        r#"{{"model":"llmbench-sim","prompt":"hi","max_tokens":{max_tokens},"stream":true}}"#
    );
    let req = pool
        .request()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("request");
    let mut resp = conn.send(req).await.expect("response").into_body();
    let mut pieces = 0;
    while conn.chunk(&mut resp).await.expect("chunk").is_some() {
        pieces += 1;
    }
    pieces
}

/// A connection read to its end is ready for the next request (a kept connection that is
/// not ready is dropped and replaced, which the count of opened connections would show).
#[tokio::test]
async fn a_connection_read_to_its_end_is_kept_for_the_next_request() {
    let server = sim(1.0, 1.0).await;
    let pool = Pool::for_target(&spec(&server.url(), "completions"), 4).expect("plain HTTP");
    let mut conn = pool.checkout().await.expect("connect");
    for round in 0..3 {
        assert!(read_one(&pool, &mut conn, 4).await > 0);
        pool.give_back(conn);
        conn = pool.checkout().await.expect("kept");
        assert!(
            conn.reused(),
            "round {round}: the kept connection is reused"
        );
    }
    assert_eq!(pool.opened(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_streams_each_keep_their_connection() {
    let server = sim(20.0, 5.0).await;
    let pool = std::sync::Arc::new(
        Pool::for_target(&spec(&server.url(), "completions"), 512).expect("plain HTTP"),
    );
    pool.open(512).await;
    let tasks = (0..512).map(|_| {
        let pool = pool.clone();
        tokio::spawn(async move {
            for _ in 0..4 {
                let mut conn = pool.checkout().await.expect("conn");
                read_one(&pool, &mut conn, 16).await;
                pool.give_back(conn);
            }
        })
    });
    for t in futures_util::future::join_all(tasks).await {
        t.expect("task");
    }
    assert_eq!(pool.opened(), 512, "one connection per stream, kept");
}

/// Through the request path itself (`stream::send`): the chunked body's end comes after
/// `[DONE]`, and the connection is kept for the next request only if it is read.
#[tokio::test]
async fn sequential_requests_share_one_connection() {
    let server = sim(1.0, 1.0).await;
    for api in ["completions", "chat", "tgi"] {
        let ctx = context(spec(&server.url(), api));
        for id in 0..5 {
            let rec = send(&ctx, job(id, 8)).await;
            assert!(rec.error_kind.is_none(), "{api}: {:?}", rec.error);
            assert_eq!(rec.n_out, 8, "{api}");
        }
        let pool = ctx.kept.as_ref().expect("plain HTTP");
        assert_eq!(pool.opened(), 1, "{api}: five requests, one connection");
    }
}

/// A keep-alive server on a raw socket that answers each request with a chunked event
/// stream (the `[DONE]` event, then the body's end in a separate write, as a server that
/// flushes per event does) and counts the connections it accepted.
async fn counting_server() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = std::sync::Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut buf = vec![0u8; 8192];
                loop {
                    // One request: headers, then Content-Length bytes of body.
                    let end = loop {
                        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    while got.len() < end + len {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                        }
                    }
                    got.drain(..end + len);
                    let events = "data: {\"choices\":[{\"text\":\"a\"}]}\n\ndata: [DONE]\n\n";
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
                         transfer-encoding: chunked\r\n\r\n{:x}\r\n{events}\r\n",
                        events.len()
                    );
                    if s.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    if s.write_all(b"0\r\n\r\n").await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (format!("http://{addr}"), accepted)
}

/// Both transports keep the connection across requests when the body's end follows
/// `[DONE]` in a later write: the kept pool and, for targets it serves, `reqwest`'s.
#[tokio::test]
async fn both_transports_reuse_the_connection_after_done() {
    use std::sync::atomic::Ordering;
    for kept in [true, false] {
        let (url, accepted) = counting_server().await;
        let mut ctx = context(spec(&url, "completions"));
        if !kept {
            ctx.kept = None; // the pooled client, as for an HTTPS target
        }
        for id in 0..4 {
            let rec = send(&ctx, job(id, 1)).await;
            assert!(rec.error_kind.is_none(), "kept {kept}: {:?}", rec.error);
            assert_eq!(rec.n_out, 1);
        }
        assert_eq!(
            accepted.load(Ordering::Relaxed),
            1,
            "kept {kept}: one connection"
        );
    }
}

/// A server that closes each kept connection soon after its response (as servers with a
/// short keep-alive timeout do): the next request finds it closed, opens a new one and
/// succeeds; nothing is recorded as failed.
#[tokio::test]
async fn a_connection_the_server_closed_while_idle_is_replaced() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut got = Vec::new();
                // One request: its headers and (small) body arrive together.
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let events = "data: {\"choices\":[{\"text\":\"a\"}]}\n\ndata: [DONE]\n\n";
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
                     transfer-encoding: chunked\r\n\r\n{:x}\r\n{events}\r\n0\r\n\r\n",
                    events.len()
                );
                let _ = s.write_all(reply.as_bytes()).await;
                tokio::time::sleep(Duration::from_millis(30)).await;
                // Dropped: closed while idle.
            });
        }
    });
    let ctx = context(spec(&format!("http://{addr}"), "completions"));
    for id in 0..3 {
        let rec = send(&ctx, job(id, 1)).await;
        assert!(rec.error_kind.is_none(), "request {id}: {:?}", rec.error);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pool = ctx.kept.as_ref().expect("plain HTTP");
    assert_eq!(pool.opened(), 3, "each closed connection replaced");
}

#[test]
fn a_proxy_in_the_environment_sends_remote_targets_through_reqwest() {
    let proxy = |k: &str| (k == "HTTP_PROXY").then(|| "http://proxy:3128".to_string());
    let none = |_: &str| None;
    assert!(proxy_may_apply("llm.internal", proxy));
    assert!(proxy_may_apply("10.0.0.5", proxy));
    for local in ["localhost", "127.0.0.1", "127.1.2.3", "[::1]"] {
        assert!(!proxy_may_apply(local, proxy), "{local}");
    }
    assert!(!proxy_may_apply("llm.internal", none));
    assert!(!proxy_may_apply("llm.internal", |_: &str| Some(" ".into())));
}
