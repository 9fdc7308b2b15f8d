"""Every parser of user text stays linear on hostile input, up to the bus's 40,000-character cap.

Anyone can mention the bot or type a command, and parsing runs on the event loop: one input
that makes a backtracking pattern go quadratic holds every command, socket heartbeat and the
systemd watchdog (a 16 kB mention once blocked the daemon for 38 s). Each parser below gets
the shapes that break backtracking engines (repeated separators, nested and unclosed quotes,
`a@` and `a@b.b.…@` chains, `a-` chains, long runs, unicode digits, long whitespace) at 2,500
and at 40,000 characters.

Measured in CPU time (time.process_time), which a busy CI machine barely changes, with two
checks: 16 times the input may cost at most 40 times the time (linear work costs 16 times,
quadratic 256 times), and a 40,000-character call stays under an absolute bound far above
linear cost and far below what quadratic or exponential work takes (seconds to minutes).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from chatopsd.connectors.discord.events import identity as discord_identity
from chatopsd.connectors.mattermost.events import identity as mattermost_identity
from chatopsd.connectors.slack.events import identity as slack_identity
from chatopsd.connectors.teams import events as teams_events
from chatopsd.core import values
from chatopsd.core.addressing import address
from chatopsd.core.bus import MAX_COMMAND_CHARS
from chatopsd.core.commands import Arg, CommandSpec, bind
from chatopsd.core.errors import UsageError
from chatopsd.core.grammar import tokenize
from chatopsd.features.incidents import rules as incident
from chatopsd.features.intents import parser as intents
from chatopsd.features.oncall import swap_rules as swaps
from chatopsd.features.pagerduty.commands import PD_ID, parse_duration

SMALL, LARGE = 2_500, MAX_COMMAND_CHARS
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def _hostile(n: int) -> dict[str, str]:
    """Inputs of about n characters, by the shape that hurts a backtracking engine."""

    def fill(unit: str, head: str = "", tail: str = "") -> str:
        return head + unit * max(1, (n - len(head) - len(tail)) // len(unit)) + tail

    return {
        "comma separators": fill(", ", "x", "y"),
        "separators then please": fill(", ", "x", "please"),
        "whitespace run": fill(" ", "x", "y"),
        "mixed whitespace": fill(" \t\n\u00a0\u2003", "x", "y"),
        "one long word": fill("a"),
        "a@ chain": fill("a@"),
        "a@b.b.…@ chain": fill("b.", "a@", "@"),
        "a- chain": fill("a-", "", " service"),
        "a-- chain": fill("a--", "", " service"),
        "unicode digits": fill("\u0663"),
        "superscript digits": fill("\u00b2"),
        "fullwidth digits": fill("\uff19"),
        "digits": fill("9"),
        "nested quotes": fill("\"'"),
        "unclosed quote": fill("'", '"'),
        "curly quotes": fill("\u201c"),
        "backslashes in a quote": fill("\\", '"'),
        "quoted pieces": fill('"a"'),
        "open open open": fill("open "),
        "mark mark mark": fill("mark "),
        "is is is": fill("is "),
        "service service": fill("service "),
        "on call for": fill("on call for "),
        "pending": fill("pending "),
        "sev sev": fill("sev "),
        "declare, then separators": fill(", ", "create an incident ", " api service"),
        "declare with a long service": fill("a", "create an incident service "),
        "slack label chain": fill("<@UBOT|"),
        "mention then hyphens": fill("-", "@chatopsd"),
        "mention chain": fill("@chatopsd-"),
        "mention then dots": fill(".", "@chatopsd"),
        "durations": fill("1d"),
        "iso dates": fill("9999-12-31T23:00"),
        "incident ids": fill("INC-2026-"),
        "teams at chain": fill("<at>"),
        "teams mention tags": fill("<at>chatopsd</at>", "x"),
        "entities": fill("&amp;&nbsp;&#x"),
    }


_INT_SPEC = CommandSpec(
    ("t",),
    "typed arguments",
    lambda call: None,  # type: ignore[arg-type,return-value]
    (
        Arg("n", kind="int"),
        Arg("level", kind="int", option=True, required=False),
        Arg("rest", kind="rest", required=False),
    ),
)
_MENTIONS = (
    *slack_identity("UBOT").mentions,
    *discord_identity("123456789").mentions,
    *mattermost_identity("u" * 26, "chatopsd").mentions,
    "@chatopsd",
)


def _either(parse: Callable[[str], object]) -> Callable[[str], object]:
    """The parser, with a refusal (UsageError) counting as an answer."""

    def run(text: str) -> object:
        try:
            return parse(text)
        except UsageError as exc:
            return exc

    return run


TEAMS_APP = "00000000-0000-4000-8000-0000000000b1"


def _teams(text: str) -> object:
    """A Teams channel message as the connector translates it (mention tags, entities)."""
    activity = {
        "type": "message",
        "id": "m1",
        "serviceUrl": "https://smba.trafficmanager.net/amer/t1/",
        "channelId": "msteams",
        "from": {"id": "29:alice", "aadObjectId": "aad-alice"},
        "recipient": {"id": f"28:{TEAMS_APP}", "name": "chatopsd"},
        "conversation": {"id": "19:c@thread.tacv2;messageid=m1", "conversationType": "channel"},
        "text": text,
        "entities": [
            {
                "type": "mention",
                "text": "<at>chatopsd</at>",
                "mentioned": {"id": f"28:{TEAMS_APP}", "name": "chatopsd"},
            }
        ],
    }
    return teams_events.translate(activity, app_id=TEAMS_APP, prefix="!")


# What the daemon runs on text people type (name -> parser of one string).
PARSERS: dict[str, Callable[[str], object]] = {
    "grammar.tokenize": _either(tokenize),
    "addressing (message)": lambda t: address(t, prefix="!", mentions=_MENTIONS),
    "addressing (mention)": lambda t: address(t, prefix="!", mentions=_MENTIONS, kind="mention"),
    "addressing (DM)": lambda t: address(t, prefix="!", mentions=_MENTIONS, direct=True),
    "intents.parse": _either(intents.parse),
    "typed arguments": _either(lambda t: bind(_INT_SPEC, [t, "--level", t, t])),
    "email (pd link)": values.is_email,
    "duration (pd snooze)": _either(parse_duration),
    "date-time or delay": _either(lambda t: values.moment(t, NOW, ahead=86400)),
    "swap window (from)": _either(lambda t: swaps.window(t, "8h", NOW)),
    "swap window (until)": _either(lambda t: swaps.window("1h", t, NOW)),
    "whole number": _either(values.whole_number),
    "incident id": incident.parse_id,
    "severity": _either(incident.parse_severity),
    "PagerDuty id": PD_ID.fullmatch,
    "teams message": _teams,
}
# The same parsers without their length limit, so the patterns themselves are held to
# linear time (a limit is a second line of defence, not the only one).
UNLIMITED: dict[str, Callable[[str], object]] = {
    "intents, unlimited": lambda t: intents._parse(t, ("payments", "api")),
    "intents.normalise": intents._normalise,
}


def _cpu(parse: Callable[[str], object], text: str) -> float:
    """The least CPU time of three calls: noise only ever adds."""
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        parse(text)
        best = min(best, time.process_time() - start)
    return best


def _check(parse: Callable[[str], object], shape: str, bound: float) -> None:
    small, large = _hostile(SMALL)[shape], _hostile(LARGE)[shape]
    assert len(large) <= MAX_COMMAND_CHARS
    t_small, t_large = _cpu(parse, small), _cpu(parse, large)
    assert t_large < bound, f"{len(large):,} characters took {t_large * 1000:.0f} ms of CPU"
    # 16 times the input: linear work takes 16 times as long, quadratic 256 times
    assert t_large <= 40 * t_small + 0.003, (
        f"{len(small):,} chars: {t_small * 1000:.2f} ms, {len(large):,}: {t_large * 1000:.2f} ms"
    )


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_each_parser_is_linear_on_hostile_input(name: str) -> None:
    # The target is 20 ms a call; these take a few ms at most. The bound leaves room
    # for a slow machine and still fails at once on anything quadratic.
    for shape in _hostile(10):
        _check(PARSERS[name], shape, bound=0.05)


@pytest.mark.parametrize("name", sorted(UNLIMITED))
def test_the_intent_patterns_are_linear_even_past_the_length_limit(name: str) -> None:
    for shape in _hostile(10):
        _check(UNLIMITED[name], shape, bound=0.25)


def test_a_long_request_is_refused_with_the_limit_named() -> None:
    with pytest.raises(UsageError) as refused:
        intents.parse("who is on call " + "x" * intents.MAX_CHARS)
    assert f"up to {intents.MAX_CHARS:,}" in refused.value.message
    assert intents.parse("who is on call, please").command == "ic"


def test_an_email_is_at_most_254_characters() -> None:
    local = "a" * 64
    fits = f"{local}@{'b' * (values.EMAIL_MAX - 64 - 5)}.com"
    assert len(fits) == values.EMAIL_MAX and values.is_email(fits)
    assert not values.is_email("x" + fits)
    assert not values.is_email("a@" + "b." * 20_000 + "@")  # the 6-second input
    assert [values.is_email(t) for t in ("ada@example.com", "ada@example", "a@b@c.d")] == [
        True,
        False,
        False,
    ]
