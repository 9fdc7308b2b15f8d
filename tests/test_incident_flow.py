"""Incidents end to end through the bus: the real handler, store (SQLite), outbox and bus,
with a fake chat platform that can create channels (or refuses to) and the console, which
cannot. Pulses are driven with FakeClock by calling the job function directly."""

from __future__ import annotations

import asyncio
import io
import itertools
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chatopsd.connectors.console import ConsoleConnector
from chatopsd.core.bus import Bus
from chatopsd.core.capabilities import (
    CHANNEL_INVITES,
    INCIDENT_CHANNELS,
    MESSAGE_PINS,
    THREADS,
    Capabilities,
)
from chatopsd.core.commands import Registry
from chatopsd.core.messages import Actor, Destination, Inbound, Reply
from chatopsd.core.middleware import Dedupe
from chatopsd.features.incidents.commands import IncidentHandler, IncidentSettings
from chatopsd.features.incidents.store import SqliteIncidentStore
from chatopsd.outbox import Outbox
from chatopsd.store.events import SqliteEventLedger
from chatopsd.store.sqlite import Database
from tests.conftest import FakeClock
from tests.fakes.chat import FakeChat

ALICE = Actor("U1", "alice")
BOB = Actor("U2", "bob")
SETTINGS = IncidentSettings(
    routing={1: (Destination("chat", "CSEV1"),)},
    default=(Destination("chat", "CALL"),),
    management=Destination("chat", "CMGMT"),
    pulse_minutes=30,
)


class Rig:
    """What the daemon builds, minus the sockets: a bus whose replies land on fake platforms."""

    def __init__(self, db: Database, clock: FakeClock, chat: FakeChat, settings: IncidentSettings):
        self.db, self.clock, self.chat = db, clock, chat
        self.console_out = io.StringIO()
        self.console = ConsoleConnector(fmt="jsonl", stdout=self.console_out)
        self.outbox = Outbox({"chat": chat, "console": self.console})
        self.store = SqliteIncidentStore(db)
        # the fake platform creates channels, invites, pins and has threads; the console
        # has no capability at all
        capabilities = Capabilities(
            [("chat", chat, (THREADS, INCIDENT_CHANNELS, CHANNEL_INVITES, MESSAGE_PINS))]
        )
        self.handler = IncidentHandler(self.store, self.outbox, clock, settings, capabilities)
        self.bus = Bus(
            Registry(self.handler.commands()), [Dedupe(SqliteEventLedger(db, clock))], self.outbox
        )
        self.bus.reaction_commands.append(self.handler.reaction_command)
        self._ids = itertools.count(1)

    async def say(
        self,
        text: str,
        channel: str = "COPS",
        actor: Actor = ALICE,
        thread: str | None = None,
        platform: str = "chat",
    ) -> list[Reply]:
        n = next(self._ids)
        event = Inbound(
            platform, channel, actor, text, event_id=f"e{n}", thread=thread, message_id=f"u{n}"
        )
        replies = await self.bus.handle(event)
        await self.outbox.flush(5)
        return replies

    async def text(self, *args: str, **kw: object) -> str:
        return "\n".join(r.plain() for r in await self.say(*args, **kw))  # type: ignore[arg-type]

    def console_lines(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.console_out.getvalue().splitlines()]


@pytest.fixture
async def rig(db: Database, clock: FakeClock) -> AsyncIterator[Rig]:
    r = Rig(db, clock, FakeChat(), SETTINGS)
    yield r
    await r.outbox.close()


async def declare(rig: Rig, text: str = '!incident declare --sev 1 "Payments failing"') -> str:
    out = await rig.text(text)
    assert " declared " in out, out
    return out.split()[0]


