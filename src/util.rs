//! Small string helpers shared by the engine: truncation for messages, URL redaction.

/// At most `max` bytes of `s` (on a character boundary), with `…` when cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Query parameters whose values are secrets (matched case-insensitively, by substring).
const SECRET_PARAMS: [&str; 6] = ["key", "token", "secret", "password", "auth", "sig"];

/// Whether a query parameter name holds a secret.
pub fn is_secret_param(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    SECRET_PARAMS.iter().any(|s| n.contains(s))
}

/// The URL with any `user:password@` removed and secret query values (`api_key=`,
/// `token=`, ...) replaced, for anything that is shown or saved.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if !u.username().is_empty() || u.password().is_some() {
                let _ = u.set_username("");
                let _ = u.set_password(None);
            }
            if u.query_pairs().any(|(k, _)| is_secret_param(&k)) {
                let pairs: Vec<(String, String)> = u
                    .query_pairs()
                    .map(|(k, v)| {
                        let v = if is_secret_param(&k) {
                            "REDACTED".to_string()
                        } else {
                            v.into_owned()
                        };
                        (k.into_owned(), v)
                    })
                    .collect();
                u.query_pairs_mut().clear().extend_pairs(pairs);
            }
            u.to_string()
        }
        Err(_) => match (url.find("://"), url.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                format!("{}{}", &url[..scheme + 3], &url[at + 1..])
            }
            _ => url.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h…");
        assert_eq!(truncate("abc", 3), "abc");
    }

    #[test]
    fn credentials_are_removed_from_urls() {
        assert_eq!(
            redact_url("http://user:s3cret@host:8000/v1"),
            "http://host:8000/v1"
        );
        assert_eq!(redact_url("http://host:8000/v1"), "http://host:8000/v1");
        assert_eq!(
            redact_url("https://h/v1?api_key=sk-123&model=m&X-Amz-Signature=abc"),
            "https://h/v1?api_key=REDACTED&model=m&X-Amz-Signature=REDACTED"
        );
        assert!(!redact_url("weird://a:b@[bad").contains("b@"));
    }
}
