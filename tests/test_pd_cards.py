"""PagerDuty incidents in chat, end to end on every platform (tests/rig.py): the fake
PagerDuty (spec-checked, `From` checked against its users) and each platform's real client
against its fake; the incident poll is run by the test. A card is posted once per incident
and edited in place; a click acts in PagerDuty as the person who clicked, once the platform
(or an admin-approved `!pd link`) says who that is. Mattermost buttons would need an HTTP
callback this daemon does not open: there a "click" is the command the card shows as a hint.

Each platform's own cases follow: Discord's `!ic page` edit, Slack's concurrency and
failure cases."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from chatopsd.app import App
from chatopsd.features.pagerduty.cards import IncidentSync
from tests.conftest import FakeClock
from tests.fakes.discord import CHANNEL_ID, FakeDiscord, Recorded
from tests.fakes.pagerduty import FakePagerDuty, FakeUser
from tests.fakes.slack import FakeSlack
from tests.fixtures.discord import text_of
from tests.fixtures.pagerduty import first_refresh, pd, pd_section  # noqa: F401
from tests.rig import CHATS, PLATFORMS, Chat, DiscordChat, SlackChat, chat, daemon  # noqa: F401
from tests.waiting import eventually

# the platforms that share a person's email (Discord does not)
KNOWN = pytest.mark.parametrize(
    "chat", [p for p in PLATFORMS if CHATS[p].known is not None], indirect=True
)
# the platforms whose stranger may link: Slack shares a verified email, which a link cannot
# change (test_a_verified_slack_email_is_not_changed_by_a_link)
LINKABLE = pytest.mark.parametrize("chat", ["discord", "mattermost"], indirect=True)
SLACK_ONLY = pytest.mark.parametrize("chat", ["slack"], indirect=True)
DISCORD_ONLY = pytest.mark.parametrize("chat", ["discord"], indirect=True)


async def start(tmp_path: Path, chat: Chat, pd: FakePagerDuty, clock: FakeClock) -> App:
    pd.now = clock.now
    # PagerDuty knows Jane and Bob (Slack's U1 and U2) and Alice (Mattermost); not Carol
    pd.users["PJANE"] = FakeUser("PJANE", "Jane Doe", "jane@example.com")
    pd.users["PBOB"] = FakeUser("PBOB", "Bob Roe", "bob@example.com")
    pd.users["PALICE"] = FakeUser("PALICE", "Alice Liddell", "alice@example.com")
    app = await daemon(
        tmp_path,
        chat,
        clock,
        pagerduty=pd_section(
            pd,
            service_ids=["PSVC1"],
            incident_channels=[f"{chat.name}:{chat.cards}"],
            incident_poll_seconds=3600,  # the test polls
        ),
        roles={"oncall": ["*"], "admin": [f"{chat.name}:{chat.admin}"]},
    )
    await first_refresh(app)
    return app


@pytest.fixture
async def app(tmp_path: Path, chat: Chat, pd: FakePagerDuty, clock: FakeClock) -> Any:
    running = await start(tmp_path, chat, pd, clock)
    yield running
    await running.stop()


async def poll(app: App) -> None:
    assert app.part(IncidentSync) is not None
    await app.part(IncidentSync).poll()


def said(chat: Chat, needle: str) -> Callable[[], str | None]:
    """The latest thing the bot said that contains `needle` (a check for eventually)."""

    def found() -> str | None:
        return next((t for t in reversed(chat.texts()) if needle in t), None)

    found.__name__ = f"the bot saying {needle!r}"
    return found


def card_saying(chat: Chat, needle: str) -> Callable[[], str | None]:
    def found() -> str | None:
        return next((c for c in chat.card_versions("PINC001") if needle in c), None)

    found.__name__ = f"the card saying {needle!r}"
    return found


async def test_a_new_incident_is_one_card_with_its_actions(
    app: App, chat: Chat, pd: FakePagerDuty
) -> None:
    pd.trigger("Checkout latency", assignees=["PADA"])
    await poll(app)
    await poll(app)
    [card] = chat.card_versions("PINC001")
    assert "PagerDuty #1: Checkout latency" in card
    assert {"pd ack PINC001", "pd resolve PINC001"} <= chat.card_actions(card)


async def test_resolved_in_pagerduty_the_card_is_edited_within_one_poll(
    app: App, chat: Chat, pd: FakePagerDuty, clock: FakeClock
) -> None:
    pd.trigger("Checkout latency", assignees=["PGRACE"])
    await poll(app)
    clock.advance(300)
    pd.act("PINC001", "resolved", "PADA")  # someone pressed Resolve on their phone
    await poll(app)
    await eventually(card_saying(chat, "resolved by Ada Lovelace at 12:05"))
    assert len(chat.card_versions("PINC001")) == 1


@KNOWN
async def test_a_click_acts_as_the_clicker_in_chat_and_in_pagerduty(
    app: App, chat: Chat, pd: FakePagerDuty
) -> None:
    assert chat.known is not None
    user, name, email, pd_id = chat.known
    pd.trigger("Checkout latency", assignees=["PADA"])
    await poll(app)
    await chat.click("pd ack PINC001", user)
    card = await eventually(card_saying(chat, f"acknowledged by {name}"))
    assert "pd ack PINC001" not in chat.card_actions(card)  # acknowledged: no Ack any more
    assert "pd resolve PINC001" in chat.card_actions(card)
    assert len(chat.card_versions("PINC001")) == 1
    assert pd.writes == [("PUT", "/incidents/PINC001", email)]
    assert pd.incident("PINC001")["last_status_change_by"] == pd_id
    lookups = chat.lookups(user)
    assert lookups is None or lookups >= 1  # the email comes from the platform's profile


async def stranger_refused(app: App, chat: Chat, pd: FakePagerDuty) -> None:
    pd.trigger("Cache stampede", assignees=["PADA"])
    await poll(app)
    await chat.click("pd ack PINC001", chat.stranger)
    refusal = await eventually(said(chat, chat.refusal))
    assert "pd link" in refusal
    assert pd.writes == [] and pd.from_emails == []
    assert pd.incident("PINC001")["status"] == "triggered"


async def test_a_stranger_is_refused(app: App, chat: Chat, pd: FakePagerDuty) -> None:
    await stranger_refused(app, chat, pd)


@LINKABLE
async def test_a_stranger_acts_once_an_admin_approves_the_link(
    app: App, chat: Chat, pd: FakePagerDuty
) -> None:
    await stranger_refused(app, chat, pd)
    await chat.say("!pd link linus@example.com", chat.stranger)
    asked = await eventually(said(chat, "an admin must approve"))
    request = asked.split("(request ", 1)[1].split(",", 1)[0]
    await chat.click("pd ack PINC001", chat.stranger)
    still = await eventually(said(chat, "not confirmed yet"))
    assert "linus@example.com" in still and pd.writes == []  # a claim grants nothing
    await chat.say(f"!approve {request}", chat.admin)
    await eventually(said(chat, "Linked: you act in PagerDuty as Linus"))
    await chat.say("!pd whoami", chat.stranger)
    await eventually(said(chat, "confirmed by an admin"))
    await chat.click("pd ack PINC001", chat.stranger)
    await eventually(card_saying(chat, "acknowledged by Linus Torvalds"))
    assert len(chat.card_versions("PINC001")) == 1  # one card, edited in place
    assert pd.writes == [("PUT", "/incidents/PINC001", "linus@example.com")]
    lookups = chat.lookups(chat.stranger)
    assert lookups is None or lookups == 1  # a hidden email looked up once, then cached


@KNOWN
async def test_take_and_handback(app: App, chat: Chat, pd: FakePagerDuty) -> None:
    assert chat.known is not None
    user, name, _, pd_id = chat.known
    await chat.say("!ic take 1h", user)
    taken = await eventually(said(chat, "Pager taken"))
    assert f"{name} has the pager on PIC1 until 13:00 UTC" in taken
    assert "Ada Lovelace: you are off the pager" in taken
    assert [o["user"]["id"] for o in pd.overrides.values()] == [pd_id]
    await chat.say("!ic handback", user)
    back = await eventually(said(chat, "Pager handed back"))
    assert "removed" in back and pd.overrides == {}


# -- Discord: `!ic page` answers at once, then edits the result in ------------------------


async def seen(
    fake: FakeDiscord, log: list[Recorded], pred: Callable[[Recorded], bool]
) -> Recorded:
    """The first request (in `log` or still to come) that matches."""
    for rec in log:
        if pred(rec):
            return rec
    async with asyncio.timeout(5):
        while True:
            rec = await fake.next_post()
            log.append(rec)
            if pred(rec):
                return rec


@DISCORD_ONLY
async def test_ic_page_on_discord_says_paging_at_once_then_edits_in_the_result(
    app: App, chat: DiscordChat, pd: FakePagerDuty
) -> None:
    fake, log = chat.fake, []
    await fake.dispatch("MESSAGE_CREATE", fake.message("!ic page"))
    notice = await seen(fake, log, lambda r: "Paging the Incident Commanders" in json.dumps(r.body))
    assert notice.method == "POST" and notice.path == f"/channels/{CHANNEL_ID}/messages"
    edit = await seen(fake, log, lambda r: r.method == "PATCH")
    assert edit.path.startswith(f"/channels/{CHANNEL_ID}/messages/")
    assert "Paged Ada Lovelace" in text_of(edit)  # the notice became the answer
    assert "incidents/PINC001" in json.dumps(edit.body)
    await fake.dispatch("MESSAGE_CREATE", fake.message("!help"))  # a barrier: answered after
    await seen(fake, log, lambda r: "chatopsd commands" in json.dumps(r.body))
    answers = [r for r in log if r.method == "POST" and "Paged Ada" in json.dumps(r.body)]
    assert answers == []  # not posted a second time
    assert len(pd.incidents) == 1 and pd.incidents[0]["incident_key"].startswith(
        "chatopsd/discord/"
    )


# -- Slack: two clicks at once, a restart between poll and post, PagerDuty down -----------


def cards(fake: FakeSlack, incident_id: str) -> list[dict[str, Any]]:
    return [p for p in fake.posts() if f"pd resolve {incident_id}" in json.dumps(p)]


def updates(fake: FakeSlack) -> list[str]:
    return [json.dumps(p) for p in fake.posts("chat.update")]


@SLACK_ONLY
async def test_a_verified_slack_email_is_not_changed_by_a_link(
    app: App, chat: SlackChat, pd: FakePagerDuty
) -> None:
    await stranger_refused(app, chat, pd)
    await chat.say("!pd link linus@example.com", chat.stranger)
    answer = await eventually(said(chat, "a link cannot change that"))
    assert "you are carol@example.com" in answer
    await chat.click("pd ack PINC001", chat.stranger)
    await eventually(lambda: len(chat.fake.posts("chat.postEphemeral")) == 3)
    assert pd.writes == []


@SLACK_ONLY
async def test_ack_by_button_edits_the_card_itself(
    app: App, chat: SlackChat, pd: FakePagerDuty
) -> None:
    fake = chat.fake
    pd.trigger("Checkout latency", assignees=["PADA"])
    await poll(app)
    ts = fake.ts_of(cards(fake, "PINC001")[0])
    await fake.click("pd ack PINC001")
    await fake.wait_for(lambda: any("acknowledged by Jane Doe" in u for u in updates(fake)))
    update = next(json.loads(u) for u in updates(fake) if "acknowledged by Jane Doe" in u)
    assert update["ts"] == ts and update["channel"] == "C1"
    assert '"value": "pd ack PINC001"' not in json.dumps(update)  # acknowledged: no Ack button


@SLACK_ONLY
async def test_two_simultaneous_clicks_make_one_pagerduty_write(
    app: App, chat: SlackChat, pd: FakePagerDuty
) -> None:
    fake = chat.fake
    pd.trigger("Checkout latency")
    await poll(app)
    pd.gate = asyncio.Event()  # the first write stays in flight until both clicks are in
    await fake.click("pd ack PINC001", user="U1")
    await fake.wait_for(lambda: len(pd.from_emails) == 1)
    await fake.click("pd ack PINC001", user="U2")
    await fake.wait_for(lambda: len(fake.posts("chat.postEphemeral")) == 1)
    pd.gate.set()
    await fake.wait_for(lambda: any("acknowledged by Jane Doe" in u for u in updates(fake)))
    loser = fake.posts("chat.postEphemeral")[0]
    assert loser["user"] == "U2" and "already acknowledged by Jane Doe" in json.dumps(loser)
    assert pd.writes == [("PUT", "/incidents/PINC001", "jane@example.com")]


@SLACK_ONLY
async def test_restart_between_poll_and_post(
    tmp_path: Path, chat: SlackChat, pd: FakePagerDuty, clock: FakeClock
) -> None:
    fake = chat.fake
    app = await start(tmp_path, chat, pd, clock)
    pd.trigger("Between polls")
    assert app.part(IncidentSync) is not None
    await app.part(IncidentSync).decide()
    await app.stop()
    assert cards(fake, "PINC001") == []
    app = await start(tmp_path, chat, pd, clock)
    try:
        await poll(app)
        await poll(app)
        assert len(cards(fake, "PINC001")) == 1
    finally:
        await app.stop()


@SLACK_ONLY
async def test_pagerduty_down_during_a_click_keeps_the_buttons(
    app: App, chat: SlackChat, pd: FakePagerDuty
) -> None:
    fake = chat.fake
    pd.trigger("Checkout latency")
    await poll(app)
    pd.fault, pd.fault_path = "hang", "/incidents/PINC001"
    await fake.click("pd ack PINC001")
    await fake.wait_for(lambda: len(fake.posts()) == 2, timeout=15)
    assert "no answer from PagerDuty" in json.dumps(fake.posts()[-1])
    assert updates(fake) == []  # the card still offers Acknowledge
    rows = await app.audit.since(None)
    outcome = [r.outcome for r in rows if r.command == "pd ack"][-1]
    assert outcome == "failed", outcome
    pd.fault = None
    await fake.click("pd ack PINC001")
    await fake.wait_for(lambda: any("acknowledged by Jane Doe" in u for u in updates(fake)))


@SLACK_ONLY
async def test_a_click_while_its_card_is_being_posted_posts_once_then_edits(
    app: App, chat: SlackChat, pd: FakePagerDuty
) -> None:
    fake = chat.fake
    pd.trigger("Checkout latency")
    fake.delay["chat.postMessage"] = 0.5  # Slack slow to accept the card
    assert app.part(IncidentSync) is not None
    polling = asyncio.ensure_future(app.part(IncidentSync).poll())
    await fake.wait_for(lambda: len(fake.posts()) == 1)  # the card's post is in flight
    assert pd.incident("PINC001")["status"] == "triggered"
    await fake.click("pd ack PINC001")
    await fake.wait_for(lambda: len(pd.writes) == 1)
    await polling
    await fake.wait_for(lambda: any("acknowledged by Jane Doe" in u for u in updates(fake)))
    assert len(cards(fake, "PINC001")) == 1
    assert pd.writes == [("PUT", "/incidents/PINC001", "jane@example.com")]


@SLACK_ONLY
async def test_reassign_to_a_slack_mention(app: App, chat: SlackChat, pd: FakePagerDuty) -> None:
    fake = chat.fake
    pd.trigger("Checkout latency", assignees=["PADA"])
    await poll(app)
    await fake.event(fake.message("!pd reassign 1 <@U2>"))
    await fake.wait_for(lambda: any("reassigned to Bob Roe" in json.dumps(p) for p in fake.posts()))
    assert pd.incident("PINC001")["assignees"] == ["PBOB"]
    assert pd.writes == [("PUT", "/incidents/PINC001", "jane@example.com")]
    await fake.wait_for(lambda: any("Bob Roe" in u for u in updates(fake)))  # the card too
