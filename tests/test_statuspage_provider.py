"""A status page provider added by following ARCHITECTURE.md's recipe: an in-memory page
behind the StatusPageProvider port (features/statuspage/api.py), under the real incident and
status page commands, store, queue and bus. What it receives is the port's neutral vocabulary
only: no Statuspage request body, impact or component status name reaches it.

The injected clock drives the queue's waits: a test moves time and drains, nothing sleeps."""

from __future__ import annotations

import io
import itertools
from collections.abc import AsyncIterator

import pytest

from chatopsd.connectors.console import ConsoleConnector
from chatopsd.core.bus import Bus
from chatopsd.core.capabilities import Capabilities
from chatopsd.core.commands import Registry
from chatopsd.core.messages import Actor, Inbound, Reply
from chatopsd.features.incidents.commands import IncidentHandler, IncidentSettings
from chatopsd.features.incidents.store import SqlIncidentStore
from chatopsd.features.statuspage.api import (
    PageCall,
    PageIncident,
    StatusPageError,
    StatusPageProvider,
)
from chatopsd.features.statuspage.commands import PublicStatus
from chatopsd.features.statuspage.store import SqlitePublications
from chatopsd.outbox import Outbox
from chatopsd.store.audit import SqlAuditLog
from chatopsd.store.sqlite import Database
from tests.conftest import FakeClock

INC = "INC-2026-0001"


class MemoryPage:
    """A status page in memory: it records each call and answers like a page would."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, PageCall | None]] = []
        self.incidents: dict[str, tuple[str, PageIncident]] = {}  # id -> (ours, page's)
        # raised by the next writes, in order: one that is `maybe_done` after taking effect
        self.fail: list[StatusPageError] = []
        self._ids = itertools.count(1)

    def _refused(self) -> StatusPageError | None:
        error = self.fail.pop(0) if self.fail else None
        if error is not None and not error.maybe_done:
            raise error
        return error

    async def create(self, incident_id: str, call: PageCall) -> PageIncident:
        self.calls.append(("create", incident_id, call))
        lost = self._refused()
        page = PageIncident(f"pg{next(self._ids)}", call.status, "https://status.test/x")
        self.incidents[page.id] = (incident_id, page)
        if lost is not None:
            raise lost
        return page

    async def update(self, page_incident_id: str, call: PageCall) -> PageIncident:
        self.calls.append(("update", page_incident_id, call))
        lost = self._refused()
        ours, page = self.incidents[page_incident_id]
        page = PageIncident(page.id, call.status, page.shortlink, (call.status, call.message or ""))
        self.incidents[page.id] = (ours, page)
        if lost is not None:
            raise lost
        return page

    async def get(self, page_incident_id: str) -> PageIncident:
        self.calls.append(("get", page_incident_id, None))
        return self.incidents[page_incident_id][1]

    async def find(self, incident_id: str) -> PageIncident | None:
        self.calls.append(("find", incident_id, None))
        return next((p for ours, p in self.incidents.values() if ours == incident_id), None)


class Rig:
    def __init__(self, db: Database, clock: FakeClock, page: StatusPageProvider) -> None:
        self.clock = clock
        self.outbox = Outbox({"console": ConsoleConnector(fmt="jsonl", stdout=io.StringIO())})
        self.incidents = IncidentHandler(
            SqlIncidentStore(db), self.outbox, clock, IncidentSettings(), Capabilities()
        )
        self.public = PublicStatus(
            SqlitePublications(db),
            self.incidents,
            page,
            self.outbox,
            SqlAuditLog(db),
            clock,
            components={"payments": "cmp_pay", "api": "cmp_api"},
            auto_publish=("SEV-1",),
        )
        self.incidents.hooks.append(self.public)
        registry = Registry([*self.incidents.commands(), *self.public.commands()])
        self.bus = Bus(registry, [], self.outbox)
        self._n = itertools.count(1)

    async def say(self, text: str) -> Reply:
        n = next(self._n)
        event = Inbound("console", "ops", Actor("ada", "ada"), text, event_id=f"e{n}")
        [reply, *_] = await self.bus.handle(event)
        return reply

    async def tick(self, seconds: float = 1.0) -> None:
        self.clock.advance(seconds)
        await self.public.drain()


@pytest.fixture
def page() -> MemoryPage:
    return MemoryPage()


@pytest.fixture
async def rig(db: Database, clock: FakeClock, page: MemoryPage) -> AsyncIterator[Rig]:
    running = Rig(db, clock, page)
    yield running
    await running.outbox.close()


async def test_the_lifecycle_reaches_the_provider_in_neutral_calls(
    rig: Rig, page: MemoryPage
) -> None:
    await rig.say('!incident declare --sev 1 "Payments failing" --service payments')
    await rig.tick()  # auto-published: SEV-1 is in auto_publish
    await rig.say(f'!incident update {INC} checked the db --public "Card payments fail"')
    await rig.tick()
    await rig.say(f"!incident ack {INC}")
    await rig.tick()
    await rig.say(f"!incident resolve {INC} rolled back")
    await rig.tick()
    assert page.calls == [
        (
            "create",
            INC,
            PageCall(
                "investigating",
                components=("cmp_pay",),
                severity=1,
                name="Service disruption: payments",  # never the internal title
            ),
        ),
        ("update", "pg1", PageCall("investigating", "Card payments fail", ("cmp_pay",))),
        ("update", "pg1", PageCall("identified", None, ("cmp_pay",))),
        ("update", "pg1", PageCall("resolved", None, ("cmp_pay",))),
    ]
    reply = await rig.say(f"!incident status {INC}")
    assert dict(reply.fields)["Status page"] == "resolved https://status.test/x"


async def test_an_escalation_sends_the_new_severity_without_notifying(
    rig: Rig, page: MemoryPage
) -> None:
    await rig.say('!incident declare --sev 3 "Slow checkout" --service payments')
    await rig.say(f'!incident publish {INC} "Checkout is slow" --components payments,api')
    await rig.tick()
    reply = await rig.say(f"!incident escalate {INC} SEV-1")
    assert "SEV-1" in reply.text, reply.text
    await rig.tick()
    # published by hand without --title: the configured public name, not the internal title
    name = "Service disruption: payments"
    assert [c for _, _, c in page.calls] == [
        PageCall("investigating", "Checkout is slow", ("cmp_pay", "cmp_api"), 3, name),
        PageCall("investigating", None, ("cmp_pay", "cmp_api"), 1, None, notify=False),
    ]


async def test_the_queue_follows_the_ports_errors(rig: Rig, page: MemoryPage) -> None:
    """slow_down waits what the page asked; maybe_done looks before sending again."""
    page.fail = [
        StatusPageError("slow down", slow_down=True, retry_after=7),
        StatusPageError("answer lost", maybe_done=True),
    ]
    await rig.say('!incident declare --sev 1 "Payments failing" --service payments')
    await rig.tick()
    assert [kind for kind, _, _ in page.calls] == ["create"]  # refused: slow down
    await rig.tick(6)
    assert [kind for kind, _, _ in page.calls] == ["create"]  # 7 s have not passed
    await rig.tick(1)
    assert [kind for kind, _, _ in page.calls] == ["create", "create"]  # it may exist now
    await rig.tick(10)
    # the page has it (the lost answer's create took effect): found, not created again
    assert [kind for kind, _, _ in page.calls] == ["create", "create", "find"]
    assert len(page.incidents) == 1
    reply = await rig.say(f"!incident status {INC}")
    assert dict(reply.fields)["Status page"].startswith("investigating")
