//! The least a streaming client can do, as a floor for the peer benchmark: one
//! single-threaded tokio runtime, a timestamp for every read that brings a complete
//! `data:` line, and nothing else: no JSON, no token counting. Two ways to connect:
//! `close` opens one TCP connection per request (`Connection: close`, so the response
//! ends at EOF and no HTTP parsing is needed); `keepalive` opens one connection per stream
//! and reuses it, reading the chunked body just far enough to find each response's end
//! (the floor at high concurrency, where connecting per request costs more than reading).
//!
//! Usage: raw-stream-client HOST:PORT PATH BODY_FILE CONCURRENCY REQUESTS [close|keepalive]
//! Prints one JSON object: per-request TTFT (ms, from just before connect to the first
//! read with a data line), every gap between such reads (ms), and every such read's time
//! on the machine's `CLOCK_MONOTONIC` (ns) keyed by the `x-llmbench-request-id` it sent,
//! so the benchmark can match each chunk to the scripted server's truth.

use std::io::Write;
use std::rc::Rc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Measured {
    ttft_ms: Vec<f64>,
    gaps_ms: Vec<f64>,
    chunks: Vec<(u64, Vec<u64>)>,
    failed: u64,
}

/// The machine's monotonic clock, the one the scripted server's truth is read on.
fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Counts the `data:` lines (other than `[DONE]`) completed by each read; keeps the
/// unfinished line between reads.
#[derive(Default)]
struct Lines {
    partial: Vec<u8>,
}

impl Lines {
    fn feed(&mut self, bytes: &[u8]) -> usize {
        let mut events = 0;
        for &b in bytes {
            if b == b'\n' {
                let line = &self.partial;
                if line.starts_with(b"data:") && !line.ends_with(b"[DONE]") {
                    events += 1;
                }
                self.partial.clear();
            } else if b != b'\r' {
                self.partial.push(b);
            }
        }
        events
    }
}

/// Where a keep-alive reader is in the response: headers, a chunk's size line, its data
/// (bytes left), the CRLF after it, or done.
enum Phase {
    Headers,
    Size,
    Data(usize),
    DataEnd,
    Done,
}

/// One request on a kept connection: write it, then read the chunked response to its end.
async fn one_keepalive(s: &mut TcpStream, request: &[u8]) -> Option<(u64, Vec<u64>)> {
    let t0 = now_ns();
    s.write_all(request).await.ok()?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    let mut lines = Lines::default();
    let mut phase = Phase::Headers;
    let mut times = Vec::new();
    while !matches!(phase, Phase::Done) {
        let n = s.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        let t = now_ns();
        pending.extend_from_slice(&buf[..n]);
        let mut events = 0;
        let mut at = 0;
        loop {
            let rest = &pending[at..];
            match phase {
                Phase::Headers => {
                    let end = rest.windows(4).position(|w| w == b"\r\n\r\n")?;
                    if !rest.starts_with(b"HTTP/1.1 200") {
                        return None;
                    }
                    at += end + 4;
                    phase = Phase::Size;
                }
                Phase::Size => {
                    let Some(end) = rest.windows(2).position(|w| w == b"\r\n") else {
                        break;
                    };
                    let text = std::str::from_utf8(&rest[..end]).ok()?;
                    let size = usize::from_str_radix(text.split(';').next()?.trim(), 16).ok()?;
                    at += end + 2;
                    // A zero-size chunk is the last; its trailing CRLF ends the response.
                    phase = if size == 0 {
                        Phase::Done
                    } else {
                        Phase::Data(size)
                    };
                }
                Phase::Data(left) => {
                    if rest.is_empty() {
                        break;
                    }
                    let take = left.min(rest.len());
                    events += lines.feed(&rest[..take]);
                    at += take;
                    phase = if take == left {
                        Phase::DataEnd
                    } else {
                        Phase::Data(left - take)
                    };
                }
                Phase::DataEnd => {
                    if rest.len() < 2 {
                        break;
                    }
                    at += 2;
                    phase = Phase::Size;
                }
                Phase::Done => break,
            }
        }
        if matches!(phase, Phase::Done) {
            // Wait for the final CRLF so it is not taken as the next response's start.
            while pending.len() < at + 2 {
                let n = s.read(&mut buf).await.ok()?;
                if n == 0 {
                    return None;
                }
                pending.extend_from_slice(&buf[..n]);
            }
        } else {
            pending.drain(..at);
        }
        if events > 0 {
            times.push(t);
        }
    }
    times.first()?;
    Some((t0, times))
}

