"""Delivery of the on-call posts decided durably (handoff announcements, shift reminders).

One at a time (a lock), in the order decided; a post that could not be sent stays owed for the
next run and makes the run raise, so the scheduler counts the failure.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from chatopsd.core.messages import Destination, Reply
from chatopsd.core.ports import OnCallPosts, ReplySink

log = logging.getLogger("chatopsd.oncall_posts")

# (platform, user id) -> the DM channel to post in
DmChannel = Callable[[str, str], Awaitable[str]]


class PostDelivery:
    def __init__(self, store: OnCallPosts, outbox: ReplySink, dm_channel: DmChannel) -> None:
        self.store, self.outbox, self.dm_channel = store, outbox, dm_channel
        self.lock = asyncio.Lock()

    async def deliver(self) -> None:
        async with self.lock:
            await self.deliver_locked()

    async def deliver_locked(self) -> None:
        failed = 0
        for owed in await self.store.owed():
            destination = owed.destination
            if owed.dm:
                try:
                    channel = await self.dm_channel(destination.platform, destination.channel)
                except Exception as exc:  # connector errors of every kind: stays owed
                    log.warning("cannot open a DM on %s: %s", destination.platform, exc)
                    failed += 1
                    continue
                destination = Destination(destination.platform, channel)
            sent = await self.outbox.send(destination, Reply(text=owed.text))
            if sent is None:
                failed += 1
                continue
            await self.store.sent(owed.key, sent.message_id)
        if failed:
            raise RuntimeError(f"{failed} on-call post(s) could not be sent; still owed")
