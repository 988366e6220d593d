//! HTTP streaming clients for the targets llmbench measures: OpenAI-compatible completions
//! and chat (vLLM, TGI's messages API, `transformers serve`, ...) and TGI's native
//! `/generate_stream`. A plain-HTTP target's requests each drive a kept connection in their
//! own task (`kept.rs`); HTTPS targets and the calls that are not streamed go through one
//! pooled `reqwest` client. The formats themselves live in `crate::protocol`.

pub mod accumulate;
mod errors;
pub mod kept;
mod response;
pub mod stream;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};

pub use crate::protocol::openai::ForceLen;
pub use crate::protocol::Api;
use crate::protocol::RequestSettings;

/// Timeouts applied to every request.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Timeouts {
    /// TCP (and TLS) connect.
    pub connect_s: f64,
    /// Send to the first output token (queueing and prefill included).
    pub ttft_s: f64,
    /// Longest silence between two reads once tokens flow (a stall).
    pub idle_s: f64,
    /// Whole request, send to end of stream.
    pub total_s: f64,
}

impl Default for Timeouts {
    fn default() -> Self {
        // A long prefill behind a deep queue can be silent for minutes on vLLM, which sends
        // no keep-alives; these defaults only catch servers that are really stuck.
        Timeouts {
            connect_s: 10.0,
            ttft_s: 600.0,
            idle_s: 300.0,
            total_s: 1800.0,
        }
    }
}

/// Everything needed to send requests to one target. The API key lives only here and in
/// the Authorization header; it is skipped when the spec is serialized.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    /// A name for tables and plots.
    #[serde(default)]
    pub name: String,
    /// Base URL, e.g. `http://localhost:8000` (a trailing `/v1` is accepted).
    pub url: String,
    /// Model name sent in requests (OpenAI APIs).
    #[serde(default)]
    pub model: String,
    /// Protocol.
    pub api: Api,
    /// Bearer token. Never serialized, logged or shown.
    #[serde(default, skip_serializing)]
    pub api_key: Option<String>,
    /// Extra body fields merged into every request (TGI: into `parameters`).
    #[serde(default)]
    pub extra_body: Map<String, Value>,
    /// Sampling temperature; 0 means greedy.
    #[serde(default)]
    pub temperature: f64,
    /// Ask for `stream_options.include_usage`.
    #[serde(default = "yes")]
    pub include_usage: bool,
    /// Ask for `stream_options.continuous_usage_stats` (exact per-chunk token counts).
    #[serde(default = "yes")]
    pub continuous_usage: bool,
    /// Ask for the server's own times of each request (vLLM ≥ 0.33's `include_metrics`,
    /// answered when it runs with `--enable-per-request-metrics`). Off by default: a
    /// server that checks its fields (`transformers serve`) refuses the unknown one.
    #[serde(default)]
    pub include_metrics: bool,
    /// Timeouts.
    #[serde(default)]
    pub timeouts: Timeouts,
    /// Verify TLS certificates (on unless explicitly turned off).
    #[serde(default = "yes")]
    pub verify_tls: bool,
    /// Force every request to generate exactly its `max_tokens`, the way the server
    /// allows: `"vllm"` (`ignore_eos` and `min_tokens`), `"transformers"`
    /// (`generation_config` with `min_new_tokens`). TGI's HTTP API cannot force it.
    #[serde(default)]
    pub force_output_len: Option<ForceLen>,
}

fn yes() -> bool {
    true
}

impl TargetSpec {
    /// The URL requests are posted to.
    pub fn endpoint(&self) -> String {
        let (base, query) = self.split_query();
        let url = self.api.protocol().endpoint(base.trim_end_matches('/'));
        format!("{url}{query}")
    }

    /// The URL split before its query string (`?…`, kept whole for every endpoint: some
    /// gateways take their key or API version there).
    fn split_query(&self) -> (&str, &str) {
        match self.url.find('?') {
            Some(i) => (&self.url[..i], &self.url[i..]),
            None => (&self.url, ""),
        }
    }

    /// The base URL without a trailing `/v1` (for `/health`, `/info`, `/version`,
    /// `/metrics`), and the query string to append to each.
    pub fn root_url(&self) -> String {
        let (base, _) = self.split_query();
        let base = base.trim_end_matches('/');
        base.strip_suffix("/v1").unwrap_or(base).to_string()
    }

    /// A path under the root URL, with the target's query string.
    pub fn root_path(&self, path: &str) -> String {
        let (_, query) = self.split_query();
        format!("{}{path}{query}", self.root_url())
    }

    /// The JSON body of a streaming request for `prompt` with at most `max_tokens` output;
    /// a chat request sends `messages` (a conversation's history) instead when given.
    pub fn request_body(
        &self,
        prompt: &str,
        messages: Option<&[crate::protocol::Message]>,
        max_tokens: u32,
    ) -> Value {
        self.api.protocol().request_body(
            prompt,
            messages,
            max_tokens,
            &RequestSettings {
                model: &self.model,
                temperature: self.temperature,
                include_usage: self.include_usage,
                continuous_usage: self.continuous_usage,
                include_metrics: self.include_metrics,
                force_output_len: self.force_output_len,
                extra_body: &self.extra_body,
            },
        )
    }

