"""Commands a dead instance claimed and never answered, taken over by the lease holder.

With several instances on PostgreSQL each chat event is claimed by one instance before any
work (store/events.py), and the claim keeps the command until its answer went out. When that
instance dies in between (kill -9, a lost host), nobody else would handle it: every other
instance saw the event already claimed. This job, on the lease holder, finds such claims of
instances whose heartbeat is `lease_seconds` old and handles them again. The dead instance
stopped answering at half that (Lease.alive), so a command is never answered twice by the
two. Commands older than `max_age_s` are not run any more (a 20-minute-old `!ic page` could
page someone for something already solved): they are logged and given up.
"""

from __future__ import annotations

import logging

from chatopsd.core.bus import Bus
from chatopsd.core.messages import inbound_from_json
from chatopsd.core.ports import Clock, OrphanedClaims

log = logging.getLogger("chatopsd.takeover")


class Takeover:
    def __init__(
        self,
        ledger: OrphanedClaims,
        bus: Bus,
        clock: Clock,
        *,
        dead_after_s: float,
        max_age_s: float = 600.0,
        lookback_s: float = 3600.0,
    ) -> None:
        self.ledger, self.bus, self.clock = ledger, bus, clock
        self.dead_after_s = dead_after_s
        self.max_age_s = max_age_s
        self.lookback_s = lookback_s
        self.resumed = 0  # commands handled again here (health, tests)
        self.given_up = 0  # too old or unreadable

    async def sweep(self) -> None:
        for orphan in await self.ledger.orphans(self.dead_after_s, self.lookback_s):
            age = self.clock.now().timestamp() - orphan.seen_at
            try:
                event = inbound_from_json(orphan.payload)
            except (ValueError, KeyError, TypeError) as exc:
                event, why = None, f"unreadable ({exc.__class__.__name__})"
            else:
                why = f"{age:.0f} s old, too late to run now" if age > self.max_age_s else ""
            if event is None or why:
                log.error(
                    "gave up on %s event %s that %s claimed and never answered: %s",
                    orphan.platform,
                    orphan.event_id,
                    orphan.instance,
                    why,
                )
                await self.ledger.abandon(orphan)
                self.given_up += 1
                continue
            if not await self.ledger.adopt(orphan):
                continue  # another survivor took it, or its owner answered after all
            log.warning(
                "taking over %s event %s from %s (claimed %.1f s ago, never answered)",
                orphan.platform,
                orphan.event_id,
                orphan.instance,
                age,
            )
            self.resumed += 1
            self.bus.resume(event, orphan.seen_at)
