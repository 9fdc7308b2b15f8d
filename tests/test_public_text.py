"""`--public`: the text that reaches customers is the grammar's parsed value of the option, and
nothing else. Quoting decides what belongs to it; a word typed after it is refused, so internal
text can neither ride along nor be cut off silently; a quoted note that says "--public" is a
note."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatopsd.core.commands import Arg, CommandSpec, bind
from chatopsd.core.errors import UsageError
from chatopsd.core.grammar import Quoted, tokenize


async def _noop(_call: object) -> None:
    return None


SPEC = CommandSpec(
    ("incident", "update"),
    "",
    _noop,  # type: ignore[arg-type]
    (
        Arg("note", kind="rest", required=False),
        Arg("public", option=True, required=False, last=True),
    ),
)


def parse(text: str) -> tuple[str | None, str | None]:
    bound = bind(SPEC, tokenize(text)[2:])
    note, public = bound["note"], bound["public"]
    return (None if note is None else str(note)), (None if public is None else str(public))


@pytest.mark.parametrize(
    ("typed", "note", "public"),
    [
        ('!incident update rolled back --public "We are on it"', "rolled back", "We are on it"),
        ("!incident update --public Fixed", None, "Fixed"),
        ('!incident update --public="We are on it"', None, "We are on it"),
        ("!incident update x --public “Curly quotes”", "x", "Curly quotes"),
        ("!incident update no public text", "no public text", None),
        # a quoted note that merely contains --public stays internal
        ('!incident update "rolled back --public flag"', "rolled back --public flag", None),
        ('!incident update db "--public" is a flag', "db --public is a flag", None),
        ("!incident update 'see --public \"x\" later'", 'see --public "x" later', None),
    ],
)
def test_the_public_text_is_the_options_parsed_value(
    typed: str, note: str | None, public: str | None
) -> None:
    assert parse(typed) == (note, public)


@pytest.mark.parametrize(
    "typed",
    [
        # the leak: an internal part after the quoted public text
        '!incident update --public "We are investigating" internal: leaked ACME key',
        # unquoted words after the first: refused, not published, not kept as a note
        "!incident update --public We are on it",
        '!incident update --public "A" and "B"',
        '!incident update --public "one" --public "two"',
    ],
)
def test_words_after_the_public_text_are_refused(typed: str) -> None:
    with pytest.raises(UsageError, match="nothing may follow the --public text") as refused:
        parse(typed)
    assert "put --public last and quote its text whole" in str(refused.value.hint)


def test_a_word_that_begins_quoted_is_never_an_option() -> None:
    words = tokenize('a "--public" --public="x y" ""--b')
    assert words == ["a", "--public", "--public=x y", "--b"]
    assert [isinstance(w, Quoted) for w in words] == [False, True, False, True]


WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789.,:-", min_size=1, max_size=8)


@given(
    st.lists(st.one_of(WORD, st.just("--public")), max_size=5),
    st.lists(WORD, min_size=1, max_size=5),
)
def test_quoted_note_and_public_text_never_mix(note: list[str], public: list[str]) -> None:
    note_text = " ".join(note)
    public_text = " ".join(public)
    typed = f'!incident update "{note_text}" --public "{public_text}"'
    assert parse(typed) == (note_text, public_text)
