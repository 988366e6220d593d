//! Fault injection for the scripted server: every way a real server or network fails a
//! streaming request, on demand, so tests can check that each lands as a failed request of
//! the right kind while the rest of the run goes on.
//!
//! A request asks for a fault with `llmbench-fault:<name>` anywhere in its prompt (or the
//! `x-llmbench-fault` header); a server can also inject faults at a seeded rate
//! (`SimConfig::fault_rate`, `faults`). Socket-level faults (resets) go through
//! [`KillSwitch`]: the accepted connection is wrapped so that a handler can make its next
//! read or write fail and its close send a TCP RST.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::connect_info::Connected;
use axum::http::HeaderMap;
use axum::serve::{IncomingStream, Listener};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// The marker a prompt carries to ask for a fault: `llmbench-fault:reset_mid_stream`.
pub const FAULT_MARKER: &str = "llmbench-fault:";
/// The header that asks for a fault.
pub const FAULT_HEADER: &str = "x-llmbench-fault";

/// One way to fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// Read the request, then reset the connection (RST) without a response.
    ResetBeforeHeaders,
    /// Stream two tokens, then reset the connection.
    ResetMidStream,
    /// HTTP 429 with the server's overload body.
    #[serde(rename = "http_429")]
    Http429,
    /// HTTP 500 with the server's error body.
    #[serde(rename = "http_500")]
    Http500,
    /// HTTP 503 with the server's unavailable body.
    #[serde(rename = "http_503")]
    Http503,
    /// HTTP 200, two tokens, then the server's in-band error event.
    InBandError,
    /// Two tokens, then an event that is not valid JSON.
    MalformedJson,
    /// A normal stream written a few bytes at a time (must succeed).
    SplitWrites,
    /// Two tokens, then an event with invalid UTF-8 in it.
    InvalidUtf8,
    /// Two tokens, then one line of 6 MiB.
    HugeLine,
    /// Tokens, then the body ends without a finish reason, usage or `[DONE]`.
    NoFinish,
    /// Two tokens, then silence for `fault_delay_ms`, then the rest.
    StallMidStream,
    /// No response headers for `fault_delay_ms`, then a normal stream.
    SlowFirstByte,
    /// HTTP 200 and a clean end, but no output token.
    EmptyOutput,
    /// HTTP 200 with `application/json` instead of an event stream.
    NonSse,
}

impl Fault {
    /// Every fault.
    pub const ALL: [Fault; 15] = [
        Fault::ResetBeforeHeaders,
        Fault::ResetMidStream,
        Fault::Http429,
        Fault::Http500,
        Fault::Http503,
        Fault::InBandError,
        Fault::MalformedJson,
        Fault::SplitWrites,
        Fault::InvalidUtf8,
        Fault::HugeLine,
        Fault::NoFinish,
        Fault::StallMidStream,
        Fault::SlowFirstByte,
        Fault::EmptyOutput,
        Fault::NonSse,
    ];

    /// The snake_case name.
    pub fn name(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }

    /// Parse a name.
    pub fn from_name(name: &str) -> Option<Fault> {
        serde_json::from_value(Value::String(name.trim().to_string())).ok()
    }
}

fn marker_in(text: &str) -> Option<&str> {
    let at = text.find(FAULT_MARKER)? + FAULT_MARKER.len();
    let rest = &text[at..];
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    Some(&rest[..end])
}

