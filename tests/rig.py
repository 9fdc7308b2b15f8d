"""The one test rig: the daemon as production builds it, on one platform fake at a time.

`daemon(...)` is `App.start()`: the kernel, then every feature's `install` from
`features.FEATURES`, then the connectors; nothing is wired by hand. The `chat` fixture is
parametrised over PLATFORMS: a scenario written once against `Chat` runs on every platform's
protocol-level fake, through its real client library. What differs between platforms (who
the linked person is, what a channel's topic is called, where a direct message lands) is in
each `Chat` below: the table of per-platform expectations.

A scenario that needs a capability runs on the platforms whose package declares it
(`platforms_with(DIRECT_MESSAGES)`), Toy Chat (tests/toychat/, in memory) included. A new
platform is one `Chat` subclass, one entry in CHATS and, if it is a real one, in PLATFORMS.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from chatopsd import config as config_module
from chatopsd.app import App
from chatopsd.config import Config
from chatopsd.connectors import discord as discord_package
from chatopsd.connectors import mattermost as mattermost_package
from chatopsd.connectors import slack as slack_package
from chatopsd.connectors.platform import Platform
from chatopsd.core.capabilities import (
    CHANNEL_INVITES,
    INCIDENT_CHANNELS,
    MESSAGE_PINS,
    Capability,
)
from chatopsd.platforms import PLATFORMS as REGISTRY
from tests import toychat
from tests.conftest import FakeClock, make_config
from tests.fakes import discord as discord_fake
from tests.fakes import mattermost as mattermost_fake
from tests.fakes import slack as slack_fake
from tests.fakes import toychat as toychat_fake
from tests.fixtures.discord import text_of
from tests.fixtures.mattermost import plain

PLATFORMS: list[str] = ["slack", "discord", "mattermost"]


class Chat:
    """One platform's fake, seen the same way by every scenario."""

    name: ClassVar[str]
    platform: ClassVar[Platform[Any]]  # its package's PLATFORM: what it declares it can do
    registry: ClassVar[tuple[Platform[Any], ...] | None] = None  # None: chatopsd/platforms.py
    person: ClassVar[str]  # a chat user the scenarios link to a PagerDuty person
    channel: ClassVar[str]  # a channel the bot is in, whose topic the scenarios keep
    cards: ClassVar[str]  # the channel PagerDuty incident cards go to
    admin: ClassVar[str]  # a chat user the scenarios give the admin role
    stranger: ClassVar[str]  # a chat user PagerDuty cannot name without a `!pd link`
    refusal: ClassVar[str]  # what the stranger is told (the platform says why it cannot tell)
    # (chat user, name, email, PagerDuty id) of someone whose email the platform shares and
    # PagerDuty knows; None where the platform shares no email (Discord)
    known: ClassVar[tuple[str, str, str, str] | None] = None

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    def section(self) -> dict[str, Any]:
        """The platform's config section, pointing at the fake."""
        raise NotImplementedError

    def posts(self) -> list[str]:
        """The text of every message the bot posted, in order."""
        raise NotImplementedError

    def direct_messages(self) -> list[str]:
        """The text of the bot's posts in direct-message channels."""
        raise NotImplementedError

    def direct_recipients(self) -> set[str]:
        """Whom the bot opened a direct-message channel with."""
        raise NotImplementedError

    def topic(self) -> str:
        raise NotImplementedError

    def edit_topic(self, text: str) -> None:
        """A person changes `channel`'s topic by hand."""
        raise NotImplementedError

    def topic_writes(self) -> int:
        """How many times the bot wrote `channel`'s topic."""
        raise NotImplementedError

    async def say(self, text: str, user: str) -> None:
        """`user` writes `text` in the command channel."""
        raise NotImplementedError

    async def click(self, command: str, user: str) -> None:
        """`user` presses a card's button for `command` (typed, where a platform has none)."""
        raise NotImplementedError

    def texts(self) -> list[str]:
        """Everything the bot said: posts, edits, private answers, in order."""
        raise NotImplementedError

    def card_versions(self, incident: str) -> list[str]:
        """The cards posted for a PagerDuty incident (each one's latest version)."""
        raise NotImplementedError

    def card_actions(self, card: str) -> set[str]:
        """The commands a card's buttons (or hints) offer."""
        raise NotImplementedError

    def lookups(self, user: str) -> int | None:
        """How often the bot asked the platform for `user`'s profile; None: not counted."""
        return None


