"""`!pd`, `!ic take/handback`, `!incident page` and the `pagerduty-incidents` poll, end to end
on the console connector: App → bus → handlers → aiohttp → the fake PagerDuty (every request
checked against PagerDuty's OpenAPI document, every write's From against its users)."""

from __future__ import annotations

import asyncio
import io
import itertools
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from chatopsd.app import App, Io
from chatopsd.core.errors import UsageError
from chatopsd.core.messages import Actor, Inbound, Reply
from chatopsd.features.incidents.store import SqlIncidentStore
from chatopsd.features.pagerduty.cards import IncidentSync
from chatopsd.features.pagerduty.commands import parse_duration
from tests.conftest import FakeClock, make_config
from tests.fakes.pagerduty import FakePagerDuty
from tests.fixtures.pagerduty import (
    first_refresh,
    pd,  # noqa: F401 (fixtures)
    pd_section,
)
from tests.waiting import eventually

_ids = itertools.count(1)
GRACE = Actor("u-grace", "Grace")
ADA = Actor("u-ada", "Ada")
NOBODY = Actor("u-none", "Nemo")


def pd_incidents_section(pd: FakePagerDuty, **extra: Any) -> dict[str, Any]:
    return pd_section(
        pd,
        service_ids=["PSVC1"],
        incident_channels=["console:incidents"],
        incident_poll_seconds=3600,  # tests run the poll themselves
        users={"console:u-grace": "grace@example.com", "console:u-ada": "ada@example.com"},
        **extra,
    )


async def start(tmp_path: Path, pd: FakePagerDuty, clock: FakeClock, out: io.StringIO) -> App:
    pd.now = clock.now
    app = App(
        make_config(
            tmp_path,
            pagerduty=pd_incidents_section(pd),
            roles={
                "oncall": ["console:u-grace", "console:u-ada", "console:u-none"],
                "admin": ["console:u-root"],
            },
        ),
        clock=clock,
        io=Io(stdin=io.StringIO(""), stdout=out),
    )
    await app.start()
    await first_refresh(app)
    return app


@pytest.fixture
def out() -> io.StringIO:
    return io.StringIO()


@pytest.fixture
async def app(
    tmp_path: Path, pd: FakePagerDuty, clock: FakeClock, out: io.StringIO
) -> AsyncIterator[App]:
    running = await start(tmp_path, pd, clock, out)
    yield running
    await running.stop()


async def say(app: App, text: str, actor: Actor = GRACE) -> list[Reply]:
    event = Inbound("console", "ops", actor, text, event_id=f"pd-{next(_ids)}")
    return await app.bus.handle(event)


def text_of(replies: list[Reply]) -> str:
    return "\n".join(r.plain() for r in replies)


async def poll(app: App) -> None:
    assert app.part(IncidentSync) is not None
    await app.part(IncidentSync).poll()
    await app.outbox.flush(5)


def cards(out: io.StringIO) -> str:
    return out.getvalue()


async def test_new_incident_is_posted_once_with_buttons_then_edited(
    app: App, pd: FakePagerDuty, out: io.StringIO, clock: FakeClock
) -> None:
    pd.trigger("Database on fire", assignees=["PADA"])
    pd.trigger("Elsewhere", service_id="POTHER")  # not a followed service
    await poll(app)
    shown = cards(out)
    assert shown.count("PagerDuty #1: Database on fire") == 1
    assert "[Acknowledge: !pd ack PINC001]" in shown and "[Resolve: !pd resolve PINC001]" in shown
    assert "Elsewhere" not in shown
    await poll(app)  # nothing changed: nothing posted or edited
    assert cards(out) == shown
    clock.advance(120)
    pd.act("PINC001", "acknowledged", "PGRACE")  # from PagerDuty's app
    await poll(app)
    edited = cards(out)[len(shown) :]
    assert edited.startswith("↻ updated: ")
    assert "acknowledged by Grace Hopper at 12:02" in edited
    assert "[Acknowledge:" not in edited and "[Resolve: !pd resolve PINC001]" in edited
    clock.advance(60)
    pd.act("PINC001", "resolved", "PADA")  # out of band: no longer in the open list
    await poll(app)
    assert "resolved by Ada Lovelace at 12:03" in cards(out)
    assert pd.count("GET", "/incidents/PINC001") == 1  # looked up once, then no more
    await poll(app)
    assert pd.count("GET", "/incidents/PINC001") == 1


