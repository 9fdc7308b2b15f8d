"""Delivery of the on-call posts decided durably (handoff announcements, shift reminders).

One at a time (a lock), in the order decided; a post that could not be sent stays owed for the
next run and makes the run raise, so the scheduler counts the failure.

Several instances: each post is claimed in the database with the leader's fencing token
before it goes out (`OnCallPosts.claim`, ha/claims.py), so a leader paused past its lease that
wakes up sends nothing, and the next leader sends what is still owed, once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from chatopsd.core.messages import Destination, Reply
from chatopsd.core.ports import ReplySink
from chatopsd.features.oncall.ports import OnCallPosts
from chatopsd.ha.fence import Lease, Superseded, read_fence

log = logging.getLogger("chatopsd.oncall_posts")

# (platform, user id) -> the DM channel to post in
DmChannel = Callable[[str, str], Awaitable[str]]


class PostDelivery:
    def __init__(
        self,
        store: OnCallPosts,
        outbox: ReplySink,
        dm_channel: DmChannel,
        lease: Lease | None = None,
    ) -> None:
        self.store, self.outbox, self.dm_channel = store, outbox, dm_channel
        self.lease = lease  # None: the only instance (always leads, nothing to fence)
        self.lock = asyncio.Lock()

    def fence(self) -> tuple[bool, int | None]:
        """(leading, token) for one run: its decisions and deliveries all use this token."""
        return read_fence(self.lease)

    async def deliver(self) -> None:
        leading, fence = self.fence()
        if not leading:
            return
        async with self.lock:
            await self.deliver_locked(fence)

    async def deliver_locked(self, fence: int | None) -> None:
        failed = 0
        for owed in await self.store.owed():
            try:
                claim = await self.store.claim(owed, fence=fence)
            except Superseded:
                log.warning("on-call posts: the lease moved to another instance; sending nothing")
                break
            if claim is None:
                continue  # not ours to send: it is sent, or being sent by another instance
            destination = owed.destination
            if owed.dm:
                try:
                    channel = await self.dm_channel(destination.platform, destination.channel)
                except Exception as exc:  # connector errors of every kind: stays owed
                    log.warning("cannot open a DM on %s: %s", destination.platform, exc)
                    await self.store.release(owed.key, claim)
                    failed += 1
                    continue
                destination = Destination(destination.platform, channel)
            sent = await self.outbox.send(destination, Reply(text=owed.text))
            if sent is None:
                await self.store.release(owed.key, claim)
                failed += 1
                continue
            await self.store.sent(owed.key, sent.message_id)
        if failed:
            raise RuntimeError(f"{failed} on-call post(s) could not be sent; still owed")
