"""A command with outside effects (CommandSpec.effects) is recorded as started before its
handler runs. When its instance dies before answering, whoever finds it (a survivor on
PostgreSQL, the next start on SQLite) does not run it again: it tells the command's channel
that it may or may not have finished and how to run it again, and writes the audit row the
dead instance never wrote (`interrupted`). Commands without effects are taken over and run
again as before. Real databases; the "kill" cancels the handler's task, after which nothing
of the dead instance runs (tests/test_ha_effects.py does it with kill -9)."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import pytest

from chatopsd.connectors.console import ConsoleConnector
from chatopsd.core.bus import Bus, Middleware
from chatopsd.core.commands import Arg, CommandSpec, Registry
from chatopsd.core.context import Call
from chatopsd.core.messages import Actor, Inbound, Reply, inbound_to_json
from chatopsd.core.middleware import Audit, Dedupe, Started
from chatopsd.core.outcome import Outcome
from chatopsd.core.ports import AuditEntry
from chatopsd.ha.takeover import Takeover
from chatopsd.outbox import Outbox
from chatopsd.store.audit import SqlAuditLog
from chatopsd.store.backend import open_database
from chatopsd.store.db import Database
from chatopsd.store.events import SqlEventLedger
from tests.conftest import FakeClock
from tests.waiting import eventually

_NOW = "extract(epoch from clock_timestamp())"


class Instance:
    """One chatopsd's bus over a database, answering into a jsonl console: `!deploy` has
    outside effects (counted in `ran`), `!echo` has none."""

    def __init__(self, db: Database, clock: FakeClock, name: str) -> None:
        self.db, self.name = db, name
        self.out = io.StringIO()
        self.outbox = Outbox({"console": ConsoleConnector(fmt="jsonl", stdout=self.out)})
        self.ledger = SqlEventLedger(db, clock, instance=name)
        self.audit = SqlAuditLog(db)
        self.ran: list[str] = []
        self.hold = asyncio.Event()  # the handler waits on it: "killed" mid-command
        self.hold.set()
        registry = Registry(
            [
                CommandSpec(
                    ("deploy",), "deploy", self.deploy, (Arg("env"),), mutates=True, effects=True
                ),
                CommandSpec(("echo",), "echo", self.echo, (Arg("text", kind="rest"),)),
            ]
        )
        chain: list[Middleware] = [
            Dedupe(self.ledger, durable=db.shared),
            Audit(self.audit, clock),
            Started(self.ledger),
        ]
        self.bus = Bus(registry, chain, self.outbox)
        self.takeover = Takeover(self.ledger, self.bus, clock, self.audit, dead_after_s=5.0)

    async def deploy(self, call: Call) -> Reply:
        self.ran.append(call.event.event_id)
        await self.hold.wait()
        return Reply(text=f"deployed to {call.text('env')}")

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

    async def lines(self) -> list[dict[str, object]]:
        await self.outbox.flush(5)
        return [json.loads(line) for line in self.out.getvalue().splitlines()]

    async def close(self) -> None:
        self.hold.set()
        await self.bus.drain(5)
        await self.outbox.close()


def ev(text: str, event_id: str) -> Inbound:
    return Inbound(
        "console", "ops", Actor("alice", "Alice", "a@example.com"), text,
        event_id=event_id, thread="t1", message_id="m1",
    )  # fmt: skip


async def killed_mid_command(a: Instance, event: Inbound) -> None:
    """Instance a claims the event and starts it, then dies before answering."""
    a.ran.clear()
    a.hold.clear()
    task = a.bus.submit(event)
    assert task is not None
    await eventually(lambda: a.ran, timeout=5)
    assert a.ran == [event.event_id]
    task.cancel()  # kill -9: nothing after this point runs
    await asyncio.gather(task, return_exceptions=True)


async def audit_rows(db: Database, event_id: str) -> list[tuple[str, str, str]]:
    rows = await db.fetchall(
        "SELECT command, outcome, cause FROM audit WHERE event_id = $1 ORDER BY id", (event_id,)
    )
    return [(r[0], r[1], r[2]) for r in rows]


@pytest.fixture
async def pair(pg_url: str, clock: FakeClock) -> AsyncIterator[tuple[Instance, Instance]]:
    a_db, b_db = await open_database(pg_url, Path()), await open_database(pg_url, Path())
    a, b = Instance(a_db, clock, "a"), Instance(b_db, clock, "b")
    yield a, b
    for i in (a, b):
        await i.close()
    await a_db.close()
    await b_db.close()


async def test_a_started_command_of_a_dead_instance_is_reported_never_run_again(
    pair: tuple[Instance, Instance],
) -> None:
    a, b = pair
    await a.beat()
    await b.beat()
    await killed_mid_command(a, ev("!deploy production", "E1"))
    await a.beat(age_s=60.0)  # a is dead
    await b.takeover.sweep()
    await b.bus.drain(5)
    assert b.ran == []  # not run again
    [notice] = await b.lines()
    assert "may or may not have finished" in str(notice["text"])
    assert "instance a stopped" in str(notice["text"])
    # the exact text that runs it again, last (a code block on the platforms)
    assert str(notice["text"]).splitlines()[-1] == "!deploy production"
    assert (notice["channel"], notice["reply_to"]) == ("ops", "m1")  # on the command
    # one row: here the "kill" let a's audit write it (a cancelled command is interrupted
    # too); after a real kill -9 the survivor writes it (tests/test_ha_effects.py)
    assert [r[:2] for r in await audit_rows(b.db, "E1")] == [("deploy", "interrupted")]
    assert (b.takeover.interrupted, b.takeover.resumed) == (1, 0)
    await b.takeover.sweep()  # reported once: nothing left
    assert b.takeover.interrupted == 1 and await b.ledger.orphans(5.0, 3600) == []
    # a redelivery of the same event is still a duplicate on either instance
    assert await b.bus.handle(ev("!deploy production", "E1")) == []
    assert b.ran == [] and await a.lines() == []


async def test_a_command_without_effects_is_still_taken_over_and_run(
    pair: tuple[Instance, Instance],
) -> None:
    a, b = pair
    await a.beat()
    await killed_mid_command(a, ev("!echo hello", "E2"))
    await a.beat(age_s=60.0)
    await b.beat()
    await b.takeover.sweep()
    await b.bus.drain(5)
    assert [line["text"] for line in await b.lines()] == ["echo hello"]
    assert (b.takeover.interrupted, b.takeover.resumed) == (0, 1)
    # nothing recorded as started for it, on either instance
    rows = await b.db.fetchall("SELECT started_at FROM events WHERE event_id = 'E2'")
    assert [r[0] for r in rows] == [None]


async def test_a_command_that_finished_but_was_not_answered_says_how_it_ended(
    pair: tuple[Instance, Instance],
) -> None:
    a, b = pair
    await a.beat(age_s=60.0)
    event = ev("!deploy staging", "E3")
    # what a left behind: claimed, started, its audit row written, killed before answering
    assert await a.ledger.claim("console", "E3", '{"unused": 1}')
    assert await a.ledger.started("console", "E3", inbound_to_json(event))
    await a.audit.append(_row(event, Outcome.FAILED, "exit 3 after 1.0 s", a.ledger.clock.now()))
    await b.beat()
    await b.takeover.sweep()
    [notice] = await b.lines()
    assert "before its answer went out" in str(notice["text"])
    assert "failed (exit 3 after 1.0 s)" in str(notice["text"])
    assert [r[1] for r in await audit_rows(b.db, "E3")] == ["failed"]  # no second row
    assert b.ran == []


def _row(event: Inbound, outcome: Outcome, cause: str, at: datetime) -> AuditEntry:
    return AuditEntry(
        at=at, platform=event.platform, channel=event.channel, thread=event.thread,
        actor=event.actor.id, actor_name=event.actor.display, kind=event.kind,
        text=event.text, command="deploy", outcome=outcome, duration_ms=1000.0,
        event_id=event.event_id, ref="r1", cause=cause,
    )  # fmt: skip


async def test_answered_commands_leave_nothing_started(pair: tuple[Instance, Instance]) -> None:
    a, b = pair
    await a.beat()
    await a.bus.handle(ev("!deploy staging", "E4"))
    assert [line["text"] for line in await a.lines()] == ["deployed to staging"]
    await a.beat(age_s=60.0)
    await b.takeover.sweep()
    assert (b.takeover.interrupted, b.takeover.resumed) == (0, 0)
    assert [r[1] for r in await audit_rows(b.db, "E4")] == ["ok"]


async def test_sqlite_the_next_start_reports_what_the_last_run_left_started(
    tmp_path: Path, clock: FakeClock
) -> None:
    first_db = await open_database(None, tmp_path / "state.db")
    first = Instance(first_db, clock, "host:101")
    await first.bus.handle(ev("!deploy staging", "E5"))  # finished: nothing to report later
    await killed_mid_command(first, ev("!deploy production", "E6"))
    await killed_mid_command(first, ev("!echo hi", "E7"))  # no effects: nothing to say
    await first.outbox.close()
    await first_db.close()

    db = await open_database(None, tmp_path / "state.db")  # the restart
    try:
        second = Instance(db, clock, "host:202")
        await second.ledger.load()
        await second.takeover.sweep()
        [notice] = await second.lines()
        assert str(notice["text"]).splitlines()[-1] == "!deploy production"
        assert "host:101 stopped" in str(notice["text"])
        assert [r[1] for r in await audit_rows(db, "E6")] == ["interrupted"]
        await second.takeover.sweep()  # once
        assert second.takeover.interrupted == 1 and len(await second.lines()) == 1
        assert await second.bus.handle(ev("!deploy production", "E6")) == []  # still claimed
        assert second.ran == []
        await second.close()
    finally:
        await db.close()


async def test_sqlite_a_command_running_now_is_not_reported(
    tmp_path: Path, clock: FakeClock
) -> None:
    db = await open_database(None, tmp_path / "state.db")
    try:
        one = Instance(db, clock, "host:1")
        one.hold.clear()
        task = one.bus.submit(ev("!deploy production", "E8"))
        await eventually(lambda: one.ran, timeout=5)
        await one.takeover.sweep()  # its own, still running: not an orphan
        assert one.takeover.interrupted == 0
        one.hold.set()
        assert task is not None
        await task
        assert [line["text"] for line in await one.lines()] == ["deployed to production"]
        await one.close()
    finally:
        await db.close()


async def test_the_commands_with_outside_effects_are_the_marked_ones(
    tmp_path: Path, clock: FakeClock
) -> None:
    from chatopsd.app import App, Io
    from tests.conftest import make_config

    config = make_config(
        tmp_path, commands=[{"name": "deploy", "args": ["env"], "run": ["true", "{env}"]}]
    )
    app = App(config, clock=clock, io=Io(stdin=io.StringIO(""), stdout=io.StringIO()))
    await app.start()
    try:
        marked = {spec.name for spec in app.registry if spec.effects}
    finally:
        await app.stop()
    assert marked == {
        "deploy",  # a [[commands]] run (approved requests run through it too)
        "incident declare",  # a channel, a bridge, maybe an auto-publish
        *(f"incident {s}" for s in ("publish", "unpublish", "identified", "monitor")),
        *(f"incident {s}" for s in ("update", "escalate", "resolve", "close")),  # via hooks
        "incident tickets",
        "incident followup retry",
    }