async def test_ack_by_button_acts_as_the_clicker_and_edits_the_card(
    app: App, pd: FakePagerDuty, out: io.StringIO
) -> None:
    pd.trigger("Payments down", assignees=["PADA"])
    await poll(app)
    reply = text_of(await say(app, "!pd ack PINC001"))
    assert "acknowledged by Grace Hopper" in reply
    assert pd.writes == [("PUT", "/incidents/PINC001", "grace@example.com")]
    await app.outbox.flush(5)
    assert "↻ updated: " in cards(out) and "acknowledged by Grace Hopper" in cards(out)
    again = text_of(await say(app, "!pd ack 1", actor=ADA))
    assert "already acknowledged by Grace Hopper" in again
    assert len(pd.writes) == 1


async def test_two_simultaneous_clicks_make_one_pagerduty_write(
    app: App, pd: FakePagerDuty
) -> None:
    pd.trigger("Queue backlog", assignees=["PADA"])
    await poll(app)
    pd.gate = asyncio.Event()  # hold the first write in flight while the second click lands
    first = asyncio.ensure_future(say(app, "!pd ack PINC001", actor=GRACE))
    await eventually(lambda: pd.from_emails, timeout=1)
    second = text_of(await say(app, "!pd ack PINC001", actor=ADA))
    pd.gate.set()
    winner = text_of(await first)
    assert "already acknowledged by Grace" in second
    assert "acknowledged by Grace Hopper" in winner
    assert pd.writes == [("PUT", "/incidents/PINC001", "grace@example.com")]


async def test_unlinked_user_is_refused_and_nothing_is_sent(app: App, pd: FakePagerDuty) -> None:
    pd.trigger("Disk full")
    await poll(app)
    reply = text_of(await say(app, "!pd ack PINC001", actor=NOBODY))
    assert "I don't know your PagerDuty user" in reply and "!pd link" in reply
    assert pd.writes == [] and pd.from_emails == []
    assert "You act as nobody" in text_of(await say(app, "!pd whoami", actor=NOBODY))
    # Linking needs an email PagerDuty knows, and not one an admin gave someone else.
    assert "no user with the email" in text_of(await say(app, "!pd link x@nowhere.io", NOBODY))
    assert "already belongs to another console account (set by an admin" in text_of(
        await say(app, "!pd link grace@example.com", NOBODY)
    )
    asked = text_of(await say(app, "!pd link linus@example.com", NOBODY))
    assert "an admin must approve" in asked
    request = asked.split("(request ", 1)[1].split(",", 1)[0]
    other = Actor("u-other", "Mallory")
    # a claim nobody confirmed holds nothing back: someone else may claim too
    assert "an admin must approve" in text_of(await say(app, "!pd link linus@example.com", other))
    assert "not confirmed yet" in text_of(await say(app, "!pd ack PINC001", actor=NOBODY))
    assert "not confirmed yet" in text_of(await say(app, "!pd whoami", actor=NOBODY))
    assert pd.writes == []
    await say(app, f"!approve {request}", actor=Actor("u-root", "Root"))
    await eventually(lambda: not app.bus.in_flight, timeout=5)
    assert "Linus Torvalds" in text_of(await say(app, "!pd whoami", actor=NOBODY))
    # now that it is someone's, nobody else on this platform can have it
    assert "already belongs to another console account (a confirmed !pd link)" in text_of(
        await say(app, "!pd link linus@example.com", other)
    )
    assert "acknowledged by Linus Torvalds" in text_of(
        await say(app, "!pd ack PINC001", actor=NOBODY)
    )
    assert pd.writes == [("PUT", "/incidents/PINC001", "linus@example.com")]


async def test_pagerduty_down_during_an_ack_fails_clearly_and_buttons_stay_usable(
    app: App, pd: FakePagerDuty, out: io.StringIO
) -> None:
    pd.trigger("API 5xx")
    await poll(app)
    pd.fault, pd.fault_path = "500", "/incidents/PINC001"
    reply = text_of(await say(app, "!pd ack PINC001"))
    assert "PagerDuty server error (500)" in reply
    assert pd.incident("PINC001")["status"] == "triggered"
    rows = await app.audit.since(None)
    outcome = [r.outcome for r in rows if r.command == "pd ack"][-1]
    # `failed` once the audit outcomes land; until then the error's class name
    assert outcome == "failed", outcome
    pd.fault = None
    assert "acknowledged by Grace Hopper" in text_of(await say(app, "!pd ack PINC001"))


