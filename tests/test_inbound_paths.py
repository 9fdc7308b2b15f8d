"""Every path to an action passes the same checks.

A typed message, a slash command, a button click and a reaction that stands for the same
command get the same decision and leave the same audit row; bot reactions never count;
refusals are rate limited and never jump the outbox queue; an approved command runs even when
its requester is out of rate-limit tokens.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from chatopsd.core.messages import Actor, Destination, Inbound, Priority, Reply, Sent
from chatopsd.core.ports import AuditEntry
from chatopsd.features.approvals.service import ApprovalService
from chatopsd.features.incidents.store import SqlIncidentStore
from tests.conftest import FakeClock
from tests.opsrig import OpsRig, texts
from tests.waiting import eventually

KINDS = ("message", "slash", "button", "reaction")
ROLES = ("bob", "carol")  # bob holds "lead" (tests/opsrig.py), carol holds nothing
CHANNELS = ("ops", "random")  # only ops is in auth.mutating_channels

AUTH = {
    "auth": {
        "command_roles": {"incident escalate": "lead", "deploy": "lead"},
        "mutating_channels": ["console:ops"],
    },
    "ratelimit": {"burst": 100, "per_minute": 60},
}


@pytest.fixture(autouse=True)
def _env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPS_OUT", str(tmp_path / "runs.jsonl"))


@pytest.fixture
async def rig(tmp_path: Path, clock: FakeClock) -> AsyncIterator[OpsRig]:
    r = await OpsRig(tmp_path, clock, **AUTH).start()
    yield r
    await r.stop()


_ids = itertools.count(1)


async def declare(rig: OpsRig, title: str) -> tuple[str, str]:
    """A fresh SEV-3 incident declared by alice in ops; its id and its announcement's id."""
    await rig.say("alice", f'!incident declare --sev 3 "{title}"')
    newest = max(await rig.app.part(SqlIncidentStore).open(), key=lambda i: i.id)
    [announce] = await rig.app.part(SqlIncidentStore).messages(newest.id, "announce")
    return newest.id, announce.message_id


def inbound(kind: str, actor: Actor, channel: str, incident: str, message_id: str) -> Inbound:
    n = next(_ids)
    if kind == "reaction":
        return Inbound(
            "console",
            channel,
            actor,
            "arrow_up",
            kind="reaction",
            event_id=f"r{n}",
            message_id=message_id,
        )
    text = f"incident escalate {incident}"
    return Inbound(
        "console",
        channel,
        actor,
        f"!{text}" if kind == "message" else text,
        kind=kind,  # type: ignore[arg-type]
        event_id=f"{kind}{n}",
    )


def row_shape(row: AuditEntry) -> tuple[str, str, str, str]:
    return (row.command, row.outcome.split(":")[0], row.actor, row.channel)


async def test_every_inbound_kind_gets_the_same_decision_and_audit_row(rig: OpsRig) -> None:
    decisions: dict[tuple[str, str], dict[str, Any]] = {}
    for role, channel in itertools.product(ROLES, CHANNELS):
        for kind in KINDS:
            incident, message_id = await declare(rig, f"{kind} {role} {channel}")
            event = inbound(kind, Actor(role, role), channel, incident, message_id)
            await rig.app.bus.handle(event)
            await rig.settle()
            found = await rig.app.part(SqlIncidentStore).get(incident)
            assert found is not None
            rows = [r for r in await rig.app.audit.since(None) if r.event_id == event.event_id]
            seen = {"sev": found.sev, "audit": [row_shape(r) for r in rows]}
            decisions.setdefault((role, channel), {})[kind] = seen
    for (role, channel), by_kind in decisions.items():
        allowed = role == "bob" and channel == "ops"
        expected = {
            "sev": "SEV-2" if allowed else "SEV-3",
            "audit": [
                ("incident escalate", "ok" if allowed else "denied", role, channel),
            ],
        }
        assert by_kind == {kind: expected for kind in KINDS}, (role, channel)


