"""Redaction: the one place that takes secrets out of text before anyone sees it.

Used by logging (every line), chat (status source errors), `doctor`, health and start-up
errors. What goes:
- configured secrets (tokens), wherever they appear;
- in any URL: the userinfo (`user:password@`), every query value (`?api_key=…`) and a bare
  query (`?abc123…`) unless it is a short lowercase flag (`?json`);
- bearer secrets that live in a URL's path: Discord webhook and interaction tokens
  (`/webhooks/<app>/<token>`, `/interactions/<id>/<token>/callback`, which discord.py logs at
  WARNING on a 429), Slack response URLs (`hooks.slack.com/commands/…`), and any path segment
  shaped like a token (16 characters or more that are not lowercase words: a key, a UUID);
- what a server quotes back of the URL it was asked for: `url_secrets` lists a URL's secret
  parts, to be passed as `secrets` (a status source's error body, the configured sources).

Pure and dependency free: cheap enough to run on every log line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from urllib.parse import SplitResult, urlsplit, urlunsplit

MASK = "[redacted]"

_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]{1,15}://[^\s<>\"'`]+")
# A token in a path: keep the route, drop the secret segment.
_PATH_TOKENS = (
    re.compile(r"(/webhooks/[^/\s?#]+/)[^/\s?#\"']+"),
    re.compile(r"(/interactions/[^/\s?#]+/)[^/\s?#\"']+"),
    re.compile(r"(hooks\.slack\.com/(?:commands|actions|services|workflows|triggers)/)[^\s?#\"']+"),
)
# A readable path segment or flag: lowercase words joined by - _ . ("api", "alert-status").
_WORDS = re.compile(r"[a-z]+(?:[-_.][a-z]+)*")
_FLAG = re.compile(r"[a-z][a-z_-]{0,11}")
TOKEN_SEGMENT_CHARS = 16


def url(text: str) -> str:
    """One URL without its userinfo, query values or path tokens (the rest kept readable)."""
    try:
        parts = urlsplit(text)
    except ValueError:
        return "(invalid URL)"
    netloc = parts.netloc.rpartition("@")[2]  # user:password@ goes entirely
    query = _mask_pairs(parts.query)
    fragment = _mask_pairs(parts.fragment) if "=" in parts.fragment else parts.fragment
    path = "/".join(MASK if _token_like(seg) else seg for seg in parts.path.split("/"))
    rebuilt = urlunsplit(SplitResult(parts.scheme, netloc, path, query, fragment))
    return _path_tokens(rebuilt)


def _token_like(segment: str) -> bool:
    """A path segment that may be a credential: long, and not plain lowercase words."""
    return len(segment) >= TOKEN_SEGMENT_CHARS and _WORDS.fullmatch(segment) is None


def url_secrets(text: str, *, every_value: bool = True) -> list[str]:
    """The parts of a URL that `url` hides: password, query values and bare query, token-like
    path segments. `every_value=False` leaves out values that read as words or numbers
    ("production", "1"): for redacting them everywhere, not only near this URL."""
    try:
        parts = urlsplit(text)
    except ValueError:
        return []
    found = [parts.password] if parts.password else []
    found += [seg for seg in parts.path.split("/") if _token_like(seg)]
    for pair in parts.query.split("&") if parts.query else ():
        name, eq, value = pair.partition("=")
        value = value if eq else name
        plain = _WORDS.fullmatch(value) is not None or value.isdigit()
        if value and (every_value or not plain):
            found.append(value)
    return found


def _mask_pairs(query: str) -> str:
    if not query:
        return query
    out = []
    for pair in query.split("&"):
        name, eq, value = pair.partition("=")
        out.append(f"{name}={MASK}" if eq and value else pair if eq else _bare(name))
    return "&".join(out)


def _bare(word: str) -> str:
    # "?SECRET" (a bare query) may be the secret itself, short or long; a flag word is not.
    return word if _FLAG.fullmatch(word) else MASK


def _path_tokens(text: str) -> str:
    for pattern in _PATH_TOKENS:
        text = pattern.sub(rf"\g<1>{MASK}", text)
    return text


def usable(secrets: Iterable[str]) -> tuple[str, ...]:
    """The secrets worth looking for, longest first (one that contains another goes whole);
    a value under 6 characters would mask ordinary words."""
    return tuple(sorted({s for s in secrets if len(s) >= 6}, key=len, reverse=True))


def mask(value: str, known: Sequence[str]) -> str:
    """`value` with every secret of `known` (from `usable`) masked; nothing else changed."""
    for secret in known:
        if secret in value:
            value = value.replace(secret, MASK)
    return value


def text(value: str, secrets: Iterable[str] = ()) -> str:
    """Free text (a log line, an error, a reply) with every URL and known secret redacted.
    URLs first: a secret masked inside one would leave it unparsable ("user:[redacted]@")."""
    if "://" in value:
        value = _URL.sub(lambda m: url(m.group(0)), value)
    if "/webhooks/" in value or "/interactions/" in value or "hooks.slack.com" in value:
        value = _path_tokens(value)
    return mask(value, usable(secrets))
