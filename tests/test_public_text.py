"""`--public`: the text that reaches customers is exactly what was typed after it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatopsd.core.commands import Arg, CommandSpec, bind
from chatopsd.core.grammar import tokenize
from chatopsd.core.public_text import public_text, without_public


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('!incident update rolled back --public "We are on it"', "We are on it"),
        ("!incident update --public We are on it", "We are on it"),
        ("!incident update --public=Fixed", "Fixed"),
        ("!incident update x --public “Curly quotes”", "Curly quotes"),
        ('!incident update --public "A" and "B"', '"A" and "B"'),  # not one quoted string
        ("!incident update --public   spaced   out  ", "spaced   out"),
        ("!incident update no public text", None),
        ("!incident update --publicity stunt", None),
        ('!incident update --public ""', None),
    ],
)
def test_public_text(raw: str, expected: str | None) -> None:
    assert public_text(raw) == expected


async def _noop(_call: object) -> None:
    return None


SPEC = CommandSpec(
    ("incident", "update"),
    "",
    _noop,  # type: ignore[arg-type]
    (
        Arg("note", kind="rest", required=False),
        Arg("public", option=True, required=False),
    ),
)
WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789.,:", min_size=1, max_size=8)


@given(st.lists(WORD, max_size=5), st.lists(WORD, min_size=1, max_size=5))
def test_unquoted_public_words_leave_the_internal_note_intact(
    note: list[str], public: list[str]
) -> None:
    raw = " ".join(["!incident", "update", *note, "--public", *public])
    bound = bind(SPEC, tokenize(raw)[2:])
    typed = public_text(raw)
    assert typed == " ".join(public)
    assert without_public(str(bound["note"] or ""), typed) == " ".join(note)