async def test_declare_opens_a_channel_pins_status_and_routes_by_severity(rig: Rig) -> None:
    out = await rig.text(
        '!incident declare --sev 1 "Payments failing" --service payments '
        '--description "5xx at checkout"'
    )
    assert out.startswith(
        "INC-2026-0001 declared (SEV-1). Incident channel: #inc-20261123-payments-failing."
    )
    assert "Announced in chat:COPS, chat:CSEV1, chat:CMGMT." in out
    [(channel, name)] = rig.chat.channels.items()
    assert name == "inc-20261123-payments-failing" and rig.chat.members[channel] == {"U1"}
    [status] = rig.chat.in_channel(channel)
    assert rig.chat.pins == [status.message_id]
    assert (
        "State: declared" in status.reply.plain()
        and "Incident Commander: alice" in status.reply.plain()
    )
    for where in ("COPS", "CSEV1", "CMGMT"):
        [ann] = rig.chat.in_channel(where)[:1]
        assert "INC-2026-0001 [SEV-1] Payments failing" in (ann.reply.title or "")
        assert [b.label for b in ann.reply.buttons] == ["Acknowledge", "Escalate", "I'm joining"]
    assert "Service: payments" in rig.chat.in_channel("CSEV1")[0].reply.plain()


async def test_lower_severity_goes_to_the_default_channel_only(rig: Rig) -> None:
    await declare(rig, "!incident declare disk filling --sev SEV-3")
    announced = {p.destination.channel for p in rig.chat.posts if p.reply.buttons}
    assert announced == {"COPS", "CALL"}


async def test_updates_inside_the_channel_edit_the_pinned_status(
    rig: Rig, clock: FakeClock
) -> None:
    inc = await declare(rig)
    channel = next(iter(rig.chat.channels))
    status = rig.chat.by_id(rig.chat.pins[0])
    clock.advance(120)
    assert "updated" in await rig.text("!incident update rolled back the deploy", channel=channel)
    assert (
        "Last update: 2026-11-23 12:02 UTC alice: rolled back the deploy" in status.current.plain()
    )
    clock.advance(60)
    out = await rig.text(f"!incident ack {inc} on it", channel="CELSEWHERE", actor=BOB)
    assert out == f"{inc} acknowledged by bob."
    assert "State: acknowledged" in status.current.plain()
    out = await rig.text("!incident ack", channel=channel, actor=BOB)
    assert out == f"{inc} is already acknowledged"
    assert len(status.edits) == 2  # the refusal changed nothing
    out = await rig.text("!incident commander <@U2>", channel=channel)
    assert out == f"Incident Commander of {inc}: <@U2>." and rig.chat.members[channel] == {
        "U1",
        "U2",
    }
    assert "Incident Commander: <@U2>" in status.current.plain()
    timeline = await rig.handler.store.timeline(inc)
    assert [(e.kind, e.actor, e.channel) for e in timeline] == [
        ("declared", "alice", "COPS"),
        ("update", "alice", channel),
        ("acknowledged", "bob", "CELSEWHERE"),
        ("role", "alice", channel),
    ]


async def test_escalate_edits_announcements_and_reaches_new_routes(rig: Rig) -> None:
    inc = await declare(rig, "!incident declare --sev 2 db slow")
    out = await rig.text(f"!incident escalate {inc} sev-1")
    assert out == f"{inc} escalated SEV-2 → SEV-1. Announced in chat:CSEV1, chat:CMGMT."
    first = rig.chat.in_channel("CALL")[0]
    assert "[SEV-1]" in (first.current.title or "")
    assert "[SEV-1]" in (rig.chat.in_channel("CMGMT")[0].reply.title or "")
    assert "already SEV-1" in await rig.text(f"!incident escalate {inc}")


