"""The one test rig: the daemon as production builds it, on one platform fake at a time.

`daemon(...)` is `App.start()`: the kernel, then every feature's `install` from
`features.FEATURES`, then the connectors; nothing is wired by hand. The `chat` fixture is
parametrised over PLATFORMS: a scenario written once against `Chat` runs on every platform's
protocol-level fake, through its real client library. What differs between platforms (who
the linked person is, what a channel's topic is called, where a direct message lands) is in
each `Chat` below: the table of per-platform expectations.

A new platform is one `Chat` subclass and one entry in PLATFORMS.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from chatopsd.app import App
from chatopsd.config import Config
from tests.conftest import FakeClock, make_config
from tests.fakes import discord as discord_fake
from tests.fakes import mattermost as mattermost_fake
from tests.fakes import slack as slack_fake
from tests.fixtures.discord import text_of
from tests.fixtures.mattermost import plain

PLATFORMS: list[str] = ["slack", "discord", "mattermost"]


class Chat:
    """One platform's fake, seen the same way by every scenario."""

    name: ClassVar[str]
    person: ClassVar[str]  # a chat user the scenarios link to a PagerDuty person
    channel: ClassVar[str]  # a channel the bot is in, whose topic the scenarios keep

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


class SlackChat(Chat):
    name, person, channel = "slack", "U0CAROL", "C0ONCALL"

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


class DiscordChat(Chat):
    # Discord gives no email: the link is in config, like every platform's here
    name, person, channel = "discord", "424242424242", str(discord_fake.CHANNEL_ID)

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


class MattermostChat(Chat):
    name, person, channel = (
        "mattermost",
        str(mattermost_fake.ALICE["id"]),
        "oncallchan0000000000000000",
    )

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


CHATS: dict[str, type[Chat]] = {
    "slack": SlackChat,
    "discord": DiscordChat,
    "mattermost": MattermostChat,
}


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
    return make_config(
        tmp_path, console={"enabled": False}, **{chat.name: chat.section()}, **sections
    )


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
