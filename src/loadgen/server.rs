//! What the sweep asks of the target besides the measured requests: what it says about
//! itself (for the manifest), connections opened before a stage, and a failed warm-up
//! turned into an error a user can act on.

use std::time::Duration;

use serde_json::Value;

use crate::client::stream::RunContext;
use crate::client::TargetSpec;
use crate::error::Error;
use crate::record::{ErrorKind, RequestRecord};

/// Fetch what the server says about itself, for the run manifest. Never fails.
pub async fn server_info(http: &reqwest::Client, spec: &TargetSpec) -> Value {
    let mut info = serde_json::Map::new();
    for (key, path) in [
        ("models", "/v1/models"),
        ("version", "/version"),
        ("info", "/info"),
    ] {
        let mut req = http.get(spec.root_path(path));
        if let Some(k) = &spec.api_key {
            req = req.bearer_auth(k);
        }
        let value = match tokio::time::timeout(Duration::from_secs(3), req.send()).await {
            Ok(Ok(r)) if r.status().is_success() => {
                match tokio::time::timeout(Duration::from_secs(3), r.json::<Value>()).await {
                    Ok(Ok(v)) => v,
                    _ => Value::Null,
                }
            }
            _ => Value::Null,
        };
        info.insert(key.into(), value);
    }
    Value::Object(info)
}

/// Open `n` connections before a stage, so its first requests do not pay for TCP set-up
/// and the server's accepts: without it a stage of 1,024 streams starts with 1,024
/// connects and its TTFT p99 is the accept queue. Kept connections (plain HTTP) are opened
/// as they are; through the pooled client (HTTPS), by concurrent `GET /health`s, whatever
/// they answer.
pub async fn preconnect(shared: &RunContext, n: u32) {
    if let Some(pool) = &shared.kept {
        tokio::select! {
            _ = pool.open(n as usize) => {}
            _ = shared.cancel.cancelled() => {}
        }
        return;
    }
    let url = shared.spec.root_path("/health");
    let timeout = Duration::from_secs_f64(shared.spec.timeouts.connect_s.max(1.0) * 2.0);
    let one = || async {
        let mut req = shared.http.get(&url);
        if let Some(k) = &shared.spec.api_key {
            req = req.bearer_auth(k);
        }
        // Read the body so the connection goes back to the pool.
        let _ = tokio::time::timeout(timeout, async { req.send().await?.bytes().await }).await;
    };
    // A cancelled run (Ctrl-C) does not wait for slow answers.
    tokio::select! {
        _ = futures_util::future::join_all((0..n).map(|_| one())) => {}
        _ = shared.cancel.cancelled() => {}
    }
}

fn model_ids(info: &Value) -> Vec<String> {
    info["models"]["data"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|m| m["id"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// HTTP statuses that refuse the request itself (bad body, credentials, path or model),
/// which the same request would meet again every time.
pub fn refuses_every_request(status: u16) -> bool {
    matches!(status, 400 | 401 | 403 | 404 | 405 | 422)
}

/// Turn a failed warm-up into an error a user can act on, or `None` if the run can go on.
pub fn warmup_error(spec: &TargetSpec, rec: &RequestRecord, info: &Value) -> Option<Error> {
    let url = crate::util::redact_url(&spec.endpoint());
    let msg = rec.error.clone().unwrap_or_default();
    match rec.error_kind? {
        ErrorKind::Connect => Some(Error::Unreachable {
            url,
            detail: format!(
                "{msg}. Is the server running and listening there? (tried POST {} with a \
                 streaming {:?} request)",
                crate::util::redact_url(&spec.endpoint()),
                spec.api
            ),
        }),
        // A status that says the request or its credentials are wrong repeats on every
        // request, so the run stops here; any other (500, 502, 503, 429, ...) may be
        // passing: the run goes on, with a warning, and its requests show what follows.
        ErrorKind::HttpStatus if !rec.http_status.is_some_and(refuses_every_request) => None,
        ErrorKind::HttpStatus => {
            let ids = model_ids(info);
            let hint = if rec.http_status == Some(404) && !ids.is_empty() {
                if ids.contains(&spec.model) {
                    format!(
                        " (the server lists model {:?}; is the API right?)",
                        spec.model
                    )
                } else {
                    format!(
                        " (model {:?} is not served; the server lists: {})",
                        spec.model,
                        ids.join(", ")
                    )
                }
            } else {
                String::new()
            };
            Some(Error::Target(format!(
                "the warm-up request to {url} failed: {msg}{hint}"
            )))
        }
        ErrorKind::Malformed => Some(Error::Target(format!(
            "the warm-up request to {url} failed: {msg}"
        ))),
        ErrorKind::Cancelled => Some(Error::Cancelled),
        _ => None,
    }
}
