"""Bad arguments get a usage reply, never an internal error: every registered command, through
the real bus, with hostile values in each of its arguments.

One App with everything that registers commands (the spec-checked fake PagerDuty, operations
commands with approval rules), and an actor holding every role and linked to a PagerDuty
user, so each command gets past authorization to its own argument parsing. The values are
those that used to end in ValueError or OverflowError deep in a handler: unicode digits
("²" passes str.isdigit, then int() refuses it), numbers too large for the database, dates
at the ends of the calendar, empty and very long words.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatopsd.app import App
from chatopsd.core.commands import Arg, CommandSpec
from chatopsd.core.messages import Actor, Inbound, Reply
from chatopsd.core.outcome import Outcome
from chatopsd.features.approvals.rules import command_line
from tests.conftest import FakeClock
from tests.fakes.pagerduty import FakePagerDuty
from tests.fixtures.pagerduty import fake_pd, pd_section
from tests.opsrig import OpsRig

FUZZER = Actor("fuzzer", "Fuzzer")
_ids = itertools.count(1)

HOSTILE = [
    # numbers
    "\u00b2",
    "\u00b9\u00b2",
    "\u0663",
    "\u0661\u0662\u0663",
    "\uff19",
    "99999999999999999999999",
    "9" * 400,
    "-1",
    "0",
    "#12",
    "1_000",
    "+5",
    "1e9",
    "NaN",
    "inf",
    # times and durations
    "9999-12-31T23:00",
    "0001-01-01T00:00",
    "2026-11-24T08:00+23:59",
    "9999-12-31T23:59-23:59",
    "7d",
    "99999d",
    "9" * 30 + "d",
    "1h30m",
    "0s",
    "\u0663h",
    # empty, quoting, options
    "",
    " ",
    '"',
    "\u201c",
    "--",
    "--x",
    # long words and chains
    "a" * 3000,
    "a-" * 1500,
    "a@" + "b." * 120 + "@",
    "x@" * 200,
    "<@U1|" * 200,
    # people and ids
    "@chatopsd",
    "<@U1>",
    "@here",
    "INC-2026-0001",
    "INC-\u0662\u0660\u0662\u0666-\u0660\u0660\u0660\u0661",
    "INC-9999-999999",
    "SEV-0",
    "sev9",
    "PABC123",
    "P" + "A" * 500,
    "\u202e\x00",
    "\U0001f600" * 10,
]


@pytest.fixture(scope="module")
def running(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[asyncio.AbstractEventLoop, App]]:
    loop = asyncio.new_event_loop()
    pd: FakePagerDuty = fake_pd()
    loop.run_until_complete(pd.start())
    tmp: Path = tmp_path_factory.mktemp("args")
    me = f"console:{FUZZER.id}"
    rig = OpsRig(
        tmp,
        FakeClock(),
        pagerduty=pd_section(pd, users={me: "ada@example.com"}),
        roles={"oncall": [me], "lead": [me], "dba": [me]},
        ratelimit={"per_minute": 1e9, "burst": 10**9},
    )
    loop.run_until_complete(rig.start())
    yield loop, rig.app
    loop.run_until_complete(rig.stop())
    loop.run_until_complete(pd.close())
    loop.close()
    assert pd.violations == [], "requests that break the PagerDuty OpenAPI spec"


def _say(loop: asyncio.AbstractEventLoop, app: App, text: str) -> tuple[list[Reply], bool]:
    """Send one command as the fuzzer: (its replies, whether its audit row says `error`)."""
    event_id = f"arg-{next(_ids)}"
    event = Inbound("console", "fuzz", FUZZER, text, event_id=event_id)
    replies = loop.run_until_complete(app.bus.handle(event))
    errors = loop.run_until_complete(app.audit.query(actor=FUZZER.id, outcome=Outcome.ERROR))
    return replies, any(row.event_id == event_id for row in errors)


def _invocations(spec: CommandSpec) -> st.SearchStrategy[str]:
    """The command with a hostile value (or none, when optional) in each argument, typed as
    canonical grammar text or raw."""
    value = st.one_of(st.sampled_from(HOSTILE), st.text(max_size=12))

    def one(arg: Arg) -> st.SearchStrategy[list[str]]:
        given_ = value.map(lambda v: [f"--{arg.name}", v] if arg.option else [v])
        return given_ if arg.required and not arg.option else st.one_of(st.just([]), given_)

    parts = st.tuples(*(one(a) for a in spec.args)) if spec.args else st.just(())
    return st.tuples(parts, st.booleans()).map(
        lambda p: (
            command_line(f"!{spec.name}", [w for part in p[0] for w in part])
            if p[1]
            else " ".join([f"!{spec.name}", *(w for part in p[0] for w in part)])
        )
    )


def test_every_command_answers_hostile_arguments_without_an_internal_error(
    running: tuple[asyncio.AbstractEventLoop, App],
) -> None:
    loop, app = running
    specs = list(app.registry)
    assert len(specs) > 50  # everything that registers commands is configured
    for spec in specs:

        @settings(
            max_examples=12,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        )
        @given(text=_invocations(spec))
        def answers(text: str) -> None:
            replies, error = _say(loop, app, text)
            assert not error, text
            for reply in replies:
                assert not reply.plain().startswith("internal error"), (text, reply.plain())

        answers()


# (command, what the usage reply says): the examples first, then their relatives.
USAGE = [
    ("!pd ack \u00b2", "the incident number must be a whole number"),
    ("!pd ack 99999999999999999999999", "the incident number is too large"),
    ("!ic swap 9999-12-31T23:00 7d", "the start must be at most 90 days after now"),
    ("!ic swap take 99999999999999999999", "id is too large"),
    ("!ic swap 1h 15d", "the end must be between 1 second and 14 days"),
    ("!ic swap 2026-11-24T08:00 2026-12-31T08:00", "at most 14 days after the start"),
    ("!ic swap \u0663h 2h", "the start must be a date-time or a delay"),
    ("!ic schedule 99999999999999999999", "days is too large"),
    ("!ic take 99999d", "a duration must be between 1 second and 7 days"),
    ("!pd escalate PABC123 \u00b2", "level must be a whole number"),
    ("!pd link a@" + "b." * 19_990 + "@", "is not an email address"),
    ("!incident followup done INC-2026-0001 99999999999999999999", "the number is too large"),
]


@pytest.mark.parametrize(("text", "says"), USAGE, ids=[t[:40] for t, _ in USAGE])
def test_a_bad_argument_gets_a_usage_reply(
    running: tuple[asyncio.AbstractEventLoop, App], text: str, says: str
) -> None:
    loop, app = running
    _say(loop, app, "!incident declare the database is down")  # INC-2026-0001, for follow-ups
    [reply], error = _say(loop, app, text)
    assert not error
    assert says in reply.plain() and reply.ephemeral, reply.plain()
