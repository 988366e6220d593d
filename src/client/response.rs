//! A streaming response as the request's reader sees it, whichever way it came: on a kept
//! connection the request's own task drives (`kept.rs`, plain HTTP) or from the pooled
//! `reqwest` client (HTTPS). Both give the status, the content type and the body piece by
//! piece; a connection is kept for the next request (in the run's pool or `reqwest`'s)
//! only when its body was read to the end.

use bytes::Bytes;
use hyper::body::Incoming;

use super::errors::{error_chain, reqwest_chain};
use super::kept::{Conn, Pool};

/// The longest a finished request waits for its body's end before its connection is
/// closed instead of kept.
pub const DRAIN_WAIT: std::time::Duration = std::time::Duration::from_millis(50);

/// The most bytes read past the last event to reach the body's end.
pub const DRAIN_BYTES: usize = 64 * 1024;

/// One response being read.
pub enum Response<'p> {
    /// From the pooled `reqwest` client.
    Pooled {
        resp: reqwest::Response,
        /// The body was read to its end: the client's pool keeps the connection.
        ended: bool,
    },
    /// On a kept connection of `pool`.
    Kept {
        head: http::response::Parts,
        body: Incoming,
        conn: Conn,
        pool: &'p Pool,
        /// The body was read to its end: the connection can carry the next request.
        ended: bool,
    },
}

impl Response<'_> {
    /// The HTTP status code.
    pub fn status(&self) -> http::StatusCode {
        match self {
            Response::Pooled { resp, .. } => resp.status(),
            Response::Kept { head, .. } => head.status,
        }
    }

    /// The `Content-Type`, lower-cased ("" when absent).
    pub fn content_type(&self) -> String {
        let headers = match self {
            Response::Pooled { resp, .. } => resp.headers(),
            Response::Kept { head, .. } => &head.headers,
        };
        headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase()
    }

    /// The next piece of the body, `None` at its end; an error is its text (no URL in it).
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, String> {
        match self {
            Response::Pooled { resp, ended } => {
                let next = resp.chunk().await.map_err(|e| reqwest_chain(&e))?;
                *ended = next.is_none();
                Ok(next)
            }
            Response::Kept {
                body, conn, ended, ..
            } => {
                let next = conn.chunk(body).await.map_err(|e| error_chain(&e))?;
                *ended = next.is_none();
                Ok(next)
            }
        }
    }

    /// Done with the response. Its connection is kept (in the run's pool, or `reqwest`'s)
    /// only when its body ends: what is left after the last event (`[DONE]`'s end of the
    /// chunked body, normally in the same read) is read for at most [`DRAIN_WAIT`] and
    /// [`DRAIN_BYTES`]; a connection that is not at its end by then is closed (the server
    /// may still be writing to it). Without this every request would open a connection.
    pub async fn finish(mut self) {
        let ended = match &self {
            Response::Pooled { ended, .. } | Response::Kept { ended, .. } => *ended,
        };
        if !ended {
            let mut left = DRAIN_BYTES;
            let drain = async {
                while let Ok(Some(b)) = self.chunk().await {
                    left = left.saturating_sub(b.len());
                    if left == 0 {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(DRAIN_WAIT, drain).await;
        }
        if let Response::Kept {
            conn,
            pool,
            ended: true,
            ..
        } = self
        {
            pool.give_back(conn);
        }
    }
}
