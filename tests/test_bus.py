"""The bus and its middleware, with the real SQLite ledger and audit log and a real outbox."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Callable

import pytest

from chatopsd.connectors.console import ConsoleConnector
from chatopsd.core.bus import Bus, chat_cause
from chatopsd.core.capabilities import ChannelRefused
from chatopsd.core.commands import Arg, CommandSpec, Registry
from chatopsd.core.context import Call
from chatopsd.core.errors import (
    NotFound,
    RateLimited,
    RateLimitedSend,
    TransientSendError,
    Unavailable,
)
from chatopsd.core.messages import Actor, Inbound, Priority, Reply
from chatopsd.core.middleware import AccessPolicy, Audit, Authorize, Dedupe, RateLimit
from chatopsd.outbox import Outbox
from chatopsd.store.audit import SqlAuditLog
from chatopsd.store.events import SqlEventLedger
from chatopsd.store.sqlite import SqliteDatabase
from tests.conftest import FakeClock
from tests.waiting import eventually


class Rig:
    """A bus with every middleware, whose replies land in a jsonl console we can read."""

    def __init__(self, db: SqliteDatabase, clock: FakeClock, policy: AccessPolicy) -> None:
        self.out = io.StringIO()
        self.console = ConsoleConnector(fmt="jsonl", stdout=self.out)
        self.outbox = Outbox({"console": self.console})
        self.audit = SqlAuditLog(db)
        self.ledger = SqlEventLedger(db, clock)
        self.handled: list[str] = []
        registry = Registry(
            [
                CommandSpec(("echo",), "echo", self.echo, (Arg("text", kind="rest"),)),
                CommandSpec(("boom",), "raises", self.boom),
                CommandSpec(("missing",), "not found", self.missing),
                CommandSpec(
                    ("deploy",),
                    "needs a role",
                    self.echo,
                    (Arg("text", kind="rest", required=False),),
                    role="lead",
                    mutates=True,
                ),
                CommandSpec(("page",), "pages", self.page, pages=True, priority=Priority.PAGE),
                CommandSpec(("relay",), "hands over", self.relay, (Arg("text", kind="rest"),)),
            ]
        )
        self.bus = Bus(
            registry,
            [
                Dedupe(self.ledger),
                Audit(self.audit, clock),
                # here the console stands for a chat platform, where anyone may type
                RateLimit(clock, per_minute=6, burst=2, unlimited=frozenset()),
                Authorize(policy),
            ],
            self.outbox,
        )

    async def echo(self, call: Call) -> Reply:
        self.handled.append(call.event.event_id)
        return Reply(text=f"echo {call.text('text')}")

    async def boom(self, call: Call) -> Reply:
        raise RuntimeError("secret internals")

    async def missing(self, call: Call) -> Reply:
        raise NotFound("no such thing")

    async def page(self, call: Call) -> Reply:
        raise Unavailable("PagerDuty timed out")

    async def relay(self, call: Call) -> None:
        """Like a plain-language request: the command it stands for runs as itself."""
        e = call.event
        task = self.bus.submit(
            Inbound(
                e.platform,
                e.channel,
                e.actor,
                f"echo {call.text('text')}",
                "slash",
                event_id=f"relay:{e.event_id}",
                message_id=e.message_id,
            )
        )
        assert task is not None
        call.hand_over(task)

    async def replies(self) -> list[dict[str, object]]:
        await self.outbox.flush(5)
        return [json.loads(line) for line in self.out.getvalue().splitlines()]


def ev(text: str, event_id: str, actor: str = "alice", channel: str = "ops") -> Inbound:
    return Inbound("console", channel, Actor(actor, actor.title()), text, event_id=event_id)


@pytest.fixture
async def rig(db: SqliteDatabase, clock: FakeClock) -> Rig:
    policy = AccessPolicy(
        roles={"lead": frozenset({"console:bob"})}, paging_channels=frozenset({"console:incidents"})
    )
    r = Rig(db, clock, policy)
    yield r
    await r.outbox.close()


async def test_reply_goes_back_to_the_channel(rig: Rig) -> None:
    await rig.bus.handle(ev("!echo hi there", "e1"))
    [reply] = await rig.replies()
    assert reply["text"] == "echo hi there" and reply["channel"] == "ops"
    [row] = await rig.audit.since(None)
    assert (row.command, row.outcome, row.actor, row.event_id) == ("echo", "ok", "alice", "e1")


async def test_redelivered_event_is_handled_once_even_after_restart(
    rig: Rig, db: SqliteDatabase, clock: FakeClock
) -> None:
    await rig.bus.handle(ev("!echo once", "dup"))
    await rig.bus.handle(ev("!echo once", "dup"))
    assert rig.handled == ["dup"]
    # a fresh ledger over the same database: what the next run of the daemon sees
    fresh = SqlEventLedger(db, clock)
    assert await fresh.load() == 1
    assert await fresh.claim("console", "dup") is False
    assert await fresh.claim("slack", "dup") is True  # ids are per platform
    assert len(await rig.audit.since(None)) == 1  # the duplicate was dropped before audit


async def test_chatter_is_not_a_command(rig: Rig) -> None:
    assert await rig.bus.handle(ev("good morning", "c1")) == []
    assert await rig.replies() == [] and await rig.audit.since(None) == []


async def test_forbidden_is_refused_audited_and_rate_limited_too(
    rig: Rig, clock: FakeClock
) -> None:
    # A flood of refused commands must not become a flood of replies:
    # refusals cost a token like anything else; burst 2 → two refusals, one "easy there".
    for i in range(6):
        await rig.bus.handle(ev("!deploy api", f"f{i}"))
    replies = await rig.replies()
    assert [str(r["text"]).split("\n")[0] for r in replies] == [
        "!deploy needs the role 'lead'",
        "!deploy needs the role 'lead'",
        "Easy there, Alice: you can send another command in 10 s.",
    ]
    assert all(r["ephemeral"] for r in replies)
    rows = await rig.audit.since(None)
    # every attempt is audited, with what really happened to it
    assert [r.outcome for r in rows] == ["denied"] * 2 + ["rate_limited"] * 4
    assert all("needs the role 'lead'" in (r.cause or "") for r in rows[:2])
    clock.advance(10)
    await rig.bus.handle(ev("!echo still here", "f7"))
    assert "f7" in rig.handled
    await rig.bus.handle(ev("!deploy api", "ok", actor="bob"))
    assert "ok" in rig.handled


async def test_paging_restricted_to_listed_channels(rig: Rig) -> None:
    await rig.bus.handle(ev("!page", "p1", channel="random"))
    await rig.bus.handle(ev("!page", "p2", channel="incidents"))
    first, second = await rig.replies()
    assert "not allowed here" in str(first["text"])
    assert second["text"] == "PagerDuty timed out" and second["ephemeral"] is False


async def test_rate_limit_is_polite_once_then_quiet(rig: Rig, clock: FakeClock) -> None:
    for i in range(5):
        await rig.bus.handle(ev(f"!echo {i}", f"r{i}"))
    replies = await rig.replies()
    assert [r["text"] for r in replies[:2]] == ["echo 0", "echo 1"]
    assert "you can send another command in 10 s" in str(replies[2]["text"])
    assert len(replies) == 3  # the 4th and 5th were dropped quietly
    outcomes = [r.outcome for r in await rig.audit.since(None)]
    # audited all the same, and the quiet drops are rate_limited, never ok
    assert outcomes == ["ok", "ok", "rate_limited", "rate_limited", "rate_limited"]
    clock.advance(10)
    await rig.bus.handle(ev("!echo back", "r9"))
    assert (await rig.replies())[-1]["text"] == "echo back"


async def test_the_console_is_the_operator_and_is_never_rate_limited(
    rig: Rig, clock: FakeClock
) -> None:
    """A chat user gets `burst` commands at once; the local console (a terminal, a pipe, a
    jsonl script on the daemon's stdin) is the person running the daemon: 15 commands, 15
    answers, with the limiter's default platforms."""
    limit = RateLimit(clock, per_minute=6, burst=2)

    async def answered(call: Call) -> list[Reply]:
        return [Reply(text=f"ran {call.event.event_id}")]

    ran: dict[str, int] = {}
    for platform in ("console", "slack"):
        ran[platform] = 0
        for i in range(15):
            event = Inbound(platform, "ops", Actor("root"), f"!echo {i}", event_id=f"{i}")
            call = Call(event, None, {}, "!", f"r{i}", rig.outbox)
            try:
                await limit(call, answered)
            except RateLimited:
                continue
            ran[platform] += 1
    assert ran == {"console": 15, "slack": 2}


async def test_internal_error_gives_a_reference_and_the_bus_stays_up(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="chatopsd.bus"):
        await rig.bus.handle(ev("!boom", "b1"))
    [reply] = await rig.replies()
    text = str(reply["text"])
    assert text.startswith("internal error, reference ") and "secret internals" not in text
    ref = text.split("reference ")[1].split(".")[0]
    assert any(ref in r.getMessage() and r.exc_info for r in caplog.records)
    [row] = await rig.audit.since(None)
    assert (row.outcome, row.cause) == ("error", f"RuntimeError ref={ref}")
    await rig.bus.handle(ev("!echo alive", "b2"))
    assert (await rig.replies())[-1]["text"] == "echo alive"


async def test_user_errors_render_in_one_place(rig: Rig, clock: FakeClock) -> None:
    for text, event_id in (("!missing", "m1"), ("!ech hi", "m2"), ("!echo", "m3")):
        await rig.bus.handle(ev(text, event_id))
        clock.advance(10)  # stay under the rate limit
    texts = [r["text"] for r in await rig.replies()]
    assert texts == [
        "no such thing",
        "unknown command !ech\ndid you mean !echo?",
        "missing <text...>\nusage: !echo <text...>",
    ]
    assert [r.command for r in await rig.audit.since(None)] == ["missing", "ech", "echo"]


async def test_a_handed_over_commands_answer_is_the_events_answer(rig: Rig) -> None:
    # The event's task (what the console waits for) ends with the command it handed over,
    # and its result holds that command's reply: the event was answered, once.
    task = rig.bus.submit(ev("!relay hi", "r1"))
    assert task is not None
    assert [r.text for r in await task] == ["echo hi"]
    assert rig.handled == ["relay:r1"]
    assert [r["text"] for r in await rig.replies()] == ["echo hi"]
    assert sorted(r.command for r in await rig.audit.since(None)) == ["echo", "relay"]


async def test_drain_stops_taking_commands(rig: Rig) -> None:
    task = rig.bus.submit(ev("!echo before", "d1"))
    assert task is not None
    assert await rig.bus.drain(5) == 0
    assert rig.bus.submit(ev("!echo after", "d2")) is None
    assert rig.handled == ["d1"]
    # the dropped event was never claimed: a redelivery after restart will be handled
    assert await rig.ledger.claim("console", "d2") is True


async def test_an_oversized_message_is_refused_before_parsing_and_audited(rig: Rig) -> None:
    text = "!echo " + "word " * 9_000  # 45,006 characters, a quote that never closes after it
    [reply] = await rig.bus.handle(ev(text + '"', "big"))
    assert reply.text.startswith("that message is too long for a command (45,")
    assert "the limit is 40,000" in reply.text and reply.ephemeral
    assert rig.handled == []
    [row] = await rig.audit.since(None)
    assert row.event_id == "big"
    # just under the limit is parsed as usual
    await rig.bus.handle(ev("!echo " + "w" * 39_000, "fits"))
    assert rig.handled == ["fits"]


def test_chat_cause_never_shows_an_unexpected_exception() -> None:
    assert chat_cause(RuntimeError("token xoxb-1"), "ab12") == (
        "internal error, reference ab12. It has been logged."
    )
    assert chat_cause(NotFound("no such user"), "r") == "no such user"
    assert chat_cause(ChannelRefused("missing_scope"), "r") == "missing_scope"
    assert "rate limited" in chat_cause(RateLimitedSend("HTTP 429 on /x"), "r")
    assert "HTTP" not in chat_cause(TransientSendError("HTTP 502 on /x"), "r")


async def test_admit_soon_tells_of_the_durable_claim_at_once_and_the_command_waits_for_it(
    rig: Rig, db: SqliteDatabase, clock: FakeClock
) -> None:
    # A connector that acknowledges events (Slack) is told the moment the claim is settled,
    # and hands back what the command waits for before it goes on: its ack being sent.
    told: list[bool] = []
    ack_sent: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    fresh = SqlEventLedger(db, clock)

    def on_claimed(recorded: bool) -> asyncio.Future[None]:
        told.append(recorded)
        return ack_sent

    rig.bus.admit_soon(ev("!echo hi", "s1"), on_claimed)
    assert told == []  # not before the claim is committed
    await eventually(lambda: told)
    assert told == [True]
    assert await fresh.load() == 1  # committed: a restart would drop a redelivery
    assert await fresh.claim("console", "s1") is False
    await asyncio.sleep(0.05)
    assert rig.handled == []  # the command waits until its ack is out
    assert await rig.audit.since(None) == []
    ack_sent.set_result(None)
    await eventually(lambda: rig.handled == ["s1"])
    [row] = await rig.audit.since(None)
    assert (row.event_id, row.outcome) == ("s1", "ok")


async def test_admit_soon_says_redelivered_yes_and_shutting_down_no(rig: Rig) -> None:
    told: list[tuple[str, bool]] = []

    def tell(event_id: str) -> Callable[[bool], None]:
        return lambda recorded: told.append((event_id, recorded))

    await rig.bus.handle(ev("!echo once", "r1"))
    rig.bus.admit_soon(ev("!echo once", "r1"), tell("r1"))  # a redelivery: may be forgotten
    rig.bus.admit_soon(ev("good morning", "r2"), tell("r2"))  # not for us: nothing to redo
    await eventually(lambda: len(told) == 2)
    assert sorted(told) == [("r1", True), ("r2", True)]
    assert rig.handled == ["r1"]
    await rig.bus.drain(5)
    rig.bus.admit_soon(ev("!echo late", "r3"), tell("r3"))
    assert told[-1] == ("r3", False)  # at once: the platform is to deliver it again
    assert await rig.ledger.claim("console", "r3") is True  # never claimed
