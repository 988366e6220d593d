//! The least a streaming client can do, as a floor for the peer benchmark: one
//! single-threaded tokio runtime, one TCP connection per request (`Connection: close`, so
//! the response ends at EOF and no HTTP parsing is needed), a timestamp for every read
//! that brings a complete `data:` line, and nothing else: no JSON, no token counting.
//!
//! Usage: raw-stream-client HOST:PORT PATH BODY_FILE CONCURRENCY REQUESTS
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
    if args.len() != 6 {
        eprintln!("usage: raw-stream-client HOST:PORT PATH BODY_FILE CONCURRENCY REQUESTS");
        std::process::exit(2);
    }
    let addr: Rc<str> = args[1].as_str().into();
    let body = std::fs::read(&args[3]).expect("body file");
    let concurrency: u64 = args[4].parse().expect("concurrency");
    let requests: u64 = args[5].parse().expect("requests");
    let request = Rc::new(move |id: u64| {
        let mut r = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nx-llmbench-request-id: {id}\r\n\
             Connection: close\r\n\r\n",
            args[2],
            args[1],
            body.len()
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
            while next.get() < requests {
                let id = next.get();
                next.set(id + 1);
                match one(&addr, &request(id)).await {
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