async fn one(addr: &str, request: &[u8]) -> Option<(u64, Vec<u64>)> {
    let t0 = now_ns();
    let mut s = TcpStream::connect(addr).await.ok()?;
    s.set_nodelay(true).ok()?;
    s.write_all(request).await.ok()?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut times = Vec::new();
    let mut carry = 0usize; // bytes of an unfinished line kept at the front of `buf`
    loop {
        let n = s.read(&mut buf[carry..]).await.ok()?;
        if n == 0 {
            break;
        }
        let t = now_ns();
        let end = carry + n;
        let data = &buf[..end];
        let mut events = 0;
        let mut line_start = 0;
        for (i, &b) in data.iter().enumerate() {
            if b == b'\n' {
                let line = &data[line_start..i];
                if line.starts_with(b"data:") && !line.ends_with(b"[DONE]") {
                    events += 1;
                }
                line_start = i + 1;
            }
        }
        buf.copy_within(line_start..end, 0);
        carry = end - line_start;
        if carry == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        if events > 0 {
            times.push(t);
        }
    }
    times.first()?;
    Some((t0, times))
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 6 && args.len() != 7 {
        eprintln!(
            "usage: raw-stream-client HOST:PORT PATH BODY_FILE CONCURRENCY REQUESTS \
             [close|keepalive]"
        );
        std::process::exit(2);
    }
    let keepalive = match args.get(6).map(String::as_str) {
        None | Some("close") => false,
        Some("keepalive") => true,
        Some(other) => {
            eprintln!("unknown connection mode {other:?}: close or keepalive");
            std::process::exit(2);
        }
    };
    let addr: Rc<str> = args[1].as_str().into();
    let body = std::fs::read(&args[3]).expect("body file");
    let concurrency: u64 = args[4].parse().expect("concurrency");
    let requests: u64 = args[5].parse().expect("requests");
    let request = Rc::new(move |id: u64| {
        let mut r = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nx-llmbench-request-id: {id}\r\n\
             Connection: {}\r\n\r\n",
            args[2],
            args[1],
            body.len(),
            if keepalive { "keep-alive" } else { "close" }
        )
        .into_bytes();
        r.extend_from_slice(&body);
        r
    });
    let next = Rc::new(std::cell::Cell::new(0u64));
    let out = Rc::new(std::cell::RefCell::new(Measured {
        ttft_ms: Vec::new(),
        gaps_ms: Vec::new(),
        chunks: Vec::new(),
        failed: 0,
    }));
    let local = tokio::task::LocalSet::new();
    for _ in 0..concurrency.min(requests) {
        let (addr, request, next, out) = (addr.clone(), request.clone(), next.clone(), out.clone());
        local.spawn_local(async move {
            let mut kept: Option<TcpStream> = None;
            while next.get() < requests {
                let id = next.get();
                next.set(id + 1);
                let got = if keepalive {
                    if kept.is_none() {
                        kept = TcpStream::connect(&*addr).await.ok();
                        if let Some(s) = &kept {
                            s.set_nodelay(true).ok();
                        }
                    }
                    match kept.as_mut() {
                        Some(s) => {
                            let got = one_keepalive(s, &request(id)).await;
                            if got.is_none() {
                                kept = None; // broken: the next request connects again
                            }
                            got
                        }
                        None => None,
                    }
                } else {
                    one(&addr, &request(id)).await
                };
                match got {
                    Some((t0, times)) => {
                        let mut o = out.borrow_mut();
                        o.ttft_ms.push((times[0] - t0) as f64 / 1e6);
                        let gaps = times.windows(2).map(|w| (w[1] - w[0]) as f64 / 1e6);
                        o.gaps_ms.extend(gaps);
                        o.chunks.push((id, times));
                    }
                    None => out.borrow_mut().failed += 1,
                }
            }
        });
    }
    local.await;
    let o = out.borrow();
    let list = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.6}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut stdout = std::io::stdout().lock();
    let chunks = o
        .chunks
        .iter()
        .map(|(id, t)| {
            let t: Vec<String> = t.iter().map(u64::to_string).collect();
            format!("\"{id}\":[{}]", t.join(","))
        })
        .collect::<Vec<_>>()
        .join(",");
    let _ = writeln!(
        stdout,
        "{{\"ok\":{},\"failed\":{},\"ttft_ms\":[{}],\"gaps_ms\":[{}],\"chunks\":{{{}}}}}",
        o.ttft_ms.len(),
        o.failed,
        list(&o.ttft_ms),
        list(&o.gaps_ms),
        chunks
    );
}
