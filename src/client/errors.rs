//! Readable, redacted error text for a failed request: the server's own message from an
//! HTTP error body, and a transport error's chain with every URL's credentials removed.

use std::time::Duration;

use super::TargetSpec;

/// A short, readable text for an HTTP body (JSON error message when there is one).
pub async fn read_error_body(resp: &mut super::response::Response<'_>) -> String {
    let mut buf = Vec::new();
    let read = async {
        while let Ok(Some(b)) = resp.chunk().await {
            buf.extend_from_slice(&b);
            if buf.len() > 16 * 1024 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), read).await;
    let text = String::from_utf8_lossy(&buf);
    let msg = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| {
            let e = v.get("error").cloned().unwrap_or(v.clone());
            match &e {
                serde_json::Value::Object(m) if m.contains_key("message") => {
                    Some(crate::protocol::decode::error_message(&e))
                }
                serde_json::Value::String(s) => Some(s.clone()),
                _ => v
                    .get("message")
                    .or(v.get("detail"))
                    .map(crate::protocol::decode::error_message),
            }
        })
        .unwrap_or_else(|| text.trim().to_string());
    crate::util::truncate(&msg, 500)
}

/// The error and its causes, one line, with the target URL redacted.
pub(super) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = s.source();
    }
    parts.join(": ")
}

/// A reqwest error's chain with the URL it names redacted (reqwest prints the whole URL,
/// credentials and query included).
pub fn reqwest_chain(e: &reqwest::Error) -> String {
    let text = error_chain(e);
    match e.url() {
        Some(u) => text.replace(u.as_str(), &crate::util::redact_url(u.as_str())),
        None => text,
    }
}

pub fn describe_reqwest_error(e: &reqwest::Error, spec: &TargetSpec) -> String {
    // reqwest puts the URL in its messages; never let credentials through.
    let text = reqwest_chain(e).replace(&spec.url, &crate::util::redact_url(&spec.url));
    describe_failure(spec, &text)
}

/// A failed request's message: the streaming endpoint (redacted) and what went wrong.
pub fn describe_failure(spec: &TargetSpec, what: &str) -> String {
    format!("POST {}: {what}", crate::util::redact_url(&spec.endpoint()))
}
