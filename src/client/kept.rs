//! Kept connections for plain-HTTP targets: each request drives its own HTTP/1.1
//! connection (hyper's `client::conn::http1`) in its own task, and the connection goes back
//! to the run's pool when the response has been read to its end.
//!
//! Why not the pooled `reqwest` client for these: it runs every connection as a task of its
//! own that hands each body chunk to the request's task through a channel, so every chunk
//! costs two task wake-ups and a trip through the scheduler's queue between the socket read
//! and the timestamp. Here the read, the SSE parsing and the timestamp happen in one poll of
//! one task (docs/architecture.md, "Timing at the floor"). HTTPS targets keep using
//! `reqwest` (TLS, certificates and proxies are its job); so do the non-streaming calls
//! (`/health`, `/metrics`, `/v1/models`).

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Mutex;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body as _, Incoming};
use hyper::client::conn::http1::{self, Connection, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::TargetSpec;

type Driver = Connection<TokioIo<TcpStream>, Full<Bytes>>;

/// One open connection: the handle requests are sent on and the future that does its I/O
/// (polled only by the task using it, so nothing else ever touches the socket).
pub struct Conn {
    sender: SendRequest<Full<Bytes>>,
    io: Io,
    /// Whether it has carried a response before (a server may have closed it since).
    reused: bool,
}

/// The connection's I/O future and whether it has finished (it is never polled again then).
struct Io {
    driver: Pin<Box<Driver>>,
    done: bool,
}

impl Io {
    /// Let the connection read and write what it can; `true` once it has closed.
    fn drive(&mut self, cx: &mut std::task::Context<'_>) -> bool {
        if !self.done && self.driver.as_mut().poll(cx).is_ready() {
            self.done = true;
        }
        self.done
    }
}

/// Where plain-HTTP requests go and the connections kept between them.
pub struct Pool {
    /// `host:port` to connect to.
    addr: String,
    /// The `Host` header.
    authority: http::HeaderValue,
    /// Path and query of the streaming endpoint.
    path: http::Uri,
    connect_timeout: Duration,
    idle: Mutex<Vec<Conn>>,
    capacity: usize,
    /// Connections opened so far (a server that closes kept connections shows as churn).
    opened: std::sync::atomic::AtomicUsize,
}

/// Why a request got no connection.
#[derive(Debug)]
pub enum SendError {
    /// The TCP connection could not be opened (refused, unreachable, DNS).
    Connect(String),
    /// Connecting took longer than the connect timeout.
    ConnectTimeout,
    /// The run was cancelled while waiting for a connection.
    Cancelled,
}

impl Pool {
    /// The pool of a plain-HTTP target (`None` for HTTPS or a URL with credentials in it,
    /// which `reqwest` serves), keeping at most `capacity` idle connections.
    pub fn for_target(spec: &TargetSpec, capacity: usize) -> Option<Pool> {
        let endpoint = url::Url::parse(&spec.endpoint()).ok()?;
        if endpoint.scheme() != "http" || !endpoint.username().is_empty() {
            return None;
        }
        let host = endpoint.host_str()?;
        if proxy_may_apply(host, |k| std::env::var(k).ok()) {
            return None; // `reqwest` applies the proxy settings (and `NO_PROXY`)
        }
        let port = endpoint.port_or_known_default()?;
        let authority = match endpoint.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        };
        let path = match endpoint.query() {
            Some(q) => format!("{}?{q}", endpoint.path()),
            None => endpoint.path().to_string(),
        };
        Some(Pool {
            // A bracketed IPv6 host connects as it is written in the URL.
            addr: format!("{host}:{port}"),
            authority: http::HeaderValue::from_str(&authority).ok()?,
            path: path.parse().ok()?,
            connect_timeout: Duration::from_secs_f64(spec.timeouts.connect_s),
            idle: Mutex::new(Vec::new()),
            capacity: capacity.max(1),
            opened: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// A request to the streaming endpoint, `Host` set (hyper sets `Content-Length` from
    /// the body).
    pub fn request(&self) -> http::request::Builder {
        http::Request::post(self.path.clone()).header(http::header::HOST, self.authority.clone())
    }

    /// An idle connection that is still open, or a new one.
    pub async fn checkout(&self) -> Result<Conn, SendError> {
        loop {
            let kept = self.idle.lock().map(|mut v| v.pop()).unwrap_or(None);
            let Some(mut conn) = kept else {
                return self.connect().await;
            };
            if conn.ready().await {
                return Ok(conn);
            }
        }
    }

    /// Open a new connection.
    pub async fn connect(&self) -> Result<Conn, SendError> {
        let tcp = match tokio::time::timeout(self.connect_timeout, TcpStream::connect(&self.addr))
            .await
        {
            Err(_) => return Err(SendError::ConnectTimeout),
            Ok(Err(e)) => return Err(SendError::Connect(format!("tcp connect error: {e}"))),
            Ok(Ok(s)) => s,
        };
        // Each SSE event is small and wanted now.
        let _ = tcp.set_nodelay(true);
        self.opened
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (sender, driver) = http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| SendError::Connect(super::errors::error_chain(&e)))?;
        Ok(Conn {
            sender,
            io: Io {
                driver: Box::pin(driver),
                done: false,
            },
            reused: false,
        })
    }

    /// How many connections this pool has opened.
    pub fn opened(&self) -> usize {
        self.opened.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Keep a connection whose response was read to its end for the next request.
    pub fn give_back(&self, mut conn: Conn) {
        conn.reused = true;
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < self.capacity {
                idle.push(conn);
            }
        }
    }

    /// Open `n` connections now (concurrently) and keep them, so a stage's first requests
    /// do not pay for TCP set-up and the server's accept queue. Failures are left for the
    /// requests themselves to report.
    pub async fn open(&self, n: usize) {
        let have = self.idle.lock().map(|v| v.len()).unwrap_or(0);
        let want = n.min(self.capacity).saturating_sub(have);
        let opened = futures_util::future::join_all((0..want).map(|_| self.connect())).await;
        if let Ok(mut idle) = self.idle.lock() {
            idle.extend(opened.into_iter().flatten());
        }
    }
}

/// Whether a proxy from the environment may be meant for `host`: one is set and the host is
/// not this machine. Such targets go through `reqwest`, which honours `HTTP_PROXY`,
/// `ALL_PROXY` and `NO_PROXY`; a server on this machine is never reached through a proxy.
/// (`env` reads a variable: the process's environment, or a test's.)
fn proxy_may_apply(host: &str, env: impl Fn(&str) -> Option<String>) -> bool {
    let set = ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"]
        .iter()
        .any(|k| env(k).is_some_and(|v| !v.trim().is_empty()));
    let local = host == "localhost"
        || host
            .trim_matches(|c| c == '[' || c == ']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    set && !local
}

impl Conn {
    /// Whether the connection can take a request now: drives it until its handle is ready,
    /// or finds it closed (the server may close an idle kept connection at any time).
    async fn ready(&mut self) -> bool {
        let check = poll_fn(|cx| {
            if self.io.drive(cx) {
                return Poll::Ready(false);
            }
            self.sender.poll_ready(cx).map(|r| r.is_ok())
        });
        // A healthy idle connection is ready at once; one that is not is not worth waiting on.
        tokio::time::timeout(Duration::from_secs(1), check)
            .await
            .unwrap_or(false)
    }

    /// Whether the connection carried a response before this request.
    pub fn reused(&self) -> bool {
        self.reused
    }

    /// Send `req` and wait for the response head, driving the connection meanwhile (the
    /// request's bytes are written in the first poll, right after the caller's timestamp).
    pub async fn send(
        &mut self,
        req: http::Request<Full<Bytes>>,
    ) -> Result<http::Response<Incoming>, hyper::Error> {
        let mut response = std::pin::pin!(self.sender.send_request(req));
        let io = &mut self.io;
        poll_fn(|cx| {
            // The connection's end is seen through the response future: when it fails,
            // hyper fails the pending request with the reason.
            io.drive(cx);
            response.as_mut().poll(cx)
        })
        .await
    }

    /// The next piece of the body (`None` at its end), driving the connection in the same
    /// poll, so the socket read and the caller's timestamp are one scheduling apart at most.
    pub async fn chunk(&mut self, body: &mut Incoming) -> Result<Option<Bytes>, hyper::Error> {
        let io = &mut self.io;
        poll_fn(|cx| loop {
            io.drive(cx);
            match Pin::new(&mut *body).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => return Poll::Ready(Ok(None)),
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) if !data.is_empty() => return Poll::Ready(Ok(Some(data))),
                    // Empty data or trailers: nothing to time; read on.
                    _ => continue,
                },
            }
        })
        .await
    }
}

#[cfg(test)]
#[path = "kept_tests.rs"]
mod tests;
