"""The command grammar and registry: table-driven, plus a property test over any input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatopsd.core.addressing import address
from chatopsd.core.commands import Arg, CommandSpec, Registry, help_lines
from chatopsd.core.errors import UsageError
from chatopsd.core.grammar import tokenize
from chatopsd.core.messages import Kind


async def _noop(call: object) -> None:
    return None


def registry() -> Registry:
    rest = Arg("user", "who", kind="rest", required=False)
    return Registry(
        [
            CommandSpec(("help",), "help", _noop, (Arg("command", kind="rest", required=False),)),
            CommandSpec(("ic",), "ics", _noop),
            CommandSpec(("ic", "page"), "page", _noop, (rest,)),
            CommandSpec(("ic", "page", "responders"), "page all", _noop),
            CommandSpec(("ic", "who"), "who", _noop, (Arg("user", kind="rest"),)),
            CommandSpec(("status",), "status", _noop),
            CommandSpec(
                ("status", "stalk"), "stalk", _noop, (Arg("interval", kind="int", required=False),)
            ),
            CommandSpec(
                ("incident", "declare"),
                "declare",
                _noop,
                (
                    Arg("title", kind="rest"),
                    Arg(
                        "sev",
                        option=True,
                        required=False,
                        choices=("SEV-1", "SEV-2", "SEV-3", "SEV-4"),
                    ),
                ),
            ),
        ]
    )


def command_text(text: str, kind: Kind = "message") -> str | None:
    found = address(text, prefix="!", mentions=("@chatopsd", "<@chatopsd>"), kind=kind)
    return None if found is None else found.text


@pytest.mark.parametrize(
    ("text", "kind", "expected"),
    [
        ("!ic", "message", "ic"),
        ("  !ic page  ", "message", "ic page"),
        ("!", "message", None),
        ("!!!", "message", None),
        ("! ic", "message", None),
        ("hello !ic", "message", None),
        ("@chatopsd ic page", "message", "ic page"),
        ("@ChatOpsD: !ic", "message", "ic"),
        ("<@chatopsd> status", "message", "status"),
        ("ic page", "mention", "ic page"),
        ("!ic page", "mention", "ic page"),
        ("/ic page", "slash", "ic page"),
        ("ic page", "slash", "ic page"),
        ("ic page", "button", "ic page"),
        ("white_check_mark", "reaction", None),
    ],
)
def test_command_text(text: str, kind: Kind, expected: str | None) -> None:
    assert command_text(text, kind) == expected


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("ic page", ["ic", "page"]),
        ('ic who "Jane Doe"', ["ic", "who", "Jane Doe"]),
        ("ic who 'Jane Doe'", ["ic", "who", "Jane Doe"]),
        ("ic who \u201cJane Doe\u201d", ["ic", "who", "Jane Doe"]),
        ('say "a \\"quoted\\" word"', ["say", 'a "quoted" word']),
        ('empty ""', ["empty", ""]),
        ("  spaced\tout  ", ["spaced", "out"]),
        ('--sev="SEV 1"', ["--sev=SEV 1"]),
    ],
)
def test_tokenize(text: str, words: list[str]) -> None:
    assert tokenize(text) == words


def test_unterminated_quote_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="unterminated quote"):
        tokenize('ic who "Jane')


@pytest.mark.parametrize(
    ("words", "path", "args"),
    [
        (["ic"], ("ic",), {}),
        (["IC", "Page"], ("ic", "page"), {"user": None}),
        (["ic", "page", "responders"], ("ic", "page", "responders"), {}),
        (["ic", "page", "jane", "doe"], ("ic", "page"), {"user": "jane doe"}),
        (["status", "stalk", "60"], ("status", "stalk"), {"interval": 60}),
        (
            ["incident", "declare", "--sev", "sev-1", "Payments", "down"],
            ("incident", "declare"),
            {"title": "Payments down", "sev": "SEV-1"},
        ),
        (
            ["incident", "declare", "Payments", "--sev=SEV-2"],
            ("incident", "declare"),
            {"title": "Payments", "sev": "SEV-2"},
        ),
    ],
)
def test_resolve(words: list[str], path: tuple[str, ...], args: dict[str, object]) -> None:
    bound = registry().resolve(words)
    assert bound.spec.path == path
    assert dict(bound.args) == args


@pytest.mark.parametrize(
    ("words", "message", "hint"),
    [
        (["icc"], "unknown command !icc", "did you mean !ic?"),
        (["ic", "pgae"], "unknown command !ic pgae", "did you mean !ic page?"),
        (["stauts"], "unknown command !stauts", "did you mean !status?"),
        (["zzzzzz"], "unknown command !zzzzzz", "try !help"),
        (["ic", "who"], "missing <user...>", "usage: !ic who <user...>"),
        (["status", "stalk", "soon"], "interval must be a whole number (got 'soon')", "usage:"),
        (["incident", "declare", "x", "--sev", "SEV-9"], "sev must be one of SEV-1", "usage:"),
        (["incident", "declare", "x", "--color", "red"], "unknown option --color", "usage:"),
        (["incident", "declare", "x", "--sev"], "option --sev needs a value", "usage:"),
        ([], "no command given", "try !help"),
    ],
)
def test_resolve_errors(words: list[str], message: str, hint: str) -> None:
    with pytest.raises(UsageError) as info:
        registry().resolve(words)
    assert info.value.message.startswith(message)
    assert info.value.hint is not None and info.value.hint.startswith(hint)


def test_help_is_generated_from_specs() -> None:
    reg = registry()
    everything = help_lines(reg, "!")
    assert len(everything) == len(list(reg))
    assert "!status stalk [<interval>] — stalk" in everything
    ic = help_lines(reg, "!", ["ic"])
    assert [line.split(" — ")[0] for line in ic if not line.startswith(" ")] == [
        "!ic",
        "!ic page [<user...>]",
        "!ic page responders",
        "!ic who <user...>",
    ]
    with pytest.raises(UsageError, match="unknown command !nope"):
        help_lines(reg, "!", ["nope"])


def test_help_listing_follows_added_and_removed_commands() -> None:
    """The full listing is kept between calls: a command added or removed (a config reload
    of [[commands]]) must show at once, under each prefix."""
    reg = registry()
    before = help_lines(reg, "!")
    assert help_lines(reg, "!") == before
    reg.add(CommandSpec(("deploy",), "ship it", handler=_noop))
    assert "!deploy — ship it" in help_lines(reg, "!")
    assert ".deploy — ship it" in help_lines(reg, ".")
    reg.remove(("deploy",))
    assert help_lines(reg, "!") == before
    assert all("deploy" not in line for line in help_lines(reg, "."))


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=80))
def test_any_input_parses_or_gives_a_usage_error(text: str) -> None:
    reg = registry()
    body = command_text("!" + text)
    if body is None:
        return
    try:
        reg.resolve(tokenize(body))
    except UsageError as exc:
        assert exc.message


def _reference_tokenize(text: str) -> list[str]:
    """The first, character-by-character tokenizer: the spec the fast one must match."""
    quotes = {'"': '"', "'": "'", "\u201c": "\u201d", "\u2018": "\u2019", "\u201e": "\u201c"}
    words: list[str] = []
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        word: list[str] = []
        quoted = False
        while i < n and not text[i].isspace():
            ch = text[i]
            close = quotes.get(ch)
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
                raise UsageError(f"unterminated quote {ch}")
            i += 1
        if word or quoted:
            words.append("".join(word))
    return words


@settings(max_examples=1500, deadline=None)
@given(
    st.text(
        alphabet=st.sampled_from(list("ab \t\n\\\"'\u201c\u201d\u2018\u2019\u201e\u00a0\x1c-")),
        max_size=40,
    )
    | st.text(max_size=40)
)
def test_tokenize_matches_the_reference(text: str) -> None:
    try:
        want: list[str] | str = _reference_tokenize(text)
    except UsageError as exc:
        want = exc.message
    try:
        got: list[str] | str = tokenize(text)
    except UsageError as exc:
        got = exc.message
    assert got == want


@pytest.mark.parametrize(
    ("words", "args"),
    [
        (["ack"], {"id": None, "note": None}),
        (["ack", "INC-1", "on", "it"], {"id": "INC-1", "note": "on it"}),
        (["ack", "on", "it"], {"id": None, "note": "on it"}),
        (["ack", "INC-1"], {"id": "INC-1", "note": None}),
        (["ack", "on", "INC-1"], {"id": None, "note": "on INC-1"}),  # only a leading id
    ],
)
def test_optional_leading_argument_and_typed_tail(
    words: list[str], args: dict[str, str | None]
) -> None:
    spec = CommandSpec(
        ("ack",),
        "ack",
        _noop,
        (
            Arg("id", required=False, accepts=lambda w: w.upper().startswith("INC-")),
            Arg("note", kind="rest", required=False),
        ),
    )
    bound = Registry([spec]).resolve(words)
    assert dict(bound.args) == args
    assert spec.usage() == "!ack [<id>] [<note...>]"
