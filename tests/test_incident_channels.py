"""Incidents in channels of their own, end to end on every platform that has them (Slack,
Mattermost; tests/rig.py): the real App and connector against the platform's fake.

Declaring opens `inc-YYYYMMDD-<slug>`, adds the declarer, posts the status there and pins it;
later commands edit that one status; the wrap-up goes to the incident channel, the routed
announcement channel and where it was declared. Refusals fall back to a thread and say why;
a taken name gets the numbered one; rate limits are waited out. What the platforms answer
differently (the words of a refusal, what a 5xx may have done) is in each `IncidentChat`."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from chatopsd.app import App
from tests.conftest import FakeClock
from tests.rig import INCIDENT_PLATFORMS, IncidentChat, chat, daemon  # noqa: F401
from tests.waiting import eventually

pytestmark = pytest.mark.parametrize("chat", INCIDENT_PLATFORMS, indirect=True)

NAME = "inc-20261123-payments-failing"  # FakeClock's day
INC = "INC-2026-0001"
DECLARE = '!incident declare --sev 2 "Payments failing"'
Post = tuple[str, str, str]  # id, thread, text


@pytest.fixture
async def app(tmp_path: Path, chat: IncidentChat, clock: FakeClock) -> AsyncIterator[App]:
    running = await daemon(
        tmp_path, chat, clock, incidents={"routing": {"SEV-2": [f"{chat.name}:{chat.announce}"]}}
    )
    chat.tune(running)
    yield running
    await running.stop()


def said(chat: IncidentChat, channel: str, needle: str) -> Callable[[], list[Post]]:
    def found() -> list[Post]:
        return [post for post in chat.replies(channel) if needle in post[2]]

    found.__name__ = f"{needle!r} in {channel}"
    return found


async def declare(chat: IncidentChat, text: str = DECLARE, number: str = INC) -> str:
    """Declare in the home channel; the bot's answer."""
    await chat.say_in(text, chat.declarer, chat.home)
    return (await eventually(said(chat, chat.home, f"{number} declared (SEV-2)")))[0][2]


def text_of(chat: IncidentChat, channel: str, post: str) -> str:
    return next(text for pid, _, text in chat.replies(channel) if pid == post)


def named(name: str, reply: str) -> bool:
    """The answer names exactly this channel (not a numbered one)."""
    return re.search(rf"Incident channel: #{re.escape(name)}(?![-\w])", reply) is not None


async def barrier(chat: IncidentChat) -> None:
    """`!help`, answered: what was typed before it has been handled."""
    answered = len(said(chat, chat.home, "chatopsd commands")())
    await chat.say_in("!help", chat.declarer, chat.home)
    await eventually(lambda: len(said(chat, chat.home, "chatopsd commands")()) > answered)


async def test_declare_opens_a_channel_adds_the_declarer_and_pins_the_status(
    app: App, chat: IncidentChat
) -> None:
    reply = await declare(chat)
    assert named(NAME, reply)
    assert f"{chat.name}:{chat.announce}" in reply  # says where it was announced
    [channel] = chat.incident_channels()
    assert channel["name"] == NAME
    assert channel["topic"] == f"{INC} [SEV-2] Payments failing"
    assert channel["members"] == [chat.bot, chat.declarer]  # the declarer was added
    [(status, thread, text)] = chat.replies(channel["id"])  # the status is the first post
    assert thread == "" and f"{INC} [SEV-2] Payments failing" in text and "State: declared" in text
    assert chat.pins() == [status]
    [(_, _, announced)] = chat.replies(chat.announce)  # announced where SEV-2 is routed
    assert "Payments failing" in announced


async def test_update_and_ack_edit_the_pinned_status_in_place(app: App, chat: IncidentChat) -> None:
    await declare(chat)
    [channel] = chat.incident_channels()
    cid = channel["id"]
    [(status, _, _)] = chat.replies(cid)
    await chat.say_in(f"!incident update {INC} rolled back the deploy", chat.declarer, chat.home)
    await eventually(lambda: "rolled back the deploy" in text_of(chat, cid, status))
    assert chat.edits(status) >= 1
    await eventually(said(chat, chat.home, f"{INC} updated"))

    await chat.say_in("!incident ack", chat.declarer, cid)  # in its channel: no id needed
    [(_, _, ack)] = await eventually(said(chat, cid, f"{INC} acknowledged by"))
    assert ack == f"{INC} acknowledged by {chat.handle}."
    await eventually(lambda: "State: acknowledged" in text_of(chat, cid, status))
    assert chat.edits(status) >= 2  # edited in place, twice
    assert [p[0] for p in chat.replies(cid)] == [status, *[p[0] for p in said(chat, cid, ack)()]]
    assert chat.pins() == [status]  # no second status, no second pin