/// The text fields a prompt can be in (completions, chat, TGI).
fn prompt_texts(body: &Value) -> Vec<&str> {
    fn push<'a>(out: &mut Vec<&'a str>, v: &'a Value) {
        match v {
            Value::String(s) => out.push(s.as_str()),
            Value::Array(items) => out.extend(items.iter().filter_map(Value::as_str)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    for key in ["prompt", "inputs"] {
        if let Some(p) = body.get(key) {
            push(&mut out, p);
        }
    }
    if let Some(Value::Array(msgs)) = body.get("messages") {
        for m in msgs {
            if let Some(c) = m.get("content") {
                push(&mut out, c);
            }
        }
    }
    out
}

/// The fault a request asks for, or an error for an unknown fault name.
pub fn requested(headers: &HeaderMap, body: &Value) -> Result<Option<Fault>, String> {
    let name = headers
        .get(FAULT_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| {
            prompt_texts(body)
                .into_iter()
                .find_map(marker_in)
                .map(str::to_string)
        });
    match name {
        None => Ok(None),
        Some(n) => Fault::from_name(&n).map(Some).ok_or_else(|| {
            let names: Vec<String> = Fault::ALL.iter().map(|f| f.name()).collect();
            format!("unknown fault {n:?}; known: {}", names.join(", "))
        }),
    }
}

/// Seeded rate-based choice for request number `n`: a fault with probability `rate`,
/// drawn from `faults` in turn.
pub fn by_rate(n: u64, rate: f64, faults: &[Fault], seed: u64) -> Option<Fault> {
    if rate <= 0.0 || faults.is_empty() {
        return None;
    }
    // splitmix64: a cheap, well-mixed hash of (seed, n).
    let mut z = seed.wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    let u = (z >> 11) as f64 / (1u64 << 53) as f64;
    (u < rate).then(|| faults[(n as usize) % faults.len()])
}

/// Shared between a connection and the handlers serving requests on it.
#[derive(Debug, Default)]
pub struct KillSwitch(AtomicBool);

impl KillSwitch {
    /// Make the connection's next read or write fail, and its close a reset.
    pub fn kill(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    fn killed(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// A TCP listener whose connections can be reset by the handlers.
pub struct KillableListener(pub TcpListener);

/// What a handler learns about its connection.
#[derive(Debug, Clone)]
pub struct ConnHandle {
    /// The client's address.
    pub peer: SocketAddr,
    /// Resets this connection.
    pub switch: Arc<KillSwitch>,
}

impl Listener for KillableListener {
    type Io = KillableStream;
    type Addr = ConnHandle;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok((tcp, peer)) => {
                    // Without TCP_NODELAY, Nagle's algorithm holds each small chunk until
                    // the previous one is acknowledged (up to the peer's delayed-ACK time).
                    let _ = tcp.set_nodelay(true);
                    let switch = Arc::new(KillSwitch::default());
                    let io = KillableStream {
                        tcp,
                        switch: switch.clone(),
                    };
                    return (io, ConnHandle { peer, switch });
                }
                // Out of file descriptors and the like: back off instead of spinning.
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(5)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(ConnHandle {
            peer: self.0.local_addr()?,
            switch: Arc::default(),
        })
    }
}

impl Connected<IncomingStream<'_, KillableListener>> for ConnHandle {
    fn connect_info(stream: IncomingStream<'_, KillableListener>) -> Self {
        stream.remote_addr().clone()
    }
}

/// An accepted connection that fails on demand.
pub struct KillableStream {
    tcp: TcpStream,
    switch: Arc<KillSwitch>,
}

fn reset() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionReset,
        "llmbench fault: connection reset",
    )
}

impl AsyncRead for KillableStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.switch.killed() {
            return Poll::Ready(Err(reset()));
        }
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for KillableStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.switch.killed() {
            return Poll::Ready(Err(reset()));
        }
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.switch.killed() {
            return Poll::Ready(Err(reset()));
        }
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

impl Drop for KillableStream {
    fn drop(&mut self) {
        if self.switch.killed() {
            // Linger 0: closing sends RST instead of FIN, as a crashed peer or a middlebox
            // reset does.
            let _ = self.tcp.set_zero_linger();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_round_trip_and_markers_are_found_in_every_prompt_field() {
        for f in Fault::ALL {
            assert_eq!(Fault::from_name(&f.name()), Some(f));
        }
        let h = HeaderMap::new();
        let chat =
            json!({"messages": [{"role": "user", "content": "hi llmbench-fault:http_429 there"}]});
        assert_eq!(requested(&h, &chat), Ok(Some(Fault::Http429)));
        let tgi = json!({"inputs": "llmbench-fault:no_finish"});
        assert_eq!(requested(&h, &tgi), Ok(Some(Fault::NoFinish)));
        let cmpl = json!({"prompt": ["a", "llmbench-fault:non_sse."]});
        assert_eq!(requested(&h, &cmpl), Ok(Some(Fault::NonSse)));
        assert_eq!(requested(&h, &json!({"prompt": "plain"})), Ok(None));
        assert!(requested(&h, &json!({"prompt": "llmbench-fault:nope"})).is_err());
        let mut h = HeaderMap::new();
        h.insert(FAULT_HEADER, "stall_mid_stream".parse().expect("header"));
        assert_eq!(requested(&h, &json!({})), Ok(Some(Fault::StallMidStream)));
    }

    #[test]
    fn rate_is_seeded_and_close_to_the_asked_rate() {
        let faults = [Fault::Http500, Fault::NoFinish];
        let picks: Vec<Option<Fault>> = (0..10_000).map(|n| by_rate(n, 0.1, &faults, 7)).collect();
        let again: Vec<Option<Fault>> = (0..10_000).map(|n| by_rate(n, 0.1, &faults, 7)).collect();
        assert_eq!(picks, again);
        let n = picks.iter().filter(|p| p.is_some()).count();
        assert!((900..1100).contains(&n), "{n} of 10,000 at 10%");
        assert!(picks.contains(&Some(Fault::Http500)) && picks.contains(&Some(Fault::NoFinish)));
        assert_eq!(by_rate(3, 0.0, &faults, 7), None);
    }
}