class IncidentChat(Chat):
    """A platform with incident channels, invites and pins (Slack, Mattermost)."""

    home: ClassVar[str]  # where commands are typed
    announce: ClassVar[str]  # where the scenarios route SEV-2 announcements
    declarer: ClassVar[str]  # who declares; the bot adds them to the incident channel
    handle: ClassVar[str]  # how an answer names the declarer
    bot: ClassVar[str]
    create_refused: ClassVar[tuple[str, ...]]  # what the fallback says when creation is refused
    pin_refused: ClassVar[str]  # what the declare answer says when the pin is refused
    name_after_5xx: ClassVar[str]  # "" (the same name, retried) or "-0001" (a channel may exist)

    async def say_in(self, text: str, user: str, channel: str, thread: str = "") -> None:
        raise NotImplementedError

    def replies(self, channel: str) -> list[tuple[str, str, str]]:
        """(id, thread id or "", current text) of the bot's posts in `channel`, in order."""
        raise NotImplementedError

    def incident_channels(self) -> list[dict[str, Any]]:
        """The channels the bot made: id, name, topic, members."""
        raise NotImplementedError

    def pins(self) -> list[str]:
        raise NotImplementedError

    def edits(self, post: str) -> int:
        raise NotImplementedError

    def create_attempts(self) -> int:
        raise NotImplementedError

    def refuse_creation(self) -> None:
        raise NotImplementedError

    def take_name(self, name: str) -> None:
        raise NotImplementedError

    def refuse_pins(self) -> None:
        raise NotImplementedError

    def fail_next_create(self, status: int) -> None:
        """The next channel creation answers `status` (429 with a short Retry-After)."""
        raise NotImplementedError

    def tune(self, app: App) -> None:
        """What a test shortens on the connector (waits that would make it slow)."""


class SlackChat(IncidentChat):
    name, person, channel = "slack", "U0CAROL", "C0ONCALL"
    platform = slack_package.PLATFORM
    cards, admin, stranger = "C1", "U1", "U0CAROL"
    home, announce, declarer, handle, bot = "C1", "CANN", "U1", "Jane Doe", slack_fake.BOT_USER
    create_refused = ("does not let this app do that", "restricted_action")
    pin_refused = "Could not pin the status message: pins.add: the bot may not pin"
    name_after_5xx = ""  # Slack's answer says no channel was made: the same name again
    refusal = "carol@example.com is not a PagerDuty user"  # Slack shares her email
    known = ("U1", "Jane Doe", "jane@example.com", "PJANE")

    def __init__(self) -> None:
        self.fake = slack_fake.FakeSlack()

    async def start(self) -> None:
        await self.fake.start()
        self.fake.channels[self.channel] = {
            "id": self.channel,
            "name": "oncall",
            "is_private": False,
            "topic": "",
            "members": [slack_fake.BOT_USER],
        }

    async def stop(self) -> None:
        await self.fake.stop()
        assert self.fake.violations == [], "acks that break Socket Mode's protocol"

    def section(self) -> dict[str, Any]:
        return {
            "app_token": slack_fake.APP_TOKEN,
            "bot_token": slack_fake.BOT_TOKEN,
            "api_url": self.fake.api_url,
            "ping_interval_seconds": 0.3,
        }

    def posts(self) -> list[str]:
        return [str(p.get("text")) for p in self.fake.posts()]

    def direct_messages(self) -> list[str]:
        return [str(p.get("text")) for p in self.fake.posts() if p.get("channel") in self.fake.dms]

    def direct_recipients(self) -> set[str]:
        return set(self.fake.dms.values())

    def topic(self) -> str:
        return str(self.fake.channels[self.channel]["topic"])

    def edit_topic(self, text: str) -> None:
        self.fake.channels[self.channel]["topic"] = text

    def topic_writes(self) -> int:
        return sum(
            p.get("channel") == self.channel for p in self.fake.posts("conversations.setTopic")
        )

    async def say(self, text: str, user: str) -> None:
        await self.fake.event(self.fake.message(text, user=user, channel=self.cards))

    async def click(self, command: str, user: str) -> None:
        await self.fake.click(command, user=user)

    def texts(self) -> list[str]:
        said = ("chat.postMessage", "chat.update", "chat.postEphemeral")
        return [_json(args) for method, args, _ in self.fake.calls if method in said]

    def card_versions(self, incident: str) -> list[str]:
        found = []
        for post in self.fake.posts():
            if f"pd resolve {incident}" not in _json(post) or post.get("channel") != self.cards:
                continue
            ts = self.fake.ts_of(post)
            edits = [u for u in self.fake.posts("chat.update") if u.get("ts") == ts]
            found.append(_json(edits[-1] if edits else post))
        return found

    def card_actions(self, card: str) -> set[str]:
        return set(re.findall(r'"value": "([^"]+)"', card))

    async def say_in(self, text: str, user: str, channel: str, thread: str = "") -> None:
        message = self.fake.message(text, user=user, channel=channel, thread_ts=thread or None)
        await self.fake.event(message)

    def replies(self, channel: str) -> list[tuple[str, str, str]]:
        found = []
        for post in self.fake.posts():
            if post.get("channel") != channel:
                continue
            ts = self.fake.ts_of(post)
            edits = [u for u in self.fake.posts("chat.update") if u.get("ts") == ts]
            text = str((edits[-1] if edits else post).get("text"))
            found.append((ts, str(post.get("thread_ts") or ""), text))
        return found

    def incident_channels(self) -> list[dict[str, Any]]:
        return [
            {"id": cid, "name": c["name"], "topic": c["topic"], "members": c["members"]}
            for cid, c in self.fake.channels.items()
            if c["name"].startswith("inc-")
        ]

    def pins(self) -> list[str]:
        return [ts for pinned in self.fake.pins.values() for ts in pinned]

    def edits(self, post: str) -> int:
        return sum(u.get("ts") == post for u in self.fake.posts("chat.update"))

    def create_attempts(self) -> int:
        return len(self.fake.posts("conversations.create"))

    def refuse_creation(self) -> None:
        self.fake.refuse_create = "restricted_action"

    def take_name(self, name: str) -> None:
        self.fake.taken.add(name)

    def refuse_pins(self) -> None:
        self.fake.refuse_pin = "permission_denied"

    def fail_next_create(self, status: int) -> None:
        if status == 429:
            self.fake.fail("conversations.create", 429, "ratelimited", {"Retry-After": "0"})
        else:
            self.fake.fail("conversations.create", status, "service_unavailable")