async def test_incidents_listing_and_the_other_actions(
    app: App, pd: FakePagerDuty, clock: FakeClock
) -> None:
    pd.trigger("One", assignees=["PGRACE"])
    clock.advance(600)
    pd.trigger("Two", service_id="POTHER", urgency="low")
    listing = text_of(await say(app, "!pd incidents"))
    assert "#1 One · high · triggered · Grace Hopper · 10 min" in listing
    assert "Two" not in listing and "[Acknowledge: pd ack PINC001]" in listing
    assert "#2 Two · low" in text_of(await say(app, "!pd incidents --all"))
    assert "Acknowledged #1 as Grace Hopper" in text_of(await say(app, "!pd ack mine"))
    assert "Note added" in text_of(await say(app, "!pd note 1 rolling back"))
    assert pd.notes["PINC001"] == [("grace@example.com", "rolling back")]
    assert "snoozed" in text_of(await say(app, "!pd snooze 1 30m"))
    assert "escalated to level 2" in text_of(await say(app, "!pd escalate 1"))
    assert pd.incident("PINC001")["escalation_level"] == 2
    assert "reassigned to Alan Turing" in text_of(await say(app, "!pd reassign 1 alan@example.com"))
    assert pd.incident("PINC001")["assignees"] == ["PALAN"]
    assert "resolved by Grace Hopper" in text_of(await say(app, "!pd resolve 1 fixed it"))
    assert "already resolved" in text_of(await say(app, "!pd resolve 1", actor=ADA))
    assert all(sender == "grace@example.com" for _, _, sender in pd.writes)


async def test_take_and_handback_create_and_delete_an_override(app: App, pd: FakePagerDuty) -> None:
    taken = text_of(await say(app, "!ic take", actor=ADA))
    assert len(pd.overrides) == 1
    override = next(iter(pd.overrides.values()))
    assert override["schedule"] == "PIC1" and override["user"]["id"] == "PADA"
    assert override["end"] == "2026-11-24T08:00:00Z"  # the end of the current shift
    assert "Grace Hopper" not in taken  # level-1 only: Ada was already primary on PIC1
    taken2 = text_of(await say(app, "!ic take 2h --schedule PIC2"))
    assert "Alan Turing: you are off the pager" in taken2
    ends = sorted(o["end"] for o in pd.overrides.values())
    assert "2026-11-23T14:00:00Z" in ends
    back = text_of(await say(app, "!ic handback --schedule PIC2"))
    assert "removed" in back and len(pd.overrides) == 1
    assert "no override" in text_of(await say(app, "!ic handback --schedule PIC2"))
    held = text_of(await say(app, "!ic take 1h", actor=ADA))
    assert "already hold the pager on PIC1 until 08:00 UTC" in held and "UTC UTC" not in held
    pd.overrides.clear()  # someone removed it in PagerDuty's app
    gone = text_of(await say(app, "!ic handback", actor=ADA))
    assert "already removed in PagerDuty" in gone
    assert "no override" in text_of(await say(app, "!ic handback", actor=ADA))
    assert ("POST", "/schedules/PIC2/overrides", "grace@example.com") in pd.writes


async def test_incident_page_lands_in_the_incident_timeline(app: App, pd: FakePagerDuty) -> None:
    declared = text_of(await say(app, '!incident declare --sev 2 "Checkout broken"'))
    assert "INC-" in declared
    incident_id = declared[declared.index("INC-") :].split()[0].rstrip(".:,")
    home = await app.part(SqlIncidentStore).home(incident_id)
    assert home is not None
    event = Inbound(
        "console",
        home.channel,
        GRACE,
        "!incident page PIC2",
        event_id="pd-page-1",
        thread=home.thread,
    )
    paged = text_of(await app.bus.handle(event))
    assert "Paged Alan Turing as grace@example.com" in paged
    assert pd.incidents[-1]["assignees"] == ["PALAN"]
    assert ("POST", "/incidents", "grace@example.com") in pd.writes
    timeline = [e.text for e in await app.part(SqlIncidentStore).timeline(incident_id)]
    assert any("paged Alan Turing" in t for t in timeline), timeline