async def test_resolve_posts_wrapup_everywhere_and_close_needs_resolve(
    rig: Rig, clock: FakeClock
) -> None:
    inc = await declare(rig)
    channel = next(iter(rig.chat.channels))
    out = await rig.text("!incident close", channel=channel)
    assert (
        out == f"{inc} is still declared: resolve it before closing it\n"
        f"!incident resolve {inc} <what fixed it>"
    )
    assert "say what fixed it" in await rig.text("!incident resolve", channel=channel)
    clock.advance(45 * 60)
    out = await rig.text("!incident resolve rolled back to v1.2.2", channel=channel)
    assert out.startswith(f"✅ {inc} resolved: Payments failing") and "Resolved after 45m" in out
    for where in ("COPS", "CSEV1", "CMGMT"):
        assert any("Resolved after 45m" in p.reply.plain() for p in rig.chat.in_channel(where))
    status = rig.chat.by_id(rig.chat.pins[0])
    assert "State: resolved" in status.current.plain() and "Duration: 45m" in status.current.plain()
    assert "already resolved" in await rig.text(f"!incident resolve {inc} again")
    assert "closed" in await rig.text(f"!incident close {inc}")
    assert "is closed" in await rig.text(f"!incident update {inc} late note")
    assert "No open incidents." in await rig.text("!incident list")


async def test_an_unexpected_admin_error_is_not_shown_raw(db: Database, clock: FakeClock) -> None:
    # A connector bug must not put its exception text (here, something secret) into chat.
    chat = FakeChat(broken_invites=KeyError("secret-not-for-chat"))
    rig = Rig(db, clock, chat, IncidentSettings())
    try:
        out = await rig.text('!incident declare "Login broken"')
        assert "declared" in out and "Incident channel: #inc-" in out
        assert "Could not invite alice: internal error, reference " in out
        assert "secret-not-for-chat" not in out and "KeyError" not in out
    finally:
        await rig.outbox.close()


async def test_channel_refused_falls_back_to_a_thread_and_says_so(
    db: Database, clock: FakeClock
) -> None:
    chat = FakeChat(refuse_channels="missing_scope: channels:manage")
    rig = Rig(db, clock, chat, IncidentSettings())
    try:
        out = await rig.text('!incident declare "Login broken"')
        assert (
            "No incident channel (could not create #inc-20261123-login-broken: missing_scope" in out
        )
        assert "Incident thread: under the announcement" in out
        announcement = rig.chat.in_channel("COPS")[0]
        thread = announcement.message_id
        in_thread = rig.chat.in_channel("COPS", thread=thread)
        assert any("State: declared" in p.reply.plain() for p in in_thread)
        assert any("this thread is the incident's home" in p.reply.plain() for p in in_thread)
        assert rig.chat.pins == []  # nothing to pin a thread's status to
        # inside the thread the id can be left out
        assert "updated" in await rig.text("!incident update cache flushed", thread=thread)
        status = next(p for p in in_thread if "State:" in p.reply.plain())
        assert "cache flushed" in status.current.plain()
        # in the channel itself, which belongs to no incident, only because one is open
        assert "updated" in await rig.text("!incident update more")
        await rig.text('!incident declare "Search broken"')
        out = await rig.text("!incident update more")
        assert out.startswith("which incident? 2 are open (INC-2026-0001, INC-2026-0002)")
    finally:
        await rig.outbox.close()


async def test_console_has_no_threads_so_everything_prints_once(rig: Rig) -> None:
    """The console shows one stream: no "this thread is the incident's home" (a console user
    can never enter a thread), no notice or wrap-up posted to a thread as well as replied."""
    out = await rig.text('!incident declare "Queue stuck"', channel="console", platform="console")
    assert "thread" not in out and "Its status and updates post here" in out
    lines = [str(line["text"]) for line in rig.console_lines()]
    assert sum("INC-2026-0001 [SEV-3] Queue stuck" in t for t in lines) == 2  # announce, status
    assert not any("thread" in t for t in lines)
    # one incident open: no id needed, on the console too
    ack = await rig.text("!incident ack looking at it", channel="console", platform="console")
    assert ack.startswith("INC-2026-0001 acknowledged")
    before = len(rig.console_lines())
    wrap = await rig.text("!incident resolve restarted", channel="console", platform="console")
    assert "resolved" in wrap
    # the wrap-up is the command's reply, printed once; nothing posted it a second time
    head = wrap.splitlines()[0]
    posted = [x for x in rig.console_lines()[before:] if "edit" not in x]
    assert sum(head in str(x["text"]) for x in posted) == 1, posted


