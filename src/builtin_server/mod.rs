//! What both built-in servers (the scripted server and the baseline) answer the same way:
//! vLLM-shaped error bodies, the headers of an event-stream response, and their own
//! account of each request's time (`server_times`).

pub mod server_times;

use axum::body::Body;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

/// An error response in vLLM's shape (≥ 0.10.1: a nested `error` object).
pub fn error_response(status: StatusCode, kind: &str, message: String) -> Response {
    let body = crate::protocol::openai::error_body(&message, kind, status.as_u16());
    (status, Json(body)).into_response()
}

/// A streaming `text/event-stream` response over `body`.
pub fn sse_response(body: Body) -> Response {
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/event-stream"),
    );
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-cache"),
    );
    resp
}
