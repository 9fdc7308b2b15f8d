"""Shift reminders by direct message, run after each lookahead refresh.

Each person whose shift starts within a `pagerduty.remind_before_minutes` threshold gets one
DM per shift and threshold, on every platform where their PagerDuty email is linked (config
`[pagerduty.users]` or `!pd link`) and the connector can open DMs. Which (shift, threshold)
pairs were handled and the DMs they owe are written in one transaction, so a restart neither
repeats nor loses one.

Several instances: the run reads the lease's token once; the handled keys and
each DM's claim are written only while that token is still the lease's (see PostDelivery).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import tzinfo

from chatopsd.core.ports import Clock
from chatopsd.features.oncall import reminder_rules as core
from chatopsd.features.oncall.ports import OnCallPosts
from chatopsd.features.oncall.posts import PostDelivery
from chatopsd.features.oncall.shift_rules import Lookahead
from chatopsd.ha.fence import Superseded

log = logging.getLogger("chatopsd.reminders")

# PagerDuty user id -> every "platform:user_id" to DM (may raise: nothing is recorded then)
Targets = Callable[[str], Awaitable[list[str]]]


class Reminders:
    def __init__(
        self,
        store: OnCallPosts,
        delivery: PostDelivery,
        lookahead: Callable[[], Lookahead],
        clock: Clock,
        targets: Targets,
        *,
        minutes: Sequence[int],
        tz: tzinfo | None = None,
    ) -> None:
        self.store, self.delivery, self.lookahead, self.clock = store, delivery, lookahead, clock
        self.targets = targets
        self.minutes = tuple(minutes)
        self.tz = tz

    async def run(self) -> None:
        leading, fence = self.delivery.fence()
        if not leading:
            return
        async with self.delivery.lock:
            if await self._decide(fence):
                await self.delivery.deliver_locked(fence)

    async def _decide(self, fence: int | None) -> bool:
        look = self.lookahead()
        if look.as_of is None:
            return True  # never read: nothing known, nothing decided
        dues = core.due(look.shifts, self.clock.now(), self.minutes, self.tz)
        done = await self.store.reminded([d.key for d in dues])
        handled: list[str] = []
        dms: list[tuple[str, str, str, str]] = []
        for d in dues:
            if d.key in done:
                continue
            if d.send:
                found = await self.targets(d.shift.person_id)
                if not found:
                    log.warning(
                        "no chat identity linked for %s (%s): shift reminder not sent",
                        d.shift.person_name,
                        d.shift.person_id,
                    )
                for target in found:
                    platform, _, user = target.partition(":")
                    dms.append((d.key, platform, user, d.text))
            handled.append(d.key)
        try:
            await self.store.remind(handled, dms, fence=fence)
        except Superseded:
            log.warning("reminders: the lease moved to another instance; deciding nothing")
            return False
        return True