async def test_a_restart_between_poll_and_post_neither_loses_nor_duplicates(
    tmp_path: Path, pd: FakePagerDuty, clock: FakeClock
) -> None:
    first_out = io.StringIO()
    app = await start(tmp_path, pd, clock, first_out)
    pd.trigger("Half-way")
    assert app.part(IncidentSync) is not None
    await app.part(IncidentSync).decide()  # polled and decided; the daemon dies before posting
    await app.stop()
    assert "Half-way" not in first_out.getvalue()
    second_out = io.StringIO()
    app = await start(tmp_path, pd, clock, second_out)
    try:
        await poll(app)
        await poll(app)
        assert second_out.getvalue().count("PagerDuty #1: Half-way") == 1
    finally:
        await app.stop()
    third_out = io.StringIO()
    app = await start(tmp_path, pd, clock, third_out)
    try:
        await poll(app)
        assert "Half-way" not in third_out.getvalue()  # posted before: not again
    finally:
        await app.stop()


async def test_poll_failure_is_reported_to_the_scheduler(app: App, pd: FakePagerDuty) -> None:
    pd.fault, pd.fault_path = "401", "/incidents"
    assert app.part(IncidentSync) is not None
    with pytest.raises(Exception, match="401"):
        await app.part(IncidentSync).poll()


def test_durations() -> None:
    assert parse_duration("90s") == 90
    assert parse_duration("1h30m") == 5400
    assert parse_duration("2d") == 172800
    assert parse_duration("15") == 900
    for bad in ("soon", "8d", "0m", ""):
        with pytest.raises(UsageError):
            parse_duration(bad)


def test_card_json_round_trip() -> None:
    from chatopsd.features.pagerduty.rules import PdIncident

    inc = PdIncident("P1", 3, "t", "acknowledged", assignees=("A",), level=2)
    assert PdIncident.from_digest(inc.digest()) == inc
    assert json.loads(inc.digest())["level"] == 2


async def test_incident_escalate_page_pages_a_team_and_a_person_into_the_timeline(
    app: App, pd: FakePagerDuty
) -> None:
    pd.teams["PTEAM1"] = ("Backend", "PEPB")
    pd.policies["PEPB"] = ("Backend policy", ["PBAR"])
    declared = text_of(await say(app, '!incident declare --sev 3 "Slow search"'))
    incident_id = declared[declared.index("INC-") :].split()[0].rstrip(".:,")
    paged = text_of(await say(app, f"!incident escalate {incident_id} --page team:backend"))
    assert "Paged team Backend (Barbara Liskov) as grace@example.com" in paged
    assert "escalated" not in paged  # no severity given: only the page
    assert pd.incidents[-1]["assignees"] == ["PBAR"]
    paged = text_of(await say(app, f"!incident escalate {incident_id} SEV-2 --page linus"))
    assert "escalated SEV-3 → SEV-2" in paged and "Paged Linus Torvalds" in paged
    timeline = [e.text for e in await app.part(SqlIncidentStore).timeline(incident_id)]
    assert any("paged Barbara Liskov" in t for t in timeline), timeline
    assert any("paged Linus Torvalds" in t for t in timeline), timeline
    assert [w[2] for w in pd.writes] == ["grace@example.com", "grace@example.com"]


async def test_escalate_page_needs_the_paging_role(
    tmp_path: Path, pd: FakePagerDuty, clock: FakeClock
) -> None:
    pd.now = clock.now
    app = App(
        make_config(tmp_path, pagerduty=pd_incidents_section(pd), roles={"oncall": []}),
        clock=clock,
        io=Io(stdin=io.StringIO(""), stdout=io.StringIO()),
    )
    await app.start()
    try:
        declared = text_of(await say(app, '!incident declare --sev 3 "Slow search"'))
        incident_id = declared[declared.index("INC-") :].split()[0].rstrip(".:,")
        refused = text_of(await say(app, f"!incident escalate {incident_id} --page PIC1"))
        assert "needs the role 'oncall'" in refused
        assert "needs the role 'oncall'" in text_of(await say(app, "!pd ack 1"))
        assert pd.writes == []
    finally:
        await app.stop()


async def test_a_failing_poll_shows_in_health(
    tmp_path: Path, pd: FakePagerDuty, clock: FakeClock
) -> None:
    from chatopsd.control import health

    pd.fault, pd.fault_path = "401", "/incidents"
    app = await start(tmp_path, pd, clock, io.StringIO())
    try:
        await eventually(lambda: app.scheduler.failures.get("pagerduty-incidents"), timeout=5)
        job = health(app.health())["jobs"]["pagerduty-incidents"]
        assert job["failures"] == 1 and job["last_ok"] is None
    finally:
        await app.stop()


