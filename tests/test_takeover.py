"""Commands a dead instance claimed and never answered are taken over, once, on the real
PostgreSQL: the claim keeps the command, the survivor finds it once its owner's heartbeat is
old, wins it by compare-and-set and answers it through the bus like any command."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator

import pytest

from chatopsd.connectors.console import ConsoleConnector
from chatopsd.core.bus import Bus
from chatopsd.core.commands import Arg, CommandSpec, Registry
from chatopsd.core.context import Call
from chatopsd.core.messages import Actor, Inbound, Reply, inbound_from_json, inbound_to_json
from chatopsd.core.middleware import Dedupe
from chatopsd.ha.takeover import Takeover
from chatopsd.outbox import Outbox
from chatopsd.store.audit import SqlAuditLog
from chatopsd.store.events import SqlEventLedger
from chatopsd.store.postgres import PgDatabase
from tests.conftest import FakeClock
from tests.waiting import eventually

_NOW = "extract(epoch from clock_timestamp())"


class Instance:
    """One chatopsd instance's bus over the shared database, answering into a jsonl console."""

    def __init__(self, db: PgDatabase, clock: FakeClock, name: str) -> None:
        self.db, self.name = db, name
        self.out = io.StringIO()
        self.outbox = Outbox({"console": ConsoleConnector(fmt="jsonl", stdout=self.out)})
        self.ledger = SqlEventLedger(db, clock, instance=name)
        self.ran: list[str] = []
        self.hold = asyncio.Event()  # the handler waits on it: "killed" mid-command
        self.hold.set()
        registry = Registry(
            [CommandSpec(("echo",), "echo", self.echo, (Arg("text", kind="rest"),))]
        )
        self.bus = Bus(registry, [Dedupe(self.ledger, durable=True)], self.outbox)
        self.audit = SqlAuditLog(db)
        self.takeover = Takeover(self.ledger, self.bus, clock, self.audit, dead_after_s=5.0)

    async def echo(self, call: Call) -> Reply:
        self.ran.append(call.event.event_id)
        await self.hold.wait()
        return Reply(text=f"echo {call.text('text')}")

    async def beat(self, age_s: float = 0.0) -> None:
        """This instance's heartbeat, `age_s` old by the database's clock."""
        await self.db.write(
            f"INSERT INTO instances (id, started_at, seen_at) VALUES ($1, 0, {_NOW} - $2) "
            "ON CONFLICT (id) DO UPDATE SET seen_at = excluded.seen_at",
            (self.name, age_s),
        )

    async def answers(self) -> list[str]:
        await self.outbox.flush(5)
        return [json.loads(line)["text"] for line in self.out.getvalue().splitlines()]


def ev(text: str, event_id: str, kind: str = "message") -> Inbound:
    return Inbound(
        "console", "ops", Actor("alice", "Alice", "a@example.com"), text, kind=kind,  # type: ignore[arg-type]
        event_id=event_id, thread="t1", message_id="m1",
    )  # fmt: skip


@pytest.fixture
async def pair(pg_url: str, clock: FakeClock) -> AsyncIterator[tuple[Instance, Instance]]:
    a_db, b_db = await PgDatabase.open(pg_url), await PgDatabase.open(pg_url)
    a, b = Instance(a_db, clock, "a"), Instance(b_db, clock, "b")
    yield a, b
    a.hold.set()
    for i in (a, b):
        await i.bus.drain(5)
        await i.outbox.close()
    await a_db.close()
    await b_db.close()


async def killed_mid_command(a: Instance, event: Inbound) -> None:
    """Instance a claims the event and starts it, then dies before answering."""
    a.hold.clear()
    task = a.bus.submit(event)
    assert task is not None
    await eventually(lambda: a.ran, timeout=2)
    assert a.ran == [event.event_id]
    task.cancel()  # kill -9: nothing after this point runs


async def test_a_dead_instances_command_is_answered_once_by_the_survivor(
    pair: tuple[Instance, Instance],
) -> None:
    a, b = pair
    await a.beat()
    await b.beat()
    event = ev("!echo still here", "E1")
    await killed_mid_command(a, event)
    # b sees the same event (Mattermost and Discord deliver it to every instance): claimed
    assert await b.bus.handle(event) == []
    assert await b.takeover.ledger.orphans(5.0, 3600) == []  # a's heartbeat is fresh

    await a.beat(age_s=6.0)  # a has been silent longer than dead_after_s
    await b.beat()
    await b.takeover.sweep()
    await b.bus.drain(5)
    assert await b.answers() == ["echo still here"]
    assert b.takeover.resumed == 1
    await b.takeover.sweep()  # answered: nothing left to take over
    assert b.takeover.resumed == 1 and await b.ledger.orphans(5.0, 3600) == []
    assert await a.answers() == []


async def test_two_survivors_take_a_command_over_once(
    pg_url: str, pair: tuple[Instance, Instance], clock: FakeClock
) -> None:
    a, b = pair
    c_db = await PgDatabase.open(pg_url)
    c = Instance(c_db, clock, "c")
    try:
        await a.beat(age_s=60.0)
        await b.beat()
        await c.beat()  # alive: what one survivor took over is not the other's to take
        for n in range(20):
            await a.ledger.claim("console", f"E{n}", inbound_to_json(ev(f"!echo {n}", f"E{n}")))
        await asyncio.gather(b.takeover.sweep(), c.takeover.sweep())
        await asyncio.gather(b.bus.drain(5), c.bus.drain(5))
        got = await b.answers() + await c.answers()
        assert sorted(got) == sorted(f"echo {n}" for n in range(20))  # each exactly once
        assert b.takeover.resumed + c.takeover.resumed == 20
    finally:
        await c.outbox.close()
        await c_db.close()


