//! One redaction step for every text that comes back from a server. A server may quote
//! the request it received (an in-band error, a 401 body, a proxy's error page), so any
//! secret the run sent can come back inside an error message, a warning or the server's
//! own description. The [`Redactor`] is built from everything the run sends that is
//! secret (the API key and its `Bearer` header, a URL's password and the `Basic`
//! credentials made from it, secret query values) and replaces each wherever it appears,
//! before the text reaches a record, a warning, a file or an exception.

use base64::Engine as _;
use serde_json::Value;

use crate::client::TargetSpec;
use crate::util::is_secret_param;

/// What a secret is replaced with.
pub const REDACTED: &str = "REDACTED";

/// Secrets shorter than this are not searched for: a one- or two-character password would
/// blank out ordinary words, and so short a secret protects nothing anyway.
const MIN_SECRET_LEN: usize = 3;

/// Replaces every secret a run sends in the texts that come back.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// Longest first, so a secret that contains another is replaced whole.
    secrets: Vec<String>,
}

impl Redactor {
    /// The secrets of one target: its API key, its URL's credentials and secret query
    /// values, each as sent and as the server may echo it (percent-decoded, base64).
    pub fn for_target(spec: &TargetSpec) -> Self {
        let mut secrets = Vec::new();
        if let Some(key) = &spec.api_key {
            secrets.push(key.clone());
        }
        if let Ok(url) = url::Url::parse(&spec.url) {
            let user = decode(url.username());
            let password = url.password().map(decode);
            if let Some(p) = &password {
                secrets.push(p.clone());
                secrets.push(url.password().unwrap_or_default().to_string());
            }
            if !user.is_empty() || password.is_some() {
                let pair = format!("{user}:{}", password.unwrap_or_default());
                secrets.push(base64::engine::general_purpose::STANDARD.encode(pair));
            }
            for (k, v) in url.query_pairs() {
                if is_secret_param(&k) {
                    secrets.push(v.into_owned());
                }
            }
        }
        Self::new(secrets)
    }

    /// A redactor for these secrets.
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        let mut secrets: Vec<String> = secrets
            .into_iter()
            .filter(|s| s.len() >= MIN_SECRET_LEN)
            .collect();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Self { secrets }
    }

    /// Whether there is nothing to redact.
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// `text` with every secret replaced.
    pub fn text(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), REDACTED);
            }
        }
        out
    }

    /// Redact a text in place.
    pub fn in_place(&self, text: &mut String) {
        if self.secrets.iter().any(|s| text.contains(s.as_str())) {
            *text = self.text(text);
        }
    }

    /// Every string inside a JSON value (keys too), redacted in place.
    pub fn json(&self, value: &mut Value) {
        if self.is_empty() {
            return;
        }
        match value {
            Value::String(s) => self.in_place(s),
            Value::Array(items) => items.iter_mut().for_each(|v| self.json(v)),
            Value::Object(map) => {
                let old = std::mem::take(map);
                for (mut k, mut v) in old {
                    self.in_place(&mut k);
                    self.json(&mut v);
                    map.insert(k, v);
                }
            }
            _ => {}
        }
    }

    /// An engine error with its message redacted (the messages quote servers' answers).
    pub fn error(&self, e: crate::error::Error) -> crate::error::Error {
        use crate::error::Error;
        if self.is_empty() {
            return e;
        }
        match e {
            Error::InvalidArgument(m) => Error::InvalidArgument(self.text(&m)),
            Error::Unreachable { url, detail } => Error::Unreachable {
                url: self.text(&url),
                detail: self.text(&detail),
            },
            Error::Target(m) => Error::Target(self.text(&m)),
            Error::Model(m) => Error::Model(self.text(&m)),
            other => other,
        }
    }
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(url: &str, key: Option<&str>) -> TargetSpec {
        serde_json::from_value(serde_json::json!({
            "url": url, "model": "m", "api": "chat", "api_key": key,
        }))
        .expect("a valid target spec")
    }

    #[test]
    fn the_key_and_its_bearer_header_are_replaced() {
        let r = Redactor::for_target(&spec("http://127.0.0.1:1", Some("sk-secret-123")));
        assert_eq!(
            r.text("401: bad header 'Authorization: Bearer sk-secret-123'"),
            "401: bad header 'Authorization: Bearer REDACTED'"
        );
    }

    #[test]
    fn url_credentials_are_replaced_raw_decoded_and_as_basic_auth() {
        let r = Redactor::for_target(&spec("http://bob:p%40ss-word@127.0.0.1:1", None));
        // base64("bob:p@ss-word")
        let basic = base64::engine::general_purpose::STANDARD.encode("bob:p@ss-word");
        let msg = format!("got Basic {basic} for p@ss-word (p%40ss-word)");
        assert_eq!(r.text(&msg), "got Basic REDACTED for REDACTED (REDACTED)");
    }

    #[test]
    fn secret_query_values_are_replaced() {
        let r = Redactor::for_target(&spec("http://127.0.0.1:1/v1?api_key=qk-999&model=m", None));
        assert_eq!(r.text("echo api_key=qk-999"), "echo api_key=REDACTED");
    }

    #[test]
    fn json_strings_and_keys_are_redacted() {
        let r = Redactor::new(["topsecret".to_string()]);
        let mut v = serde_json::json!({"a": ["x topsecret y", 1], "topsecret": {"b": "topsecret"}});
        r.json(&mut v);
        assert_eq!(
            v,
            serde_json::json!({"a": ["x REDACTED y", 1], "REDACTED": {"b": "REDACTED"}})
        );
    }

    #[test]
    fn a_secret_containing_another_is_replaced_whole() {
        let r = Redactor::new(["abc".to_string(), "abcdef".to_string()]);
        assert_eq!(r.text("abcdef abc"), "REDACTED REDACTED");
    }

    #[test]
    fn too_short_secrets_are_ignored() {
        let r = Redactor::new(["ab".to_string()]);
        assert!(r.is_empty());
        assert_eq!(r.text("abab"), "abab");
    }
}
