"""Handoff announcements after each PagerDuty refresh.

Runs only after a refresh that succeeded (the cache never calls a failed or empty read "nobody
on call"): it compares each watched (schedule, role) with the state stored in the database,
decides in one durable write, then posts what is owed. A post that could not be sent stays
owed for the next run, and the job raises so the scheduler counts the failure.

Several instances: the run reads the lease's token once; its decision and each
post's claim are written only while that token is still the lease's (see PostDelivery).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import tzinfo

from chatopsd.core.messages import Destination
from chatopsd.features.oncall import handoff_rules as rules
from chatopsd.features.oncall.ports import OnCallPosts
from chatopsd.features.oncall.posts import PostDelivery
from chatopsd.features.paging.api import OnCall
from chatopsd.ha.fence import Superseded

log = logging.getLogger("chatopsd.handoffs")


class Handoffs:
    def __init__(
        self,
        store: OnCallPosts,
        delivery: PostDelivery,
        *,
        destinations: Sequence[Destination],
        tz: tzinfo | None = None,
    ) -> None:
        self.store, self.delivery = store, delivery
        self.destinations = tuple(destinations)
        self.tz = tz
        self._lock = delivery.lock  # one decision and one delivery at a time

    async def after_refresh(self, entries: Sequence[OnCall]) -> None:
        leading, fence = self.delivery.fence()
        if not leading:
            return
        async with self._lock:
            if await self._decide(entries, fence):
                await self.delivery.deliver_locked(fence)

    async def decide(self, entries: Sequence[OnCall]) -> None:
        """Record what changed, without posting (the first half of `after_refresh`)."""
        leading, fence = self.delivery.fence()
        if not leading:
            return
        async with self._lock:
            await self._decide(entries, fence)

    async def deliver(self) -> None:
        await self.delivery.deliver()

    async def _decide(self, entries: Sequence[OnCall], fence: int | None) -> bool:
        before = await self.store.watched()
        steps = []
        for watch, seen in rules.observe(entries).items():
            s = rules.step(watch, seen, before.get(watch), self.tz)
            if s is not None:
                steps.append(s)
        try:
            await self.store.decide(steps, self.destinations, fence=fence)
        except Superseded:
            log.warning("handoffs: the lease moved to another instance; deciding nothing")
            return False
        for s in steps:
            if s.text is not None:
                log.info("handoff %s: %s", s.watch, s.text)
        return True
