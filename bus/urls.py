"""Bus URLs made fit for logs and error messages."""

from __future__ import annotations

from urllib.parse import urlsplit


def redact_url(url: str) -> str:
    """The URL without its password or query string, fit for logs and error messages."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        user, _, host = netloc.rpartition("@")
        name = user.partition(":")[0]
        netloc = f"{name}:***@{host}" if ":" in user else f"{name}@{host}"
    return f"{parts.scheme}://{netloc}{parts.path}"