async def test_resolve_posts_the_wrapup_in_the_incident_announcement_and_home_channels(
    app: App, chat: IncidentChat
) -> None:
    await declare(chat)
    [channel] = chat.incident_channels()
    cid = channel["id"]
    [(status, _, _)] = chat.replies(cid)
    resolve = f"!incident resolve {INC} fixed the card processor config"
    await chat.say_in(resolve, chat.declarer, chat.home)
    wrapped = f"{INC} resolved: Payments failing"
    await eventually(lambda: all(said(chat, c, wrapped)() for c in (cid, chat.announce, chat.home)))
    [(_, _, wrap)] = said(chat, cid, f"{INC} resolved")()
    assert "Resolution: fixed the card processor config" in wrap
    await eventually(lambda: "State: resolved" in text_of(chat, cid, status))
    await barrier(chat)
    assert len(said(chat, chat.announce, f"{INC} resolved")()) == 1
    assert said(chat, chat.channel, wrapped)() == []  # nowhere else


async def test_refused_creation_falls_back_to_a_thread_and_says_so(
    app: App, chat: IncidentChat
) -> None:
    chat.refuse_creation()
    reply = await declare(chat)
    assert "Incident thread: under the announcement" in reply
    assert f"could not create #{NAME}" in reply
    for words in chat.create_refused:
        assert words in reply
    assert chat.incident_channels() == [] and chat.pins() == []  # a thread reply is not pinned
    [(status, thread, _)] = said(chat, chat.home, "State: declared")()
    [(above, announcement)] = [
        (t, text) for pid, t, text in chat.replies(chat.home) if pid == thread
    ]
    assert above == "" and "Payments failing" in announcement  # the status is in its thread
    await eventually(
        lambda: [p for p in said(chat, chat.home, "No incident channel")() if p[1] == thread]
    )
    # the thread is the incident's home: no id needed there
    await chat.say_in("!incident ack", chat.declarer, chat.home, thread=thread)
    await eventually(lambda: "State: acknowledged" in text_of(chat, chat.home, status))
    await chat.say_in(f"!incident update {INC} still failing", chat.declarer, chat.home)
    await eventually(lambda: "still failing" in text_of(chat, chat.home, status))


async def test_a_taken_name_gets_the_numbered_name(app: App, chat: IncidentChat) -> None:
    chat.take_name(NAME)
    reply = await declare(chat)
    assert named(f"{NAME}-0001", reply)
    [channel] = chat.incident_channels()
    assert channel["name"] == f"{NAME}-0001"
    assert channel["members"] == [chat.bot, chat.declarer]
    assert chat.create_attempts() == 2


async def test_a_second_incident_with_the_same_title_gets_the_numbered_name(
    app: App, chat: IncidentChat
) -> None:
    await declare(chat)
    reply = await declare(chat, number="INC-2026-0002")
    assert f"#{NAME}-0002" in reply
    assert sorted(c["name"] for c in chat.incident_channels()) == [NAME, f"{NAME}-0002"]


async def test_a_refused_pin_is_reported_and_the_channel_kept(app: App, chat: IncidentChat) -> None:
    chat.refuse_pins()
    reply = await declare(chat)
    assert named(NAME, reply)
    assert chat.pin_refused in reply
    assert [c["name"] for c in chat.incident_channels()] == [NAME]


async def test_a_rate_limited_create_is_retried_with_the_same_name(
    app: App, chat: IncidentChat
) -> None:
    chat.fail_next_create(429)
    reply = await declare(chat)
    assert named(NAME, reply)  # the same name: the 429 was not acted on
    assert chat.create_attempts() == 2


async def test_a_server_error_on_create_is_retried_as_the_platform_allows(
    app: App, chat: IncidentChat
) -> None:
    chat.fail_next_create(503)
    reply = await declare(chat)
    name = NAME + chat.name_after_5xx
    assert named(name, reply)
    assert [c["name"] for c in chat.incident_channels()] == [name]
    assert chat.create_attempts() == 2
