"""A fake chat PLATFORM connector (not a fake of our code): it records what the daemon posts,
edits, pins and creates, and can refuse channel creation like a bot without the permission.

It implements the Connector contract and the methods of the incident channel, invite and pin
capabilities (core/capabilities), so the incident handler, told it has them, treats it exactly
as it would a real platform that can create channels.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

from chatopsd.connectors.base import Session
from chatopsd.core.capabilities import ChannelRefused
from chatopsd.core.messages import Destination, Reply, Sent


@dataclass
class Posted:
    destination: Destination
    reply: Reply
    message_id: str
    edits: list[Reply] = field(default_factory=list)

    @property
    def current(self) -> Reply:
        return self.edits[-1] if self.edits else self.reply


class FakeChat:
    def __init__(
        self,
        platform: str = "chat",
        *,
        refuse_channels: str | None = None,
        refuse_pins: str | None = None,
        broken_invites: Exception | None = None,
    ) -> None:
        self.platform = platform
        self.refuse_channels = refuse_channels
        self.refuse_pins = refuse_pins
        self.broken_invites = broken_invites  # raised by invite: a bug in a connector
        self.posts: list[Posted] = []
        self.channels: dict[str, str] = {}  # id -> name
        self.members: dict[str, set[str]] = {}
        self.pins: list[str] = []
        self._ids = itertools.count(1)

    # Connector
    async def run(self, session: Session) -> None:
        session.ready()
        await asyncio.Event().wait()

    async def send(self, destination: Destination, reply: Reply) -> Sent | None:
        posted = Posted(destination, reply, f"m{next(self._ids)}")
        self.posts.append(posted)
        return Sent(destination, posted.message_id)

    async def edit(self, sent: Sent, reply: Reply) -> None:
        self.by_id(sent.message_id).edits.append(reply)

    async def close(self) -> None:
        return None

    # incident channels, invites, pins (core/capabilities)
    async def create_channel(self, name: str, topic: str) -> str:
        if self.refuse_channels:
            raise ChannelRefused(self.refuse_channels)
        if name in self.channels.values():
            raise ChannelRefused(f"name_taken: {name}")
        channel_id = f"C{next(self._ids)}"
        self.channels[channel_id] = name
        self.members[channel_id] = set()
        return channel_id

    async def invite(self, channel: str, user_ids: Sequence[str]) -> None:
        if self.broken_invites is not None:
            raise self.broken_invites
        self.members[channel].update(user_ids)

    async def pin(self, sent: Sent) -> None:
        if self.refuse_pins:
            raise ChannelRefused(self.refuse_pins)
        self.pins.append(sent.message_id)

    # for assertions
    def by_id(self, message_id: str) -> Posted:
        return next(p for p in self.posts if p.message_id == message_id)

    def in_channel(self, channel: str, thread: str | None = None) -> list[Posted]:
        return [
            p
            for p in self.posts
            if p.destination.channel == channel
            and (thread is None or p.destination.thread == thread)
        ]