async def test_concurrent_acks_get_one_winner(rig: Rig) -> None:
    inc = await declare(rig)
    outs = await asyncio.gather(*(rig.text(f"!incident ack {inc}", actor=a) for a in (ALICE, BOB)))
    assert sorted(o.split(" by ")[0] if "by" in o else o for o in outs) == sorted(
        [f"{inc} acknowledged", f"{inc} is already acknowledged"]
    )
    kinds = [e.kind for e in await rig.handler.store.timeline(inc)]
    assert kinds.count("acknowledged") == 1


async def test_bad_ids_and_missing_ids(rig: Rig) -> None:
    assert "there is no incident INC-2026-0099" in await rig.text("!incident status INC-2026-0099")
    out = await rig.text("!incident ack")
    assert out.startswith("which incident?") and "usage: !incident ack" in out
    assert "severity must be SEV-1" in await rig.text("!incident declare --sev 9 x")


async def test_timeline_and_export(rig: Rig, clock: FakeClock) -> None:
    inc = await declare(rig)
    clock.advance(60)
    await rig.text(f"!incident scribe {inc} carol")
    await rig.text(f"!incident update {inc} found it")
    timeline = await rig.text(f"!incident timeline {inc}")
    assert f"Timeline of {inc}" in timeline and "[update] alice (chat #COPS): found it" in timeline
    md = (await rig.say(f"!incident export {inc}"))[0].code or ""
    assert md.startswith(f"# Postmortem: {inc} Payments failing")
    assert "- Scribe: carol" in md and "| update: found it |" in md


async def test_reactions_act_like_buttons(rig: Rig) -> None:
    inc = await declare(rig)
    announcement = rig.chat.in_channel("CSEV1")[0]
    reaction = Inbound(
        "chat",
        "CSEV1",
        BOB,
        "white_check_mark",
        kind="reaction",
        event_id="r1",
        message_id=announcement.message_id,
    )
    await rig.bus.handle(reaction)
    await rig.outbox.flush(5)
    assert (await rig.store.get(inc)).state.value == "acknowledged"  # type: ignore[union-attr]
    assert any(
        f"{inc} acknowledged by bob." in p.reply.plain() for p in rig.chat.in_channel("CSEV1")
    )
    await rig.bus.handle(reaction)  # again: refused quietly, no reply storm
    await rig.outbox.flush(5)
    assert sum("acknowledged by" in p.reply.plain() for p in rig.chat.posts) == 1


async def test_buttons_run_the_commands(rig: Rig) -> None:
    inc = await declare(rig)
    button = rig.chat.in_channel("CSEV1")[0].reply.buttons[2]
    event = Inbound("chat", "CSEV1", BOB, button.command, kind="button", event_id="b1")
    [reply] = await rig.bus.handle(event)
    assert reply.text == f"bob joined {inc}."
    channel = next(iter(rig.chat.channels))
    assert "U2" in rig.chat.members[channel]


async def test_pulses_once_per_quiet_period_across_a_restart(
    tmp_path: Path, clock: FakeClock
) -> None:
    db = await Database.open(tmp_path / "state.db")
    rig = Rig(db, clock, FakeChat(), SETTINGS)
    inc = await declare(rig)
    channel = next(iter(rig.chat.channels))

    async def reminders(r: Rig) -> list[str]:
        await r.outbox.flush(5)
        return [
            p.reply.plain() for p in r.chat.in_channel(channel) if "no update on" in p.reply.plain()
        ]

    clock.advance(29 * 60)
    assert await rig.handler.pulse() == 0
    clock.advance(2 * 60)
    assert await rig.handler.pulse() == 1
    assert await rig.handler.pulse() == 0  # the same quiet period: no second reminder
    [text] = await reminders(rig)
    assert text.startswith(f"alice: no update on {inc} for 31m.")
    await rig.outbox.close()
    await db.close()

    # a restart: new process state, same database. No reminder storm.
    db = await Database.open(tmp_path / "state.db")
    chat = FakeChat()
    rig = Rig(db, clock, chat, SETTINGS)
    assert await rig.handler.pulse() == 0
    clock.advance(30 * 60)  # a second quiet period
    assert await rig.handler.pulse() == 1
    # an update restarts the quiet period
    clock.advance(60)
    await rig.text(f"!incident update {inc} still digging")
    clock.advance(29 * 60)
    assert await rig.handler.pulse() == 0
    clock.advance(60)
    assert await rig.handler.pulse() == 1
    # resolved incidents are not nagged
    await rig.text(f"!incident resolve {inc} fixed")
    clock.advance(3 * 3600)
    assert await rig.handler.pulse() == 0
    await rig.outbox.close()
    await db.close()