class DiscordChat(Chat):
    # Discord gives no email: the link is in config, like every platform's here
    name, person, channel = "discord", "424242424242", str(discord_fake.CHANNEL_ID)
    platform = discord_package.PLATFORM
    cards, admin, stranger = str(discord_fake.CHANNEL_ID), "77", "42"  # 42 clicks in the fake
    refusal = "PagerDuty user"

    def __init__(self) -> None:
        self.fake = discord_fake.FakeDiscord()

    async def start(self) -> None:
        await self.fake.start()

    async def stop(self) -> None:
        await self.fake.stop()

    def section(self) -> dict[str, Any]:
        return {
            "token": discord_fake.TOKEN,
            "api_url": self.fake.api_url,
            "gateway_url": self.fake.gateway_url,
            "guild_ids": [discord_fake.GUILD_ID],
            "identify_delay": 0.05,
            "heartbeat_timeout": 8.0,
            "guild_ready_timeout": 0.05,
        }

    def _posts(self, channels: set[str] | None = None) -> list[str]:
        return [
            text_of(rec)
            for rec in self.fake.requests
            if rec.method == "POST"
            and rec.path.startswith("/channels/")
            and rec.path.endswith("/messages")
            and (channels is None or rec.path.split("/")[2] in channels)
            and not rec.duplicate
        ]

    def posts(self) -> list[str]:
        return self._posts()

    def direct_messages(self) -> list[str]:
        return self._posts(set(self.fake.dm_channels.values()))

    def direct_recipients(self) -> set[str]:
        return set(self.fake.dm_channels)

    def topic(self) -> str:
        return self.fake.topics.get(self.channel, "")

    def edit_topic(self, text: str) -> None:
        self.fake.topics[self.channel] = text

    def topic_writes(self) -> int:
        return sum(
            rec.method == "PATCH" and rec.path == f"/channels/{self.channel}"
            for rec in self.fake.requests
        )

    async def say(self, text: str, user: str) -> None:
        message = self.fake.message(text, author_id=int(user), name=f"user{user}")
        await self.fake.dispatch("MESSAGE_CREATE", message)

    async def click(self, command: str, user: str) -> None:
        assert user == self.stranger, "the fake's interactions come from user 42"
        await self.fake.dispatch("INTERACTION_CREATE", self.fake.click(command))

    def texts(self) -> list[str]:
        return [
            _json(rec.body)
            for rec in self.fake.requests
            if rec.method in ("POST", "PATCH") and not rec.path.startswith("/applications/")
        ]

    def card_versions(self, incident: str) -> list[str]:
        messages = f"/channels/{self.cards}/messages"
        found = []
        for rec in self.fake.requests:
            body = _json(rec.body)
            if rec.method != "POST" or rec.path != messages or rec.duplicate:
                continue
            title = re.search(r"PagerDuty #\d+", body)
            if f"pd resolve {incident}" not in body or title is None:
                continue
            edits = [  # an edit of the card keeps its title
                e
                for e in self.fake.requests
                if e.method == "PATCH"
                and e.path.startswith(messages + "/")
                and title.group(0) in _json(e.body)
            ]
            found.append(_json(edits[-1].body) if edits else body)
        return found

    def card_actions(self, card: str) -> set[str]:
        return set(re.findall(r'"custom_id": "([^"]+)"', card))


