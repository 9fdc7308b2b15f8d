"""The command grammar: how a command text splits into words.

Which texts are commands at all (prefix, mention, DM, slash) is core/addressing.py's call.
Quotes: "double", 'single' and the curly quotes chat clients substitute. A backslash escapes the
next character inside double quotes. A word that begins with a quote is a `Quoted` word: taken
literally, never as an option, so a note that says "--public" stays a note. Pure functions only.
"""

from __future__ import annotations

import re

from chatopsd.core.errors import UsageError

_QUOTES = {'"': '"', "'": "'", "\u201c": "\u201d", "\u2018": "\u2019", "\u201e": "\u201c"}


# One piece of a word: whitespace (ends the word), an unquoted run, or a quoted string; or,
# last, an opening quote that is never closed. Something matches at every position, so the
# scan never has to search ahead (a search would retry the unclosed quote from every later
# position: quadratic).
_PIECE = re.compile(
    r"""(\s+)|([^\s"'\u201c\u2018\u201e]+)|"((?:\\[\s\S]|[^"\\])*+)"|'([^']*+)'"""
    "|\u201c([^\u201d]*+)\u201d|\u2018([^\u2019]*+)\u2019|\u201e([^\u201c]*+)\u201c"
    "|(.)"
)
_UNCLOSED = 8
_ESCAPED = re.compile(r"\\([\s\S])")


class Quoted(str):
    """A word whose first character was inside quotes: text, never an `--option`."""

    __slots__ = ()


def tokenize(text: str) -> list[str]:
    """Split on whitespace, honouring quotes. Raises UsageError on an unterminated quote.

    Linear in the text, and mostly in C: a 40 kB message splits in a few milliseconds, even
    one made of nothing but short quoted strings (one loop step per piece, no rescans)."""
    if not any(q in text for q in _QUOTES):
        return text.split()
    words: list[str] = []
    word: list[str] = []
    quoted = False  # the word has a quoted piece (so "" is a word)
    literal = False  # the word's first piece was quoted
    for m in _PIECE.finditer(text):
        piece = m.lastindex or 0  # the one group of the alternative that matched
        if piece == _UNCLOSED:
            raise UsageError(
                f"unterminated quote {m.group(piece)}", hint="close the quote or leave it out"
            )
        if piece == 1:  # whitespace: the word ends
            if word or quoted:
                words.append(_word(word, literal))
            word, quoted, literal = [], False, False
        elif piece == 2:
            word.append(m.group(2))
        else:
            literal = literal or not word
            quoted = True
            inner = m.group(piece)
            word.append(_ESCAPED.sub(r"\1", inner) if piece == 3 and "\\" in inner else inner)
    if word or quoted:
        words.append(_word(word, literal))
    return words


def _word(pieces: list[str], literal: bool) -> str:
    text = "".join(pieces)
    return Quoted(text) if literal else text