    /// Check the spec before a run, with messages a user can act on.
    pub fn validate(&self) -> Result<()> {
        let protocol = self.api.protocol();
        if self.force_output_len.is_some() && !protocol.can_force_output_len() {
            return Err(Error::InvalidArgument(
                "TGI cannot force the output length over HTTP (it ignores ignore_eos); \
                 its runs record the lengths actually generated"
                    .into(),
            ));
        }
        let parsed = url::Url::parse(&self.url).map_err(|e| {
            Error::InvalidArgument(format!(
                "target URL {:?} is not a URL ({e}); expected e.g. http://localhost:8000",
                crate::util::redact_url(&self.url)
            ))
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(Error::InvalidArgument(format!(
                "target URL must be http:// or https://, got {:?}",
                crate::util::redact_url(&self.url)
            )));
        }
        if protocol.needs_model() && self.model.is_empty() {
            return Err(Error::InvalidArgument(
                "an OpenAI-compatible target needs a model name (see GET /v1/models)".into(),
            ));
        }
        if let Some(key) = &self.api_key {
            // Checked here so a bad key is one clear error, not a run of 401s. The key
            // itself is never put in the message.
            if key.is_empty()
                || reqwest::header::HeaderValue::from_str(&format!("Bearer {key}")).is_err()
            {
                return Err(Error::InvalidArgument(
                    "the API key is empty or has characters an HTTP header cannot carry".into(),
                ));
            }
        }
        let t = &self.timeouts;
        if [t.connect_s, t.ttft_s, t.idle_s, t.total_s]
            .iter()
            .any(|v| !v.is_finite() || *v <= 0.0)
        {
            return Err(Error::InvalidArgument(
                "timeouts must be positive numbers of seconds".into(),
            ));
        }
        Ok(())
    }
}

/// The one HTTP client of a run: pooled connections, HTTP/1.1 (what every LLM server
/// streams over), no overall timeout (ours are per phase, in `stream.rs`).
pub fn build_http_client(spec: &TargetSpec, pool_size: usize) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs_f64(spec.timeouts.connect_s))
        .pool_max_idle_per_host(pool_size.max(1))
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .http1_only()
        .tls_danger_accept_invalid_certs(!spec.verify_tls)
        .build()
        .map_err(|e| Error::InvalidArgument(format!("cannot build HTTP client: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(api: Api, url: &str) -> TargetSpec {
        serde_json::from_value(json!({"url": url, "model": "m", "api": api})).expect("spec")
    }

    #[test]
    fn query_strings_follow_every_path() {
        let s = spec(Api::Chat, "https://gw/v1?api-version=2024&key=k");
        assert_eq!(
            s.endpoint(),
            "https://gw/v1/chat/completions?api-version=2024&key=k"
        );
        assert_eq!(
            s.root_path("/metrics"),
            "https://gw/metrics?api-version=2024&key=k"
        );
        assert_eq!(
            spec(Api::Tgi, "http://h:1/?a=b").endpoint(),
            "http://h:1/generate_stream?a=b"
        );
    }

    #[test]
    fn endpoints() {
        assert_eq!(
            spec(Api::Chat, "http://h:1").endpoint(),
            "http://h:1/v1/chat/completions"
        );
        assert_eq!(
            spec(Api::Completions, "http://h:1/v1/").endpoint(),
            "http://h:1/v1/completions"
        );
        assert_eq!(
            spec(Api::Tgi, "http://h:1").endpoint(),
            "http://h:1/generate_stream"
        );
        assert_eq!(spec(Api::Chat, "http://h:1/v1").root_url(), "http://h:1");
    }

    #[test]
    fn bodies_ask_for_usage_and_merge_extra_fields() {
        let mut s = spec(Api::Chat, "http://h:1");
        s.extra_body.insert("ignore_eos".into(), json!(true));
        let b = s.request_body("hi", None, 7);
        assert_eq!(b["max_tokens"], 7);
        assert_eq!(b["stream_options"]["continuous_usage_stats"], true);
        assert_eq!(b["ignore_eos"], true);
        assert_eq!(b["messages"][0]["content"], "hi");
        s.force_output_len = Some(ForceLen::Vllm);
        let b = s.request_body("hi", None, 9);
        assert_eq!(
            (b["ignore_eos"].clone(), b["min_tokens"].clone()),
            (json!(true), json!(9))
        );
        s.force_output_len = Some(ForceLen::Transformers);
        let b = s.request_body("hi", None, 9);
        assert_eq!(b["generation_config"], json!("{\"min_new_tokens\":9}"));
        let t = spec(Api::Tgi, "http://h:1").request_body("hi", None, 5);
        assert_eq!(t["parameters"]["details"], true);
        assert_eq!(t["parameters"]["max_new_tokens"], 5);
        assert_eq!(t["parameters"]["do_sample"], false);
        assert!(t["parameters"].get("temperature").is_none());
    }

    #[test]
    fn api_key_is_never_serialized() {
        let mut s = spec(Api::Chat, "http://h:1");
        s.api_key = Some("sk-secret-123".into());
        assert!(!serde_json::to_string(&s)
            .expect("json")
            .contains("sk-secret"));
    }

    #[test]
    fn validation_messages() {
        assert!(spec(Api::Chat, "localhost:8000").validate().is_err());
        let mut s = spec(Api::Chat, "http://h:1");
        s.model.clear();
        assert!(s.validate().is_err());
        assert!(spec(Api::Tgi, "http://h:1").validate().is_ok());
        let mut s = spec(Api::Chat, "http://h:1");
        s.api_key = Some("sk-bad\nkey".into());
        let msg = s.validate().expect_err("bad key").to_string();
        assert!(msg.contains("API key") && !msg.contains("sk-bad"), "{msg}");
    }
}
