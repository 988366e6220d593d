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

/// The URL with any `user:password@` removed, for anything that is shown or saved.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if !u.username().is_empty() || u.password().is_some() {
                let _ = u.set_username("");
                let _ = u.set_password(None);
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
        assert!(!redact_url("weird://a:b@[bad").contains("b@"));
    }
}
