"""The command grammar: how a command text splits into words.

Which texts are commands at all (prefix, mention, DM, slash) is core/addressing.py's call.
Quotes: "double", 'single' and the curly quotes chat clients substitute. A backslash escapes the
next character inside double quotes. Pure functions only.
"""

from __future__ import annotations

from chatopsd.core.errors import UsageError

_QUOTES = {'"': '"', "'": "'", "\u201c": "\u201d", "\u2018": "\u2019", "\u201e": "\u201c"}


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
