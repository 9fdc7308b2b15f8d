"""Follow-ups, their tickets (GitHub and Jira fakes validating against the published specs),
📌/📝 reactions, and the video bridge, end to end on the console App."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from chatopsd.app import App, Io
from chatopsd.core.messages import Actor, Inbound, Reply
from chatopsd.features.incidents.commands import IncidentHandler
from tests.conftest import FakeClock, make_config
from tests.fakes.tickets import JIRA_EMAIL, TOKEN, FakeTrackers

INC = "INC-2026-0001"


@pytest.fixture
async def trackers() -> AsyncIterator[FakeTrackers]:
    server = FakeTrackers()
    await server.start()
    yield server
    await server.close()
    assert server.violations == []


async def start(tmp_path: Path, clock: FakeClock, tickets: dict[str, Any], **more: Any) -> App:
    cfg = make_config(
        tmp_path,
        **more,
        console={"format": "jsonl"},
        tickets=tickets,
        incidents={"bridge_url": "https://meet.example.com/{incident_id}"},
        ratelimit={"burst": 100},
    )
    app = App(cfg, clock=clock, io=Io(stdin=io.StringIO(""), stdout=io.StringIO()))
    await app.start()
    return app


@pytest.fixture
async def app(tmp_path: Path, trackers: FakeTrackers, clock: FakeClock) -> AsyncIterator[App]:
    running = await start(
        tmp_path,
        clock,
        {
            "kind": "github",
            "url": trackers.url,
            "token": TOKEN,
            "project": "acme/infra",
            "labels": ["incident-followup"],
            "incident_url": "https://wiki.example.com/incidents/{incident_id}",
        },
    )
    yield running
    await running.stop()


_n = iter(range(1, 10_000))


def ev(text: str, **kw: Any) -> Inbound:
    n = next(_n)
    return Inbound(
        "console", "ops", Actor("alice", "alice"), text, event_id=f"f{n}", message_id=f"m{n}", **kw
    )


async def say(app: App, text: str) -> Reply:
    replies = await app.bus.handle(ev(text))
    assert replies, text
    return replies[0]


def printed(app: App) -> str:
    """Everything the console printed (jsonl), as text."""
    out = app.outbox.connectors["console"].stdout.getvalue()  # type: ignore[attr-defined]
    return "\n".join(json.loads(line)["text"] for line in out.splitlines())


async def declare_and_resolve(app: App) -> None:
    await say(app, '!incident declare --sev 2 "Payments failing"')
    await say(app, f"!incident followup add {INC} add an alert on queue depth --owner @bob")
    await say(app, f"!incident followup add {INC} runbook for failover")
    await say(app, f'!incident followup add {INC} "load test the new pool"')
    await say(app, f"!incident resolve {INC} rolled back")


async def test_three_followups_become_three_tickets_once(app: App, trackers: FakeTrackers) -> None:
    await declare_and_resolve(app)
    listing = await say(app, f"!incident followup list {INC}")
    assert listing.fields[0] == ("1. add an alert on queue depth", "owner @bob")
    await say(app, f"!incident close {INC}")
    await app.outbox.flush(5)
    assert [i["title"] for i in trackers.github] == [
        f"[{INC}] add an alert on queue depth",
        f"[{INC}] runbook for failover",
        f"[{INC}] load test the new pool",
    ]
    first = trackers.github[0]
    assert first["labels"] == ["incident-followup"]
    assert f"incident {INC} [SEV-2] Payments failing" in first["body"]
    assert f"[{INC}](https://wiki.example.com/incidents/{INC})" in first["body"]
    assert "Owner: @\u200bbob" in first["body"]  # reads "@bob", notifies nobody
    assert trackers.mentions == []
    assert "Follow-up 3 → #3 https://github.com/acme/infra/issues/3" in printed(app)

    # a second close is refused, and exporting again creates nothing
    again = await say(app, f"!incident close {INC}")
    assert "is closed" in again.text
    rerun = await say(app, f"!incident tickets {INC}")
    assert rerun.text == f"{INC}: no open follow-ups without a ticket."
    assert len(trackers.github) == 3

    rows = await app.db.fetchall(
        "SELECT command, outcome || coalesce(': ' || nullif(cause, ''), '') "  # outcome: cause
        "FROM audit WHERE kind = 'ticket' ORDER BY id"
    )
    assert [(r[0], r[1]) for r in rows] == [
        ("tickets create (GitHub)", f"ok: #{n} https://github.com/acme/infra/issues/{n}")
        for n in (1, 2, 3)
    ]

    # the postmortem comes after close, and finds more to do
    late = await say(app, f"!incident followup add {INC} review paging policy")
    assert late.text == f"{INC} follow-up 4 added: review paging policy"
    more = await say(app, f"!incident tickets {INC}")
    assert more.text == "Follow-up 4 → #4 https://github.com/acme/infra/issues/4"

    export = await say(app, f"!incident export {INC}")
    assert export.code is not None
    row = "| add an alert on queue depth | @bob | [\\#1](https://github.com/acme/infra/issues/1) |"
    assert row in export.code
    assert "| TODO | | |" not in export.code


async def test_done_followups_are_not_exported(app: App, trackers: FakeTrackers) -> None:
    await declare_and_resolve(app)
    await say(app, f"!incident followup done {INC} 2")
    reply = await say(app, f"!incident tickets {INC}")
    assert "Follow-up 2" not in reply.text
    assert len(trackers.github) == 2
    missing = await say(app, f"!incident followup done {INC} 9")
    assert missing.text.startswith(f"{INC} has no follow-up 9")


async def test_a_failed_ticket_is_retried_a_lost_answer_is_not(
    app: App, trackers: FakeTrackers
) -> None:
    await declare_and_resolve(app)
    trackers.fault = "500"
    reply = await say(app, f"!incident tickets {INC}")
    assert "Follow-up 1: no ticket: HTTP 500 from GitHub" in reply.text
    assert len(trackers.github) == 2  # 2 and 3 went through
    failed = await app.db.fetchall(
        "SELECT outcome || coalesce(': ' || nullif(cause, ''), '') "  # outcome: cause
        "FROM audit WHERE kind = 'ticket' ORDER BY id"
    )
    assert failed[0][0].startswith("failed: HTTP 500 from GitHub")
    trackers.fault, trackers.fault_times = "drop-after", 1
    await say(app, f"!incident followup add {INC} fourth")
    reply = await say(app, f"!incident tickets {INC}")
    # 1 is sent again (the 500 certainly created nothing); this time its answer is lost
    assert "Follow-up 1: no ticket:" in reply.text and "(unconfirmed" in reply.text
    assert "Follow-up 4 → #4 https://github.com/acme/infra/issues/4" in reply.text
    assert len(trackers.github) == 4  # the tracker did create 1
    again = await say(app, f"!incident tickets {INC}")
    assert again.text.startswith("Follow-up 1: unconfirmed, not sent again")
    assert f"!incident followup retry {INC} 1" in again.text
    assert len(trackers.github) == 4
    listing = await say(app, f"!incident followup list {INC}")
    assert listing.fields[0][1] == "owner @bob, ticket unconfirmed"
    # a person looked, found nothing (say), and asks for it on purpose
    retried = await say(app, f"!incident followup retry {INC} 1")
    assert retried.text.startswith("Follow-up 1 → #5")
    assert len(trackers.github) == 5


async def test_jira_tickets_carry_an_adf_description(
    tmp_path: Path, trackers: FakeTrackers, clock: FakeClock
) -> None:
    app = await start(
        tmp_path,
        clock,
        {
            "kind": "jira",
            "url": trackers.url,
            "token": TOKEN,
            "email": JIRA_EMAIL,
            "project": "OPS",
            "labels": ["incident followup"],
            "incident_url": "https://wiki.example.com/incidents/{incident_id}",
        },
    )
    try:
        await declare_and_resolve(app)
        await say(app, f"!incident close {INC}")
        assert trackers.jira[0]["fields"]["summary"] == (f"[{INC}] add an alert on queue depth")
        fields = trackers.jira[0]["fields"]
        assert fields["project"] == {"key": "OPS"} and fields["labels"] == ["incident-followup"]
        assert fields["description"]["type"] == "doc"
        export = await say(app, f"!incident export {INC}")
        assert export.code is not None and f"[OPS-1]({trackers.url}/browse/OPS-1)" in export.code
    finally:
        await app.stop()


async def test_reactions_pin_to_the_timeline_and_add_followups(app: App) -> None:
    await say(app, '!incident declare "Checkout down"')
    [home] = await app.db.fetchall("SELECT channel, thread FROM incident_channels")
    thread = home["thread"]
    for emoji, ref in (("pushpin", "m900"), ("memo", "m901"), ("thumbsup", "m902")):
        await app.bus.handle(
            Inbound(
                "console",
                "ops",
                Actor("bob", "bob"),
                emoji,
                kind="reaction",
                event_id=f"r-{ref}",
                thread=thread,
                message_id=ref,
            )
        )
    timeline = await app.part(IncidentHandler).store.timeline(INC)
    assert [e.text for e in timeline if e.kind == "pinned"] == ["📌 message m900"]
    assert timeline[-1].actor == "bob"
    listing = await say(app, f"!incident followup list {INC}")
    assert [f[0] for f in listing.fields] == ["1. see message m901"]
    # the reaction became a command: audited like one
    rows = await app.db.fetchall("SELECT command, actor FROM audit WHERE command = 'incident pin'")
    assert [(r[0], r[1]) for r in rows] == [("incident pin", "bob")]
    # a reaction outside any incident's channel does nothing
    await app.bus.handle(
        Inbound("console", "elsewhere", Actor("bob"), "pushpin", kind="reaction", message_id="x")
    )
    assert len(await app.part(IncidentHandler).store.timeline(INC)) == len(timeline)


async def test_bridge_link_is_posted_and_shown_in_the_status(app: App) -> None:
    await say(app, '!incident declare "Checkout down"')
    await app.outbox.flush(5)
    assert f"Video bridge: https://meet.example.com/{INC}" in printed(app)
    status = await say(app, f"!incident status {INC}")
    assert ("Bridge", f"https://meet.example.com/{INC}") in status.fields


async def test_a_daemon_stopped_while_creating_a_ticket_does_not_send_it_twice(
    tmp_path: Path, trackers: FakeTrackers, clock: FakeClock
) -> None:
    tickets = {"kind": "github", "url": trackers.url, "token": TOKEN, "project": "acme/infra"}
    grace = {"shutdown_grace_seconds": 0.2}
    app = await start(tmp_path, clock, tickets, chatopsd=grace)
    await say(app, '!incident declare "Checkout down"')
    await say(app, f"!incident followup add {INC} add a canary")
    trackers.fault = "hang"
    task = app.bus.submit(ev(f"!incident tickets {INC}"))
    assert task is not None
    await asyncio.wait_for(trackers.reached.wait(), 5)
    await app.stop()  # the command is cut off mid-request, as by a crash
    assert task.cancelled()

    app = await start(tmp_path, clock, tickets, chatopsd=grace)
    try:
        reply = await say(app, f"!incident tickets {INC}")
        assert reply.text.startswith("Follow-up 1: unconfirmed, not sent again")
        assert trackers.hits == 1 and trackers.github == []
    finally:
        await app.stop()


# Follow-up text that would notify people from the bot's account if exported verbatim.
MENTIONS = (
    "page @bob and @acme/oncall, then ask [~accountid:5b10ac8d82e05b22cc7d4ef5] (ada@example.com)"
)


@pytest.mark.parametrize("kind", ["github", "jira"])
async def test_exported_text_mentions_nobody_and_reads_as_typed(
    tmp_path: Path, trackers: FakeTrackers, clock: FakeClock, kind: str
) -> None:
    tickets: dict[str, Any] = {"kind": kind, "url": trackers.url, "token": TOKEN}
    if kind == "jira":
        tickets.update(project="OPS", email=JIRA_EMAIL)
    else:
        tickets.update(project="acme/infra")
    app = await start(tmp_path, clock, tickets)
    try:
        await say(app, '!incident declare --sev 2 "Payments failing, cc @release-team"')
        await say(app, f"!incident followup add {INC} {MENTIONS} --owner @carol")
        await say(app, f"!incident resolve {INC} rolled back")
        reply = await say(app, f"!incident tickets {INC}")
        assert reply.text.startswith("Follow-up 1 → ")
        assert trackers.mentions == []  # nobody is notified
        if kind == "github":
            [issue] = trackers.github
            title, body = issue["title"], issue["body"]
        else:
            [issue] = trackers.jira
            title = issue["fields"]["summary"]
            body = json.dumps(issue["fields"]["description"], ensure_ascii=False)
        shown = (title + body).replace("\u200b", "")  # what a reader sees
        assert f"[{INC}] {MENTIONS}" in shown
        assert "Owner: @carol" in shown and "cc @release-team" in shown
        assert "ada@example.com" in title  # an email address is left alone
    finally:
        await app.stop()


@pytest.mark.parametrize("kind", ["github", "jira"])
async def test_a_token_the_tracker_quotes_back_reaches_neither_chat_nor_the_audit_trail(
    tmp_path: Path, trackers: FakeTrackers, clock: FakeClock, kind: str
) -> None:
    import base64

    tickets: dict[str, Any] = {"kind": kind, "url": trackers.url, "token": TOKEN}
    if kind == "jira":  # basic auth: the header carries base64("email:token"), not the token
        tickets.update(project="OPS", email=JIRA_EMAIL)
    else:
        tickets.update(project="acme/infra")
    pair = base64.b64encode(f"{JIRA_EMAIL}:{TOKEN}".encode()).decode()
    app = await start(tmp_path, clock, tickets)
    try:
        await say(app, '!incident declare --sev 2 "Payments failing"')
        await say(app, f"!incident followup add {INC} add an alert on queue depth")
        trackers.fault = "echo-auth"  # a 400 whose body quotes our Authorization header
        reply = await say(app, f"!incident tickets {INC}")
        await app.outbox.flush(5)
        name = "GitHub" if kind == "github" else "Jira"
        assert reply.text.startswith(f"Follow-up 1: no ticket: HTTP 400 from {name}: ")
        assert "'Authorization': '" in reply.text and "[redacted]" in reply.text
        rows = await app.db.fetchall("SELECT outcome, text, cause FROM audit WHERE kind = 'ticket'")
        assert rows[0][0] == "failed" and "[redacted]" in rows[0][2]
        for shown in (reply.text, printed(app), str(rows)):
            assert TOKEN not in shown and pair not in shown
    finally:
        await app.stop()
