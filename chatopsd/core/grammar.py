"""The command grammar: which texts are addressed to us, and how they split into words.

Forms, all giving the same words:
    !ic page "Jane Doe"        prefix form (prefix configurable)
    @chatopsd ic page          mention form (connectors pass platform mentions as kind="mention")
    /ic page                   slash form (kind="slash")
Quotes: "double", 'single' and the curly quotes chat clients substitute. A backslash escapes the
next character inside double quotes. Pure functions only.
"""

from __future__ import annotations

from chatopsd.core.errors import UsageError
from chatopsd.core.messages import Inbound

_QUOTES = {'"': '"', "'": "'", "\u201c": "\u201d", "\u2018": "\u2019", "\u201e": "\u201c"}


def command_text(event: Inbound, prefix: str, bot_names: tuple[str, ...]) -> str | None:
    """The part of the event's text that is a command for us, or None if it is not for us."""
    text = event.text.strip()
    if event.kind in ("slash", "button"):
        return text[1:] if text.startswith("/") else text
    if event.kind == "reaction":
        return None
    if prefix and text.startswith(prefix):
        rest = text[len(prefix) :]
        # "!" alone or "! ic" is chatter, not a command; "!!" neither.
        return rest if rest[:1].isalnum() else None
    lowered = text.lower()
    for name in bot_names:
        for mention in (f"@{name}", f"<@{name}>"):
            if lowered.startswith(mention.lower()):
                rest = text[len(mention) :].lstrip(" :,\t")
                return rest[len(prefix) :] if prefix and rest.startswith(prefix) else rest
    if event.kind == "mention":
        # the connector already stripped the platform's mention token
        return text[len(prefix) :] if prefix and text.startswith(prefix) else text
    return None


def tokenize(text: str) -> list[str]:
    """Split on whitespace, honouring quotes. Raises UsageError on an unterminated quote."""
    words: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        word: list[str] = []
        quoted = False
        while i < n and not text[i].isspace():
            ch = text[i]
            close = _QUOTES.get(ch)
            if close is None:
                word.append(ch)
                i += 1
                continue
            quoted = True
            i += 1
            while i < n and text[i] != close:
                if text[i] == "\\" and close == '"' and i + 1 < n:
                    i += 1
                word.append(text[i])
                i += 1
            if i >= n:
                raise UsageError(f"unterminated quote {ch}", hint="close the quote or leave it out")
            i += 1  # the closing quote
        if word or quoted:
            words.append("".join(word))
    return words