async def test_slash_and_mention_forms(rig: Rig) -> None:
    slash = Inbound(
        "chat",
        "COPS",
        ALICE,
        '/incident declare --sev 2 "Search down"',
        kind="slash",
        event_id="s1",
    )
    [reply] = await rig.bus.handle(slash)
    assert reply.text.startswith("INC-2026-0001 declared (SEV-2)")
    mention = Inbound("chat", "COPS", BOB, "incident list", kind="mention", event_id="s2")
    [listing] = await rig.bus.handle(mention)
    assert listing.fields[0][0] == "INC-2026-0001 [SEV-2] Search down"
    typed = await rig.text("@chatopsd incident status INC-2026-0001")
    assert "State: declared" in typed


async def test_same_title_same_day_gets_a_numbered_channel(rig: Rig) -> None:
    await declare(rig, "!incident declare api down")
    out = await rig.text("!incident declare api down")
    assert "INC-2026-0002 declared (SEV-3). Incident channel: #inc-20261123-api-down-0002." in out
    assert sorted(rig.chat.channels.values()) == [
        "inc-20261123-api-down",
        "inc-20261123-api-down-0002",
    ]


async def test_joining_twice_is_one_timeline_entry(rig: Rig) -> None:
    inc = await declare(rig)
    assert await rig.text(f"!incident join {inc}", actor=BOB) == f"bob joined {inc}."
    assert await rig.text(f"!incident join {inc}", actor=BOB) == f"bob is already in {inc}."
    kinds = [e.kind for e in await rig.store.timeline(inc)]
    assert kinds.count("joined") == 1


async def test_unreachable_route_and_refused_pin_do_not_undo_the_declaration(
    db: Database, clock: FakeClock
) -> None:
    settings = IncidentSettings(default=(Destination("ghost", "C1"), Destination("chat", "CALL")))
    rig = Rig(db, clock, FakeChat(refuse_pins="not_pinnable"), settings)
    try:
        out = await rig.text("!incident declare cache cold")
        assert out.startswith("INC-2026-0001 declared (SEV-3). Incident channel:")
        assert "Could not pin the status message: not_pinnable" in out
        assert "Announced in chat:COPS, chat:CALL." in out  # not ghost:C1, which has no connector
        channel = next(iter(rig.chat.channels))
        assert "updated" in await rig.text("!incident update warming", channel=channel)
    finally:
        await rig.outbox.close()


async def test_escalate_by_reaction_reaches_the_sev1_routes(rig: Rig) -> None:
    inc = await declare(rig, "!incident declare --sev 2 db slow")
    announcement = rig.chat.in_channel("CALL")[0]
    reaction = Inbound(
        "chat",
        "CALL",
        BOB,
        ":arrow_up:",
        kind="reaction",
        event_id="r1",
        message_id=announcement.message_id,
    )
    await rig.bus.handle(reaction)
    await rig.outbox.flush(5)
    assert "[SEV-1]" in (announcement.current.title or "")
    assert "[SEV-1]" in (rig.chat.in_channel("CMGMT")[0].reply.title or "")
    assert any(
        f"{inc} escalated SEV-2 → SEV-1." in p.reply.plain() for p in rig.chat.in_channel("CALL")
    )
    # bad severities are refused before anything changes
    assert "severity must be" in await rig.text(f"!incident escalate {inc} SEV-9")
