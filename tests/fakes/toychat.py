"""Toy Chat: an in-memory chat platform for the toy platform package (tests/toychat/), which
a test adds to the daemon by following ARCHITECTURE.md's "Add a platform" recipe.

A `ToyServer` is a platform without a network: a room people post into (payloads shaped like
a real platform's events), the bot token it accepts, and every post and edit the bot makes.
Servers are found by their room name in `SERVERS`, as a real platform is found by its URL.
Like every fake, it checks what it receives: a post with an unknown channel, an empty text or
the wrong token is recorded in `violations` and refused.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

SERVERS: dict[str, ToyServer] = {}


@dataclass
class ToyPost:
    message_id: str
    channel: str
    text: str
    thread: str | None
    edits: list[str] = field(default_factory=list)


class ToyServer:
    def __init__(self, room: str, token: str, channels: tuple[str, ...] = ("ops",)) -> None:
        self.room = room
        self.token = token
        self.channels = set(channels)
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.posts: list[ToyPost] = []
        self.violations: list[str] = []
        self.logins = 0
        self._ids = itertools.count(1)
        self._changed = asyncio.Event()

    def __enter__(self) -> ToyServer:
        SERVERS[self.room] = self
        return self

    def __exit__(self, *exc: object) -> None:
        SERVERS.pop(self.room, None)

    # -- what people do -------------------------------------------------------------------

    def say(
        self, text: str, *, user: str = "u-ada", channel: str = "ops", thread: str | None = None
    ) -> str:
        """A person posts; returns the message id. A DM channel (`dm-<user>`) is direct."""
        message_id = f"m{next(self._ids)}"
        self.events.put_nowait(
            {
                "id": message_id,
                "channel": channel,
                "user": {"id": user, "name": user.removeprefix("u-")},
                "text": text,
                "thread": thread,
                "direct": channel.startswith("dm-"),
            }
        )
        return message_id

    # -- what the bot does (the connector's calls) ----------------------------------------

    def login(self, token: str) -> bool:
        if token != self.token:
            self.violations.append("login with a wrong token")
            return False
        self.logins += 1
        return True

    def post(self, token: str, channel: str, text: str, thread: str | None) -> str:
        self._check(token, channel, text)
        posted = ToyPost(f"b{next(self._ids)}", channel, text, thread)
        self.posts.append(posted)
        self._changed.set()
        return posted.message_id

    def edit(self, token: str, message_id: str, text: str) -> None:
        found = [p for p in self.posts if p.message_id == message_id]
        if not found:
            self.violations.append(f"edit of unknown message {message_id}")
            raise LookupError(message_id)
        self._check(token, found[0].channel, text)
        found[0].edits.append(text)
        self._changed.set()

    def open_dm(self, token: str, user_id: str) -> str:
        self._check(token, f"dm-{user_id}", "-")
        return f"dm-{user_id}"

    def _check(self, token: str, channel: str, text: str) -> None:
        problem = None
        if token != self.token:
            problem = "a call with a wrong token"
        elif channel not in self.channels and not channel.startswith("dm-"):
            problem = f"a post to unknown channel {channel!r}"
        elif not text.strip():
            problem = "an empty post"
        if problem is not None:
            self.violations.append(problem)
            raise PermissionError(problem)

    # -- what the test waits for ----------------------------------------------------------

    async def wait_post(self, match: Callable[[ToyPost], bool], timeout: float = 10) -> ToyPost:
        async with asyncio.timeout(timeout):
            while True:
                for posted in self.posts:
                    if match(posted):
                        return posted
                self._changed.clear()
                await self._changed.wait()
