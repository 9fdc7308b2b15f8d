"""A chat platform that keeps what is posted to it, for tests that need someone other than
the operator: the console is the local operator and is never rate limited, so a flood by a
chat user comes from here."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from chatopsd.app import App
from chatopsd.core.messages import Actor, Destination, Inbound, Reply, Sent


class ChatSink:
    def __init__(self, platform: str = "mattermost") -> None:
        self.platform = platform
        self.sent: list[tuple[Destination, Reply]] = []
        self._ids = itertools.count(1)

    def attach(self, app: App) -> ChatSink:
        """Deliver the app's posts to this platform here."""
        app.outbox.connectors[self.platform] = self  # type: ignore[assignment]
        return self

    def event(self, actor: str, text: str, event_id: str) -> Inbound:
        return Inbound(self.platform, "ops", Actor(actor, actor), text, event_id=event_id)

    async def run(self, session: Any) -> None:
        session.ready()
        await asyncio.Event().wait()

    async def send(self, destination: Destination, reply: Reply) -> Sent | None:
        self.sent.append((destination, reply))
        return Sent(destination, f"m{next(self._ids)}")

    async def edit(self, sent: Sent, reply: Reply) -> None:
        self.sent.append((sent.destination, reply))

    async def close(self) -> None:
        return None
