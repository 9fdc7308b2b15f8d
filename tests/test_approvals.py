"""Approvals through the running App: granted (command and reaction), rejected, self-approval
and wrong role refused, two approvals, expiry, confirmation, and a restart in between."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from chatopsd.core.grammar import tokenize
from chatopsd.features.approvals.rules import (
    Action,
    Person,
    Rule,
    command_line,
    quote,
    refusal,
    requirement,
    vote_for_emoji,
)
from chatopsd.features.approvals.service import ApprovalService
from tests.conftest import FakeClock
from tests.opsrig import OpsRig, texts
from tests.waiting import eventually


@pytest.fixture(autouse=True)
def _env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPS_OUT", str(tmp_path / "runs.jsonl"))


@pytest.fixture
async def rig(tmp_path: Path, clock: FakeClock) -> AsyncIterator[OpsRig]:
    r = await OpsRig(tmp_path, clock).start()
    yield r
    await r.stop()


def request_message(lines: list[dict[str, str]]) -> str:
    found = [
        line
        for line in lines
        if "Approval needed" in line.get("text", "") or "Confirm:" in line.get("text", "")
    ]
    assert found, lines
    return found[-1]["message_id"]


async def audit_outcomes(rig: OpsRig) -> list[str]:
    """Each row as actor:cause (what happened, in words); the outcome is checked on its own."""
    return [f"{r.actor}:{r.cause}" for r in await rig.app.audit.since(None)]


async def audit_rows(rig: OpsRig) -> list[tuple[str, str, str]]:
    return [(r.actor, r.outcome, r.cause or "") for r in await rig.app.audit.since(None)]


async def test_production_deploy_waits_for_a_lead_then_runs(rig: OpsRig) -> None:
    lines = await rig.say("carol", "!deploy api 1.2 production")
    assert "Approval needed: !deploy api 1.2 production" in texts(lines)
    assert "approve" in texts(lines) and "reject" in texts(lines)  # the buttons
    assert rig.runs() == []
    rid = await rig.pending_id()
    lines = await rig.say("bob", f"!approve {rid}")
    assert [r["argv"] for r in rig.runs()] == [["api", "1.2", "production"]]
    assert rig.runs()[0]["actor"] == "carol"  # it runs as the requester
    assert "finished OK (exit 0)" in texts(lines)
    outcomes = await audit_outcomes(rig)
    assert f"carol:requested approval {rid}" in outcomes
    assert f"bob:approved {rid}" in outcomes
    assert any(o.startswith("carol:exit 0") for o in outcomes)
    rows = await audit_rows(rig)
    assert ("carol", "pending", f"requested approval {rid}") in rows
    assert ("bob", "ok", f"approved {rid}") in rows
    assert any(r[:2] == ("carol", "ok") and r[2].startswith("exit 0") for r in rows)
    assert (await rig.app.part(ApprovalService).store.result(rid) or "").startswith("exit 0")
    # the grant is used up: approving again, or replaying the grant event, runs nothing more
    lines = await rig.say("bob", f"!approve {rid}")
    assert "already approved" in texts(lines)
    assert len(rig.runs()) == 1


async def test_staging_deploy_needs_no_approval(rig: OpsRig) -> None:
    await rig.say("carol", "!deploy api 1.2 staging")
    assert len(rig.runs()) == 1


async def test_approval_by_reaction(rig: OpsRig) -> None:
    lines = await rig.say("carol", "!deploy api 1.2 production")
    msg = request_message(lines)
    await rig.react("bob", "thinking_face", msg)  # not a vote
    assert rig.runs() == []
    lines = await rig.react("bob", "white_check_mark", msg)
    assert len(rig.runs()) == 1
    assert "finished OK" in texts(lines)


async def test_rejected_by_reaction_never_runs(rig: OpsRig) -> None:
    lines = await rig.say("carol", "!deploy api 1.2 production")
    rid = await rig.pending_id()
    lines = await rig.react("bob", "❌", request_message(lines))
    assert f"Request {rid} (!deploy api 1.2 production) was rejected by bob" in texts(lines)
    await rig.say("alice", f"!approve {rid}")
    assert rig.runs() == []
    assert f"bob:rejected {rid}" in await audit_outcomes(rig)


async def test_self_approval_is_refused(rig: OpsRig) -> None:
    # alice holds the lead role, but it is her own request
    lines = await rig.say("alice", "!deploy api 1.2 production")
    rid = await rig.pending_id()
    lines = await rig.say("alice", f"!approve {rid}")
    assert "you cannot approve your own request" in texts(lines)
    assert rig.runs() == []
    action = await rig.app.part(ApprovalService).store.get(rid)
    assert action is not None and action.state == "pending"
    assert any(
        o == "denied" and "refused: you cannot approve" in c for _, o, c in await audit_rows(rig)
    )


async def test_self_approval_by_reaction_is_refused(rig: OpsRig) -> None:
    lines = await rig.say("alice", "!deploy api 1.2 production")
    lines = await rig.react("alice", "white_check_mark", request_message(lines))
    assert "you cannot approve your own request" in texts(lines)
    assert lines[-1]["ephemeral"] is True
    assert rig.runs() == []


async def test_wrong_role_is_refused(rig: OpsRig) -> None:
    await rig.say("carol", "!deploy api 1.2 production")
    rid = await rig.pending_id()
    lines = await rig.say("dan", f"!approve {rid}")  # dan is a dba, not a lead
    assert "needs the role 'lead'" in texts(lines)
    assert rig.runs() == []
    await rig.say("bob", f"!approve {rid}")
    assert len(rig.runs()) == 1


async def test_migration_needs_two_distinct_approvers(rig: OpsRig) -> None:
    await rig.say("carol", "!migrate orders")
    rid = await rig.pending_id()
    lines = await rig.say("dan", f"!approve {rid}")
    await rig.say("dan", f"!approve {rid}")  # the same person twice is still one approval
    assert rig.runs() == []
    assert "1 of 2" in texts(lines)
    await rig.say("erin", f"!approve {rid}")
    assert [r["argv"] for r in rig.runs()] == [["orders"]]


async def test_rollback_needs_none_but_unruled_destructive_asks_to_confirm(rig: OpsRig) -> None:
    await rig.say("carol", "!rollback api")
    assert len(rig.runs()) == 1
    lines = await rig.say("carol", "!purge api")
    assert "Confirm: !purge api" in texts(lines)
    rid = await rig.pending_id()
    lines = await rig.say("bob", f"!approve {rid}")  # only the requester confirms
    assert "only the person who asked can confirm" in texts(lines)
    assert len(rig.runs()) == 1
    await rig.say("carol", f"!approve {rid}")
    assert [r["argv"] for r in rig.runs()] == [["api"], ["api"]]


async def test_button_click_approves(rig: OpsRig) -> None:
    await rig.say("carol", "!deploy api 1.2 production")
    rid = await rig.pending_id()
    await rig.say("bob", f"approve {rid}", kind="button")
    assert len(rig.runs()) == 1


async def test_expiry_posts_a_message_and_refuses_late_votes(rig: OpsRig) -> None:
    await rig.say("carol", "!deploy api 1.2 production")
    rid = await rig.pending_id()
    rig.clock.advance(899)
    await rig.app.part(ApprovalService).sweep()
    assert await rig.app.part(ApprovalService).store.pending() != []
    rig.clock.advance(2)
    await rig.app.part(ApprovalService).sweep()
    lines = await rig.settle()
    assert f"Request {rid} (!deploy api 1.2 production) expired after 15 min" in texts(lines)
    lines = await rig.say("bob", f"!approve {rid}")
    assert "already expired" in texts(lines)
    assert rig.runs() == []
    assert any(
        (a, o) == ("chatopsd", "failed") and c.startswith(f"expired {rid}")
        for a, o, c in await audit_rows(rig)
    )


async def test_vote_after_deadline_before_the_sweep_is_refused(rig: OpsRig) -> None:
    await rig.say("carol", "!deploy api 1.2 production")
    rid = await rig.pending_id()
    rig.clock.advance(901)
    lines = await rig.say("bob", f"!approve {rid}")
    assert "expired" in texts(lines)
    assert rig.runs() == []


async def test_pending_request_survives_a_restart(tmp_path: Path, clock: FakeClock) -> None:
    first = await OpsRig(tmp_path, clock).start()
    lines = await first.say("carol", "!deploy api 1.2 production")
    msg = request_message(lines)
    rid = await first.pending_id()
    await first.stop()

    second = await OpsRig(tmp_path, clock).start()
    try:
        assert (await second.app.part(ApprovalService).store.get(rid)) is not None
        assert "approvals-expire" in second.app.scheduler.jobs
        lines = await second.say("dan", f"!approve {rid}")
        assert "needs the role" in texts(lines)
        lines = await second.react("bob", "white_check_mark", msg)  # on the old message
        assert [r["argv"] for r in second.runs()] == [["api", "1.2", "production"]]
    finally:
        await second.stop()


async def test_expiry_after_a_restart(tmp_path: Path, clock: FakeClock) -> None:
    first = await OpsRig(tmp_path, clock).start()
    await first.say("carol", "!migrate orders")
    rid = await first.pending_id()
    await first.stop()
    clock.advance(3600)  # down for an hour
    second = await OpsRig(tmp_path, clock).start()
    try:
        await second.app.part(ApprovalService).sweep()
        lines = await second.settle()
        assert f"Request {rid} (!migrate orders) expired" in texts(lines)
        assert second.runs() == []
    finally:
        await second.stop()


async def test_granted_but_not_dispatched_resumes_once_after_restart(
    tmp_path: Path, clock: FakeClock
) -> None:
    first = await OpsRig(tmp_path, clock).start()
    await first.say("carol", "!deploy api 1.2 production")
    rid = await first.pending_id()
    first.app.part(ApprovalService).submit = lambda event: (
        None
    )  # the bus is gone mid-decision (shutdown)
    await first.say("bob", f"!approve {rid}")
    assert first.runs() == []
    await first.stop()
    second = await OpsRig(tmp_path, clock).start()
    try:
        await second.app.part(ApprovalService).sweep()
        await second.settle()
        await second.app.part(ApprovalService).sweep()  # a second sweep must not run it again
        await second.settle()
        assert [r["argv"] for r in second.runs()] == [["api", "1.2", "production"]]
    finally:
        await second.stop()


async def test_list_pending(rig: OpsRig) -> None:
    lines = await rig.say("carol", "!approvals")
    assert "No pending requests" in texts(lines)
    await rig.say("carol", "!migrate orders")
    lines = await rig.say("carol", "!approvals")
    assert "!migrate orders by carol, 0 of 2" in texts(lines)


# -- the pure rules -----------------------------------------------------------------------


def test_requirement_matrix() -> None:
    rules = [
        Rule("deploy", {"env": "production"}, 1, "lead"),
        Rule("migrate", {}, 2, "dba"),
        Rule("rollback", {}, 0),
    ]
    assert requirement(rules, "deploy", {"env": "Production"}, destructive=False).approvals == 1
    assert requirement(rules, "deploy", {"env": "staging"}, destructive=False).kind is None
    assert requirement(rules, "migrate", {}, destructive=False).approvals == 2
    assert requirement(rules, "rollback", {}, destructive=True).kind is None
    assert requirement(rules, "other", {}, destructive=True).kind == "confirm"


def test_refusal_rules() -> None:
    now = datetime(2026, 11, 23, tzinfo=UTC)
    a = Action(
        "abcde",
        "approval",
        "deploy x",
        "",
        "slack",
        "C1",
        None,
        Person("slack", "U1", "a@x.io"),
        "a",
        "lead",
        1,
        "pending",
        now,
        now + timedelta(minutes=15),
    )
    assert refusal(a, Person("slack", "U2"), "approve", True, now) is None
    assert "own request" in str(refusal(a, Person("slack", "U1"), "approve", True, now))
    # the same person on another platform, recognised by email
    assert "own request" in str(refusal(a, Person("discord", "9", "A@x.io"), "approve", True, now))
    assert "role" in str(refusal(a, Person("slack", "U2"), "approve", False, now))
    assert refusal(a, Person("slack", "U1"), "reject", False, now) is None  # withdraw
    assert "expired" in str(
        refusal(a, Person("slack", "U2"), "approve", True, now + timedelta(minutes=15))
    )


def test_emoji_and_quoting() -> None:
    assert vote_for_emoji(":white_check_mark:") == "approve"
    assert vote_for_emoji("✅") == "approve"
    assert vote_for_emoji("x") == "reject"
    assert vote_for_emoji("tada") is None
    for word in ["plain", "two words", 'say "hi"', "it's", "back\\slash", ""]:
        assert tokenize(quote(word)) == [word]
    assert tokenize(command_line("incident declare", ["API errors", "--sev"])) == [
        "incident",
        "declare",
        "API errors",
        "--sev",
    ]


async def test_approved_run_waits_for_a_busy_slot_instead_of_being_lost(
    rig: OpsRig, tmp_path: Path
) -> None:
    import asyncio

    first = rig.app.bus.submit(rig.event("alice", "!slow wait"))
    assert first is not None
    await eventually(lambda: rig.runs(), timeout=3)
    await rig.app.bus.handle(rig.event("carol", "!slow gated"))
    rid = await rig.pending_id()
    await rig.app.bus.handle(rig.event("bob", f"!approve {rid}"))
    for _ in range(100):
        await rig.app.outbox.flush(1)
        if "waits for the running one" in texts(rig.new_lines()):
            break
        await asyncio.sleep(0.01)
    else:
        raise AssertionError("the approved run did not say it waits")
    assert len(rig.runs()) == 1
    (tmp_path / "runs.jsonl.gate").write_text("go")
    await rig.settle()
    assert [r["argv"] for r in rig.runs()] == [["wait"], ["gated"]]


async def test_two_instances_counting_votes_at_once_decide_and_run_once(
    tmp_path: Path, clock: FakeClock, pg_url: str
) -> None:
    # Two instances on one PostgreSQL; dan's vote lands on one, erin's on the other, at the
    # same moment. Each may see both votes: the request is still approved and run once.
    rigs = []
    for name in ("a", "b"):
        home = tmp_path / name
        home.mkdir()
        rigs.append(
            await OpsRig(
                home, clock, chatopsd={"database": pg_url, "instance": name, "lease_seconds": 5}
            ).start()
        )
    a, b = rigs
    a.record = b.record = tmp_path / "runs.jsonl"  # where the target records (OPS_OUT)
    try:
        await a.say("carol", "!migrate users")
        rid = await a.pending_id()
        await asyncio.gather(a.say("dan", f"!approve {rid}"), b.say("erin", f"!approve {rid}"))
        await eventually(
            lambda: a.runs() and not (a.app.bus.in_flight or b.app.bus.in_flight), timeout=6
        )
        await asyncio.gather(a.settle(), b.settle())
        assert [r["argv"] for r in a.runs()] == [["users"]]
        decided = [r for r in await a.app.audit.since(None) if (r.cause or "") == f"approved {rid}"]
        assert len(decided) == 1, decided
        said = texts(a.new_lines() + b.new_lines())
        assert said.count("finished OK") <= 1
    finally:
        for r in rigs:
            await r.stop()