async def test_reaction_refusal_is_told_only_to_the_reactor(rig: OpsRig) -> None:
    _incident, message_id = await declare(rig, "private refusal")
    lines = await rig.react("carol", "arrow_up", message_id)
    assert "needs the role 'lead'" in texts(lines)
    assert all(line["ephemeral"] for line in lines)


async def test_bot_reactions_never_count(rig: OpsRig) -> None:
    incident, message_id = await declare(rig, "bots")
    robot = Actor("bob", "bob", is_bot=True)  # even a bot that holds the role
    await rig.app.bus.handle(
        Inbound(
            "console",
            "ops",
            robot,
            "arrow_up",
            kind="reaction",
            event_id="rb",
            message_id=message_id,
        )
    )
    await rig.settle()
    found = await rig.app.part(SqlIncidentStore).get(incident)
    assert found is not None and found.sev == "SEV-3"
    assert not [r for r in await rig.app.audit.since(None) if r.event_id == "rb"]


async def test_a_bot_check_mark_is_never_an_approval(rig: OpsRig) -> None:
    lines = await rig.say("alice", "!deploy api 1.2 production")
    request = next(line for line in lines if "Approval needed" in line["text"])
    rid = await rig.pending_id()
    robot = Actor("bob", "bob", is_bot=True)
    await rig.app.bus.handle(
        Inbound(
            "console",
            "ops",
            robot,
            "white_check_mark",
            kind="reaction",
            event_id="bot-ok",
            message_id=request["message_id"],
        )
    )
    await rig.settle()
    action = await rig.app.part(ApprovalService).store.get(rid)
    assert action is not None and action.state == "pending"
    assert rig.runs() == []


async def test_reaction_approval_goes_through_the_chain(rig: OpsRig) -> None:
    await rig.say("carol", "!deploy api 1.2 staging")  # carol may ask; no approval needed
    # deploy needs "lead" (command_roles): carol's request is refused before any approval
    lines = await rig.say("carol", "!deploy api 1.2 production")
    assert "needs the role 'lead'" in texts(lines)
    lines = await rig.say("alice", "!deploy api 1.2 production")
    request = next(line for line in lines if "Approval needed" in line["text"])
    rid = await rig.pending_id()
    lines = await rig.react("bob", "white_check_mark", request["message_id"])
    assert "finished OK" in texts(lines)
    rows = await rig.app.audit.since(None)
    # the reaction was audited as the command it stands for, like a typed `!approve`
    assert any(
        (r.kind, r.command, r.text, r.outcome) == ("reaction", "approve", f"approve {rid}", "ok")
        for r in rows
    )


# -- item 4: refusals are rate limited and do not jump the queue -------------------------------


class GatedChat:
    """A chat platform whose sending waits until the test opens the gate, so everything the
    bus produces is queued first and the outbox's order can be read back. (A chat platform,
    not the console: the console is the operator and never rate limited.)"""

    platform = "mattermost"

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.sent: list[tuple[Destination, Reply]] = []
        self._n = itertools.count(1)

    async def run(self, session: Any) -> None:
        session.ready()
        await asyncio.Event().wait()

    async def send(self, destination: Destination, reply: Reply) -> Sent | None:
        await self.gate.wait()
        self.sent.append((destination, reply))
        return Sent(destination, f"g{next(self._n)}")

    async def edit(self, sent: Sent, reply: Reply) -> None:
        await self.gate.wait()

    async def close(self) -> None:
        return None


