"""Addressing: the same texts mean the same commands on every platform.

Each text goes through a platform's real translation code (Slack envelope payloads, Discord
MESSAGE_CREATE payloads, Mattermost posts, console lines) and then through the bus's own
addressing step, and must come out as the same command (or as nothing, for chatter).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from chatopsd.connectors.discord import events as discord_events
from chatopsd.connectors.mattermost import events as mattermost_events
from chatopsd.connectors.slack import events as slack_events
from chatopsd.connectors.teams import events as teams_events
from chatopsd.core.addressing import Addressed, address
from chatopsd.core.bus import Bus
from chatopsd.core.commands import Registry
from chatopsd.core.messages import Actor, Destination, Inbound, Reply

SLACK_ME = slack_events.identity(user_id="UBOT", bot_id="BBOT")
DISCORD_ME = discord_events.identity(user_id="777")
MM_ME = mattermost_events.identity(user_id="botid", username="chatopsd")

# {me} is the platform's own way of mentioning the bot.
TABLE: list[tuple[str, str | None]] = [
    ("!ic", "ic"),
    ("  !ic page  ", "ic page"),
    ("!IC page", "IC page"),
    ("!status stalk 60", "status stalk 60"),
    ("{me} ic", "ic"),
    ("hey {me} ic", "ic"),
    ("{me}: ic page", "ic page"),
    ("{me}, status", "status"),
    ("ic page {me}", "ic page"),
    ("{me} !ic", "ic"),
    ("{me} {me} ic", "ic"),
    ("hey {me}\nic", "ic"),
    ('{me} ic who "Jane Doe"', 'ic who "Jane Doe"'),
    ("{me} who is on call?", "who is on call?"),
    ("{me}", ""),
    ("hello", None),
    ("!", None),
    ("! ic", None),
    ("hello !ic", None),
    ("mail ops@chatopsd.example about it", None),
]

MENTION = {
    "slack": "<@UBOT>",
    "discord": "<@777>",
    "mattermost": "@chatopsd",
    "teams": "<at>chatopsd</at>",
    "console": "@chatopsd",
}


class _Sink:
    def enqueue(self, destination: Destination, reply: Reply) -> None:
        raise AssertionError("addressing alone sends nothing")


BUS = Bus(Registry(), [], _Sink(), prefix="!", bot_names=("chatopsd",))


def _slack(text: str, *, direct: bool = False, **extra: Any) -> list[Inbound]:
    """What the connector emits: Slack sends a message event, plus an app_mention when the
    text mentions the bot outside a DM."""
    event: dict[str, Any] = {"type": "message", "channel": "C1", "user": "U1", "text": text}
    event.update(ts="1.1", channel_type="im" if direct else "channel", **extra)
    payloads = [event]
    if "<@UBOT" in text and not direct:
        payloads.append({**event, "type": "app_mention"})
    found = []
    for payload in payloads:
        inbound = slack_events.translate(
            "events_api", {"event_id": "Ev1", "event": payload}, SLACK_ME, "!"
        )
        if inbound is not None:
            found.append(inbound)
    return found


def _discord(text: str, *, direct: bool = False, **extra: Any) -> list[Inbound]:
    payload: dict[str, Any] = {
        "id": "1001",
        "channel_id": "2002",
        "author": {"id": "42", "username": "alice", "bot": False},
        "content": text,
        "type": 0,
        **extra,
    }
    if not direct:
        payload["guild_id"] = "3003"
    fields = discord_events.MessageFields.from_payload(payload)
    inbound = discord_events.message_event(fields, DISCORD_ME, "!")
    return [inbound] if inbound is not None else []


def _mattermost(
    text: str, *, direct: bool = False, root: str = "", bot_roots: tuple[str, ...] = ()
) -> list[Inbound]:
    post = {
        "id": "p1",
        "channel_id": "ch1",
        "user_id": "alice",
        "message": text,
        "root_id": root,
        "create_at": 1,
    }
    data = {"channel_type": "D" if direct else "O", "sender_name": "@alice"}
    inbound = mattermost_events.post_event(post, data, MM_ME, "!", bot_roots)
    return [inbound] if inbound is not None else []


TEAMS_APP = "00000000-0000-4000-8000-0000000000b1"


def _teams(
    text: str, *, direct: bool = False, root: str = "", bot_roots: tuple[str, ...] = ()
) -> list[Inbound]:
    """A Teams message activity; a mention of the bot comes with its `mention` entity, as
    Teams sends it."""
    conversation = f"19:c1@thread.tacv2;messageid={root or 'm1'}"
    activity: dict[str, Any] = {
        "type": "message",
        "id": "m2" if root else "m1",
        "serviceUrl": "https://smba.trafficmanager.net/amer/t1/",
        "channelId": "msteams",
        "from": {"id": "29:alice", "name": "Alice", "aadObjectId": "aad-alice"},
        "recipient": {"id": f"28:{TEAMS_APP}", "name": "chatopsd"},
        "conversation": {
            "id": "a:1dm" if direct else conversation,
            "conversationType": "personal" if direct else "channel",
            "tenantId": "t1",
        },
        "text": text,
        "entities": [
            {
                "type": "mention",
                "text": "<at>chatopsd</at>",
                "mentioned": {"id": f"28:{TEAMS_APP}", "name": "chatopsd"},
            }
            for _ in range(text.count("<at>chatopsd</at>"))
        ],
    }
    found = teams_events.translate(activity, app_id=TEAMS_APP, prefix="!", bot_roots=bot_roots)
    return list(found.events)


def _console(text: str) -> list[Inbound]:
    return [Inbound("console", "console", Actor("ada"), text, event_id="e1")]


PLATFORMS: dict[str, Callable[[str], list[Inbound]]] = {
    "slack": _slack,
    "discord": _discord,
    "mattermost": _mattermost,
    "teams": _teams,
    "console": _console,
}


def _commands(inbounds: list[Inbound]) -> list[str]:
    found = [BUS.addressed(event) for event in inbounds]
    return [a.text for a in found if a is not None]


@pytest.mark.parametrize("platform", sorted(PLATFORMS))
@pytest.mark.parametrize(("text", "expected"), TABLE)
def test_same_text_same_command_everywhere(platform: str, text: str, expected: str | None) -> None:
    inbounds = PLATFORMS[platform](text.replace("{me}", MENTION[platform]))
    assert _commands(inbounds) == ([] if expected is None else [expected])


def test_hey_mention_is_answered_on_every_platform() -> None:
    for platform, translate in PLATFORMS.items():
        assert _commands(translate(f"hey {MENTION[platform]} ic")) == ["ic"], platform


def test_discord_nickname_mention() -> None:
    assert _commands(_discord("hey <@!777> ic page")) == ["ic page"]


@pytest.mark.parametrize("platform", ["slack", "discord", "mattermost", "teams"])
def test_direct_message_needs_no_prefix(platform: str) -> None:
    translate: Any = PLATFORMS[platform]
    assert _commands(translate("ic page", direct=True)) == ["ic page"]
    assert _commands(translate("!ic page", direct=True)) == ["ic page"]
    assert _commands(translate("hello", direct=True)) == ["hello"]  # the bus answers usage


def test_reply_in_a_thread_the_bot_started() -> None:
    slack = _slack("ic page", thread_ts="0.9", parent_user_id="UBOT")
    assert _commands(slack) == ["ic page"] and slack[0].kind == "thread"
    assert _commands(_slack("ic page", thread_ts="0.9", parent_user_id="U2")) == []
    discord = _discord("ic", referenced_message={"author": {"id": "777"}})
    assert _commands(discord) == ["ic"] and discord[0].kind == "thread"
    assert _commands(_discord("ic", referenced_message={"author": {"id": "5"}})) == []
    mm = _mattermost("ic", root="r1", bot_roots=("r1",))
    assert _commands(mm) == ["ic"] and mm[0].kind == "thread"
    assert _commands(_mattermost("ic", root="r2", bot_roots=("r1",))) == []
    teams = _teams("ic", root="r1", bot_roots=("r1",))
    assert _commands(teams) == ["ic"] and teams[0].kind == "thread"
    assert _commands(_teams("ic", root="r2", bot_roots=("r1",))) == []


def test_mattermost_top_level_post_is_not_a_thread() -> None:
    top = _mattermost("!status stalk")
    assert top[0].thread is None
    assert _mattermost("!status stalk", root="r9")[0].thread == "r9"


@pytest.mark.parametrize(
    ("text", "kwargs", "want"),
    [
        ("/ic page", {"kind": "slash"}, Addressed("ic page", "platform")),
        ("ic page", {"kind": "button"}, Addressed("ic page", "platform")),
        ("+1", {"kind": "reaction"}, None),
        ("<@U1|bot> ic", {"mentions": ("<@U1>",)}, Addressed("ic", "mention")),
        ("@chatopsdx ic", {"mentions": ("@chatopsd",)}, None),
        ("@chatopsd-bot ic", {"mentions": ("@chatopsd",)}, None),
        ("thanks @chatopsd.", {"mentions": ("@chatopsd",)}, Addressed("thanks", "mention")),
        ("ic", {"direct": True}, Addressed("ic", "direct")),
        ("ic", {"bot_thread": True}, Addressed("ic", "thread")),
        ("@ChatOpsD ic", {"mentions": ("@chatopsd",)}, Addressed("ic", "mention")),
    ],
)
def test_address(text: str, kwargs: dict[str, Any], want: Addressed | None) -> None:
    assert address(text, prefix="!", **kwargs) == want


async def test_chatter_in_a_bot_thread_is_not_answered() -> None:
    sent: list[Reply] = []

    class Sink:
        def enqueue(self, destination: Destination, reply: Reply) -> None:
            sent.append(reply)

    bus = Bus(Registry(), [], Sink(), prefix="!")
    chatter = Inbound("chat", "c", Actor("a"), "ok thanks", kind="thread", event_id="1")
    assert await bus.handle(chatter) == [] and sent == []
    direct = Inbound("chat", "c", Actor("a"), "ok thanks", kind="mention", event_id="2")
    assert [r.text for r in await bus.handle(direct)] == ["unknown command !ok\ntry !help"]