async def test_a_poll_read_older_than_a_click_does_not_revert_the_card(
    app: App, pd: FakePagerDuty, out: io.StringIO, clock: FakeClock
) -> None:
    pd.trigger("Slow reads")
    await poll(app)
    sync = app.part(IncidentSync)
    assert sync is not None
    now, stale = await sync._read()  # a poll reads PagerDuty: still triggered
    clock.advance(30)
    assert "acknowledged by Grace Hopper" in text_of(await say(app, "!pd ack PINC001"))
    await sync._decide(now, stale)  # ...and decides after the click was recorded
    current = await sync.current("PINC001")
    assert current is not None and current.status == "acknowledged"


async def test_malformed_or_rate_limited_poll_changes_nothing_and_fails(
    app: App, pd: FakePagerDuty, out: io.StringIO
) -> None:
    pd.trigger("Garbled")
    assert app.part(IncidentSync) is not None
    pd.fault, pd.fault_path = "badjson", "/incidents"
    with pytest.raises(Exception, match="unreadable"):
        await app.part(IncidentSync).poll()
    pd.fault, pd.retry_after = "429", "30"  # a wait past the deadline: give up, say why
    with pytest.raises(Exception, match="rate limiting"):
        await app.part(IncidentSync).poll()
    assert "Garbled" not in cards(out)
    pd.fault = None
    await poll(app)
    assert cards(out).count("PagerDuty #1: Garbled") == 1


async def test_take_while_pagerduty_is_down_says_so_and_changes_nothing(
    app: App, pd: FakePagerDuty
) -> None:
    pd.fault, pd.fault_path = "500", "/schedules"
    reply = text_of(await say(app, "!ic take 1h", actor=ADA))
    assert "PagerDuty server error (500)" in reply
    assert pd.overrides == {}
    rows = await app.audit.since(None)
    outcome = [r.outcome for r in rows if r.command == "ic take"][-1]
    assert outcome == "failed", outcome


async def test_take_tells_the_linked_person_taken_off_the_pager(
    app: App, pd: FakePagerDuty, out: io.StringIO
) -> None:
    taken = text_of(await say(app, "!ic take 1h"))  # Grace takes PIC1 from Ada (level 1)
    assert "Ada Lovelace: you are off the pager until then" in taken
    await app.outbox.flush(5)
    assert "Grace Hopper took the pager on PIC1 from you until 13:00 UTC." in out.getvalue()
    await say(app, "!ic handback")
    await app.outbox.flush(5)
    assert "The pager on PIC1 is yours again." in out.getvalue()


async def test_paging_only_yourself_is_refused(app: App, pd: FakePagerDuty) -> None:
    declared = text_of(await say(app, '!incident declare --sev 3 "Self page"'))
    incident_id = declared[declared.index("INC-") :].split()[0].rstrip(".:,")
    reply = text_of(await say(app, f"!incident escalate {incident_id} --page grace@example.com"))
    assert "would page only you (Grace Hopper)" in reply
    assert pd.writes == []


async def test_handback_after_the_override_ended(
    app: App, pd: FakePagerDuty, clock: FakeClock
) -> None:
    await say(app, "!ic take 30m")
    clock.advance(3600)
    ended = text_of(await say(app, "!ic handback"))
    assert "already ended at 12:30 UTC." in ended and "UTC UTC" not in ended
    assert "Pager taken" in text_of(await say(app, "!ic take 30m"))  # free to take it again


async def test_a_token_pagerduty_quotes_back_reaches_neither_chat_nor_the_audit_trail(
    app: App, pd: FakePagerDuty, out: io.StringIO
) -> None:
    from tests.fakes.pagerduty import TOKEN

    pd.trigger("API 5xx")
    await poll(app)
    # PagerDuty's 400 quotes our Authorization header back in its error detail
    pd.fault, pd.fault_path = "echo-auth", "/incidents/PINC001"
    replies = await say(app, "!pd ack PINC001")
    await app.outbox.flush(5)
    answer = text_of(replies)  # as the bus rendered the error
    assert "PagerDuty refused the request as invalid (400)" in answer
    assert "'Authorization': 'Token token=[redacted]'" in answer
    rows = await app.db.fetchall("SELECT command, text, cause FROM audit ORDER BY id")
    [cause] = [r[2] for r in rows if r[0] == "pd ack"]
    assert "PagerDuty refused the request as invalid (400)" in cause and "[redacted]" in cause
    for shown in (answer, out.getvalue(), str(rows)):
        assert TOKEN not in shown
