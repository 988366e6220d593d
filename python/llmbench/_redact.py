"""Removing credentials from anything shown or saved."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

# Query parameters whose values are secrets (case-insensitive substrings), as in the engine.
_SECRET_PARAMS = ("key", "token", "secret", "password", "auth", "sig")


def _secret(name: str) -> bool:
    n = name.lower()
    return any(s in n for s in _SECRET_PARAMS)


def redact_url(url: str) -> str:
    """The URL without `user:password@` and with secret query values replaced.

    Example:
        >>> redact_url("http://u:secret@host:8000/v1?api_key=sk-1&x=2")
        'http://host:8000/v1?api_key=REDACTED&x=2'
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return url.split("@", 1)[-1] if "@" in url else url
    host = parts.netloc
    if parts.username is not None or parts.password is not None:
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
    query = parts.query
    pairs = parse_qsl(query, keep_blank_values=True)
    if any(_secret(k) for k, _ in pairs):
        query = urlencode([(k, "REDACTED" if _secret(k) else v) for k, v in pairs])
    return urlunsplit((parts.scheme, host, parts.path, query, parts.fragment))