class MattermostChat(IncidentChat):
    name, person, channel = (
        "mattermost",
        str(mattermost_fake.ALICE["id"]),
        "oncallchan0000000000000000",
    )
    platform = mattermost_package.PLATFORM
    cards = "cards00000000000000000000a"
    admin, stranger = str(mattermost_fake.ALICE["id"]), str(mattermost_fake.BOB["id"])
    refusal = "I don't know your PagerDuty user"  # Bob hides his email
    home, announce = mattermost_fake.CHANNEL, "announce000000000000000000"
    declarer, handle = str(mattermost_fake.ALICE["id"]), "alice"
    bot = str(mattermost_fake.BOT["id"])
    create_refused = ("the bot may not create", "create_public_channel")
    pin_refused = "Could not pin the status message: Mattermost refused to pin the post (HTTP 403"
    name_after_5xx = "-0001"  # a 5xx may hide a channel that was made: the next name
    known = (str(mattermost_fake.ALICE["id"]), "Alice Liddell", "alice@example.com", "PALICE")

    def __init__(self) -> None:
        self.fake = mattermost_fake.FakeMattermost()

    async def start(self) -> None:
        await self.fake.start()
        bot = mattermost_fake.BOT["id"]
        self.fake.channels[self.channel] = {
            "id": self.channel,
            "type": "O",
            "name": "oncall",
            "header": "",
        }
        self.fake.members[self.channel] = [bot]

    async def stop(self) -> None:
        await self.fake.stop()

    def section(self) -> dict[str, Any]:
        return {"url": self.fake.url, "token": mattermost_fake.TOKEN, "heartbeat_seconds": 1.0}

    def _direct(self) -> set[str]:
        return {cid for cid, c in self.fake.channels.items() if c["type"] == "D"}

    def posts(self) -> list[str]:
        return [plain(p["message"]) for p in self.fake.bot_posts()]

    def direct_messages(self) -> list[str]:
        direct = self._direct()
        return [plain(p["message"]) for p in self.fake.bot_posts() if p["channel_id"] in direct]

    def direct_recipients(self) -> set[str]:
        bot = mattermost_fake.BOT["id"]
        found = set()
        for channel in self._direct():
            members = self.fake.members[channel]
            assert bot in members and len(members) == 2, members  # the bot and one person
            found |= set(members) - {bot}
        return found

    def topic(self) -> str:
        return str(self.fake.channels[self.channel]["header"])

    def edit_topic(self, text: str) -> None:
        self.fake.channels[self.channel]["header"] = text

    def topic_writes(self) -> int:
        return sum(channel == self.channel for channel, _ in self.fake.channel_patches)

    async def say(self, text: str, user: str) -> None:
        people = (mattermost_fake.ALICE, mattermost_fake.BOB)
        await self.fake.user_post(text, user=next(u for u in people if u["id"] == user))

    async def click(self, command: str, user: str) -> None:
        await self.say(f"!{command}", user)  # buttons need an HTTP callback: the card's hint

    def texts(self) -> list[str]:
        return [plain(p["message"]) for p in self.fake.bot_posts()]

    def card_versions(self, incident: str) -> list[str]:
        # the channel holds cards only; a post is edited in place
        return [plain(p["message"]) for p in self.fake.bot_posts() if p["channel_id"] == self.cards]

    def card_actions(self, card: str) -> set[str]:
        return set(re.findall(r"`!(pd [a-z]+ [A-Z0-9]+)`", card))

    def lookups(self, user: str) -> int:
        return sum(r == ("GET", f"/api/v4/users/{user}") for r in self.fake.requests)

    async def say_in(self, text: str, user: str, channel: str, thread: str = "") -> None:
        people = (mattermost_fake.ALICE, mattermost_fake.BOB)
        author = next(u for u in people if u["id"] == user)
        await self.fake.user_post(text, user=author, channel=channel, root_id=thread)

    def replies(self, channel: str) -> list[tuple[str, str, str]]:
        return [
            (str(p["id"]), str(p["root_id"]), plain(p["message"]))
            for p in self.fake.bot_posts()
            if p["channel_id"] == channel
        ]

    def incident_channels(self) -> list[dict[str, Any]]:
        return [
            {
                "id": cid,
                "name": c["name"],
                "topic": c.get("header", ""),
                "members": self.fake.members.get(cid, []),
            }
            for cid, c in self.fake.channels.items()
            if c["name"].startswith("inc-")
        ]

    def pins(self) -> list[str]:
        return list(self.fake.pinned)

    def edits(self, post: str) -> int:
        return self.fake.requests.count(("PUT", f"/api/v4/posts/{post}/patch"))

    def create_attempts(self) -> int:
        return self.fake.requests.count(("POST", "/api/v4/channels"))

    def refuse_creation(self) -> None:
        self.fake.refuse_channels = True

    def take_name(self, name: str) -> None:
        self.fake.taken_names.add(name)

    def refuse_pins(self) -> None:
        self.fake.refuse_pins = True

    def fail_next_create(self, status: int) -> None:
        self.fake.admin_failures.append((status, {"Retry-After": "0.2"} if status == 429 else {}))

    def tune(self, app: App) -> None:
        connector: Any = app.supervisors[0].connector
        connector.admin_max_wait = 1.0  # the longest Retry-After it honours, 10 s by default


