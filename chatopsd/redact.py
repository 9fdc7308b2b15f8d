"""Redaction: the one place that takes secrets out of text before anyone sees it.

Used by logging (every line), chat (status source errors), `doctor`, health and start-up
errors. What goes:
- configured secrets (tokens), wherever they appear;
- in any URL: the userinfo (`user:password@`) and every query value (`?api_key=…`);
- bearer secrets that live in a URL's path: Discord webhook and interaction tokens
  (`/webhooks/<app>/<token>`, `/interactions/<id>/<token>/callback`, which discord.py logs at
  WARNING on a 429) and Slack response URLs (`hooks.slack.com/commands/…`).

Pure and dependency free: cheap enough to run on every log line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import SplitResult, urlsplit, urlunsplit

MASK = "[redacted]"

_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]{1,15}://[^\s<>\"'`]+")
# A token in a path: keep the route, drop the secret segment.
_PATH_TOKENS = (
    re.compile(r"(/webhooks/[^/\s?#]+/)[^/\s?#\"']+"),
    re.compile(r"(/interactions/[^/\s?#]+/)[^/\s?#\"']+"),
    re.compile(r"(hooks\.slack\.com/(?:commands|actions|services|workflows|triggers)/)[^\s?#\"']+"),
)


def url(text: str) -> str:
    """One URL without its userinfo, query values or path tokens (the rest kept readable)."""
    try:
        parts = urlsplit(text)
    except ValueError:
        return "(invalid URL)"
    netloc = parts.netloc.rpartition("@")[2]  # user:password@ goes entirely
    query = _mask_pairs(parts.query)
    fragment = _mask_pairs(parts.fragment) if "=" in parts.fragment else parts.fragment
    rebuilt = urlunsplit(SplitResult(parts.scheme, netloc, parts.path, query, fragment))
    return _path_tokens(rebuilt)


def _mask_pairs(query: str) -> str:
    if not query:
        return query
    out = []
    for pair in query.split("&"):
        name, eq, value = pair.partition("=")
        out.append(f"{name}={MASK}" if eq and value else pair if eq else _bare(name))
    return "&".join(out)


def _bare(word: str) -> str:
    # "?SECRET" (a bare query) may be the secret itself; a short flag word is harmless.
    return word if len(word) < 16 else MASK


def _path_tokens(text: str) -> str:
    for pattern in _PATH_TOKENS:
        text = pattern.sub(rf"\g<1>{MASK}", text)
    return text


def text(value: str, secrets: Iterable[str] = ()) -> str:
    """Free text (a log line, an error, a reply) with every URL and known secret redacted."""
    for secret in sorted({s for s in secrets if len(s) >= 6}, key=len, reverse=True):
        if secret in value:
            value = value.replace(secret, MASK)
    if "://" in value:
        value = _URL.sub(lambda m: url(m.group(0)), value)
    if "/webhooks/" in value or "/interactions/" in value or "hooks.slack.com" in value:
        value = _path_tokens(value)
    return value