async def test_answered_commands_and_live_owners_are_left_alone(
    pair: tuple[Instance, Instance],
) -> None:
    a, b = pair
    await a.beat()
    await a.bus.handle(ev("!echo done", "E1"))
    assert await a.answers() == ["echo done"]
    await a.beat(age_s=60.0)  # dead now, but it answered before dying
    await a.ledger.claim("console", "E2", inbound_to_json(ev("!echo late", "E2")))
    [orphan] = await b.ledger.orphans(5.0, 3600)
    assert orphan.event_id == "E2" and orphan.instance == "a"
    await a.beat()  # alive again (it was only slow): its command is its own
    await b.takeover.sweep()
    assert b.takeover.resumed == 0 and await b.answers() == []


async def test_too_old_or_unreadable_commands_are_given_up_not_run(
    pair: tuple[Instance, Instance], clock: FakeClock
) -> None:
    a, b = pair
    await a.beat(age_s=3000.0)
    await a.ledger.claim("console", "OLD", inbound_to_json(ev("!echo old page", "OLD")))
    await a.ledger.claim("console", "BAD", '{"not": "an event"}')
    clock.advance(601)  # older than max_age_s: a 10-minute-old page may be solved by now
    await a.ledger.claim("console", "NEW", inbound_to_json(ev("!echo new", "NEW")))
    await b.takeover.sweep()
    await b.bus.drain(5)
    assert await b.answers() == ["echo new"]
    assert (b.takeover.resumed, b.takeover.given_up) == (1, 2)
    assert await b.ledger.orphans(5.0, 3600) == []


async def test_a_late_instance_answers_what_is_still_its_own_once(
    pair: tuple[Instance, Instance],
) -> None:
    a, b = pair
    alive = True
    a.ledger.answerable = lambda: alive  # the app wires Lease.alive here
    a.hold.clear()
    await a.beat()
    task = a.bus.submit(ev("!echo slow", "E1"))
    assert task is not None
    await asyncio.sleep(0.05)
    alive = False  # its heartbeat went late while the handler ran; nobody took it over
    a.hold.set()
    await task
    assert await a.answers() == ["echo slow"]  # still its own: answered here, once ...
    await a.beat(age_s=60.0)
    await b.takeover.sweep()
    await b.bus.drain(5)
    assert await b.answers() == [] and b.takeover.resumed == 0  # ... and not again


async def test_a_late_instance_does_not_answer_what_was_taken_over(
    pair: tuple[Instance, Instance],
) -> None:
    a, b = pair
    a.ledger.answerable = lambda: False  # late all along
    a.hold.clear()
    await a.beat()
    task = a.bus.submit(ev("!echo slow", "E1"))
    assert task is not None
    await eventually(lambda: a.ran, timeout=2)
    await a.beat(age_s=60.0)
    await b.beat()
    await b.takeover.sweep()  # counted dead: b takes the command over and answers it
    await b.bus.drain(5)
    assert await b.answers() == ["echo slow"]
    a.hold.set()  # a's handler finishes after all
    await task
    assert await a.answers() == []  # b answered it: a stays silent


async def test_a_reaction_is_taken_over_as_the_command_it_stood_for(
    pair: tuple[Instance, Instance],
) -> None:
    a, b = pair
    await a.beat(age_s=60.0)
    # what Dedupe stores for a reaction: the command it was mapped to
    mapped = ev("echo from a reaction", "R1", kind="reaction")
    await a.ledger.claim("console", "R1", inbound_to_json(mapped))
    await b.takeover.sweep()
    await b.bus.drain(5)
    assert await b.answers() == ["echo from a reaction"]


def test_the_stored_command_round_trips() -> None:
    event = ev('!echo ünïcode "quoted"', "E9")
    assert inbound_from_json(inbound_to_json(event)) == event
    with pytest.raises(ValueError):
        inbound_from_json(inbound_to_json(event).replace('"message"', '"telegram"'))


async def test_admit_says_whether_the_platform_may_forget_the_event(
    pg_url: str, pair: tuple[Instance, Instance], clock: FakeClock
) -> None:
    a, _ = pair
    assert await a.bus.admit(ev("!echo one", "E1")) is True  # claimed here
    assert await a.bus.admit(ev("!echo one", "E1")) is True  # a redelivery: claimed before
    assert await a.bus.admit(ev("just talking", "E2")) is True  # not for us: nothing to redo
    cut_db = await PgDatabase.open(pg_url)
    cut = Instance(cut_db, clock, "cut")
    await cut_db.close()  # the shared database is out of reach: the claim cannot be recorded
    assert await cut.bus.admit(ev("!echo two", "E3")) is False  # deliver it again elsewhere
    await cut.bus.drain(1)
    assert await cut.answers() == []  # and no "internal error" answer from here
    await cut.outbox.close()
    await a.bus.drain(5)
    assert await a.answers() == ["echo one"]