async def test_refused_page_flood_is_rate_limited_and_queued_behind_a_real_page(
    tmp_path: Path, clock: FakeClock
) -> None:
    from chatopsd.outbox import Outbox

    rig = await OpsRig(
        tmp_path,
        clock,
        auth={"paging_channels": ["mattermost:incidents"]},
        ratelimit={"burst": 5, "per_minute": 6},
    ).start()
    try:
        chat = GatedChat()
        old = rig.app.outbox
        rig.app.outbox = rig.app.bus.outbox = Outbox({"mattermost": chat})  # type: ignore[dict-item]
        await old.close()
        for i in range(200):
            await rig.app.bus.handle(
                Inbound(
                    "mattermost",
                    "random",
                    Actor("mallory", "mallory"),
                    "!ic page",
                    event_id=f"m{i}",
                )
            )
        # `!ic page` posts "Paging…" and waits for it to be posted, so it runs beside the
        # gate: once its notice is queued, the gate opens.
        before = rig.app.outbox.depth
        legit = asyncio.create_task(
            rig.app.bus.handle(
                Inbound(
                    "mattermost", "incidents", Actor("alice", "alice"), "!ic page", event_id="legit"
                )
            )
        )
        await eventually(lambda: rig.app.outbox.depth > before, timeout=5)
        chat.gate.set()
        await asyncio.wait_for(legit, 10)
        await rig.app.outbox.flush(5)
        to_mallory = [r for d, r in chat.sent if d.actor == "mallory"]
        # burst refusals and one "easy there"; the other 194 are audited, not answered
        assert len(to_mallory) == 6
        assert all(r.priority == Priority.NORMAL and r.ephemeral for r in to_mallory)
        first_legit = next(i for i, (d, _) in enumerate(chat.sent) if d.actor == "alice")
        # the real page's answer left before every queued refusal: only the one the outbox
        # worker had already taken (blocked in send at the gate) went before it
        assert first_legit <= 1
        rows = [r for r in await rig.app.audit.since(None) if r.actor == "mallory"]
        assert len(rows) == 200
        assert sum(r.outcome == "denied" for r in rows) == 5
    finally:
        await rig.stop()


# -- item 5: an approved command is never lost ----------------------------------------------


async def test_approved_command_runs_even_when_the_requester_is_rate_limited(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPS_OUT", str(tmp_path / "runs.jsonl"))
    rig = await OpsRig(tmp_path, clock, ratelimit={"burst": 3, "per_minute": 1}).start()
    try:
        await rig.say("carol", "!deploy api 1.2 production")
        rid = await rig.pending_id()
        for _ in range(5):  # carol spends every token she has (and then some)
            await rig.say("carol", "!approvals")
        lines = await rig.say("bob", f"!approve {rid}")
        assert [r["argv"] for r in rig.runs()] == [["api", "1.2", "production"]]
        assert "finished OK (exit 0)" in texts(lines)
        assert (await rig.app.part(ApprovalService).store.result(rid) or "").startswith("exit 0")
        grant = [r for r in await rig.app.audit.since(None) if r.event_id == f"approval:{rid}"]
        assert [r.outcome for r in grant if r.kind != "run"] == ["ok"]
        # a replay of the grant's event id from outside is no grant: it is deduped anyway,
        # and a fresh id with the same shape is rate limited like anything carol sends
        assert not rig.app.part(ApprovalService).is_grant(
            Inbound("console", "ops", Actor("carol"), "deploy", event_id=f"approval:{rid}")
        )
    finally:
        await rig.stop()


async def test_a_grant_refused_when_it_comes_to_run_is_recorded_as_not_run(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPS_OUT", str(tmp_path / "runs.jsonl"))
    rig = await OpsRig(tmp_path, clock).start()
    try:
        await rig.say("carol", "!deploy api 1.2 production")
        rid = await rig.pending_id()
        # carol loses the right to deploy before bob approves: the grant is re-authorized
        from tests.opsrig import ops_config

        rig.app.reload(ops_config(tmp_path, auth={"command_roles": {"deploy": "lead"}}))
        lines = await rig.say("bob", f"!approve {rid}")
        assert "needs the role 'lead'" in texts(lines)
        assert rig.runs() == []
        await eventually(lambda: rig.app.part(ApprovalService).store.result(rid), timeout=1)
        result = await rig.app.part(ApprovalService).store.result(rid)
        assert result == f"not run: see the audit row of event approval:{rid}"
        [row] = [r for r in await rig.app.audit.since(None) if r.event_id == f"approval:{rid}"]
        assert row.outcome.startswith("denied")
    finally:
        await rig.stop()
