"""The text of `--public`: exactly what the person typed after it, for the status page.

The grammar binds an option to ONE word, so `--public We are on it` would publish "We" and
leave "are on it" in the internal note. Public text goes to customers, so it is taken from
the raw message instead: everything after `--public`, less one pair of enclosing quotes.
Pure functions only.
"""

from __future__ import annotations

import re

from chatopsd.core.errors import UsageError
from chatopsd.core.grammar import tokenize

_PUBLIC = re.compile(r"(?:^|\s)--public(?:=|\s+)(.*)\Z", re.DOTALL)
_PAIRS = {'"': '"', "'": "'", "\u201c": "\u201d", "\u2018": "\u2019", "\u201e": "\u201c"}


def public_text(raw: str) -> str | None:
    """The text after `--public` in the message as typed; None if there is none."""
    m = _PUBLIC.search(raw)
    if m is None:
        return None
    text = m.group(1).strip()
    close = _PAIRS.get(text[:1])
    if close and len(text) >= 2 and text.endswith(close) and close not in text[1:-1]:
        text = text[1:-1].strip()
    return text or None


def without_public(note: str, public: str | None) -> str:
    """The internal note without the words of an unquoted public text that the grammar
    appended to it (it binds `--public`'s first word only and leaves the rest loose)."""
    if not public:
        return note
    try:
        extra = tokenize(public)[1:]
    except UsageError:
        return note
    tail = " ".join(extra)
    if tail and note.endswith(tail):
        return note[: -len(tail)].strip()
    return note