class ToyChat(Chat):
    """Toy Chat, the in-memory platform added by ARCHITECTURE.md's recipe (tests/toychat/):
    no network, and not in chatopsd/platforms.py, so its daemon gets a registry with it."""

    name, person, channel = "toychat", "u-zoe", "ops"
    platform = toychat.PLATFORM
    registry = (*REGISTRY, toychat.PLATFORM)
    token = "toy-test-token-1"

    def __init__(self) -> None:
        self.fake = toychat_fake.ToyServer("rig-room", self.token)

    async def start(self) -> None:
        self.fake.__enter__()

    async def stop(self) -> None:
        self.fake.__exit__()
        assert self.fake.violations == []

    def section(self) -> dict[str, Any]:
        return {"room": self.fake.room, "token": self.token}

    def posts(self) -> list[str]:
        return [p.edits[-1] if p.edits else p.text for p in self.fake.posts]

    def direct_messages(self) -> list[str]:
        return [
            p.edits[-1] if p.edits else p.text
            for p in self.fake.posts
            if p.channel.startswith("dm-")
        ]

    def direct_recipients(self) -> set[str]:
        return {
            p.channel.removeprefix("dm-") for p in self.fake.posts if p.channel.startswith("dm-")
        }


def _json(body: Any) -> str:
    return json.dumps(body, ensure_ascii=False)


CHATS: dict[str, type[Chat]] = {
    "slack": SlackChat,
    "discord": DiscordChat,
    "mattermost": MattermostChat,
    "toychat": ToyChat,
}


def platforms_with(*capabilities: Capability[Any]) -> list[str]:
    """The rig's platforms whose package declares every one of `capabilities`."""
    return [
        name
        for name, made in CHATS.items()
        if all(capability in made.platform.capabilities for capability in capabilities)
    ]


# the platforms that open a channel per incident, invite to it and pin its status
INCIDENT_PLATFORMS = platforms_with(INCIDENT_CHANNELS, CHANNEL_INVITES, MESSAGE_PINS)


@pytest.fixture(params=PLATFORMS)
async def chat(request: pytest.FixtureRequest) -> AsyncIterator[Chat]:
    """Every platform's fake in turn (a test that is about one platform asks for it with
    `@pytest.mark.parametrize("chat", ["slack"], indirect=True)`)."""
    made = CHATS[request.param]()
    await made.start()
    yield made
    await made.stop()


def daemon_config(tmp_path: Path, chat: Chat, **sections: Any) -> Config:
    """The config of a daemon on `chat` only (no console), plus TOML-shaped sections."""
    if chat.registry is None:
        return make_config(
            tmp_path, console={"enabled": False}, **{chat.name: chat.section()}, **sections
        )
    raw = {
        "chatopsd": {"state_db": str(tmp_path / "state.db"), "timezone": "UTC"},
        "console": {"enabled": False},
        chat.name: chat.section(),
        **sections,
    }
    model: Any = config_module.with_platforms(chat.registry)
    found: Config = model.model_validate(raw)
    return found


async def daemon(tmp_path: Path, chat: Chat, clock: FakeClock, **sections: Any) -> App:
    """A started daemon connected to `chat`; the caller stops it (a restart is a second one)."""
    app = App(daemon_config(tmp_path, chat, **sections), clock=clock)
    await app.start()
    try:
        await asyncio.wait_for(app.supervisors[0].ready_event.wait(), 5)
    except BaseException:
        await app.stop()
        raise
    return app
