"""The on-call lookahead refresher: coming shifts from PagerDuty (GET /oncalls with
since/until), kept by the shifts store and served from memory.

Refreshed right after each successful on-call refresh (one paginated read for every
configured schedule), loaded at start. A failed read keeps the last good shifts and says since
when it fails; it never replaces them with an empty list.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta

from chatopsd.core.ports import Clock
from chatopsd.features.oncall.shift_rules import Lookahead, Shift
from chatopsd.features.oncall.shifts_store import SqlShifts
from chatopsd.features.pagerduty.client import PagerDutyClient, PagerDutyError, pd_time, role_of

log = logging.getLogger("chatopsd.shifts")


class LookaheadRefresher:
    def __init__(
        self,
        store: SqlShifts,
        client: PagerDutyClient,
        clock: Clock,
        *,
        schedule_ids: Sequence[str],
        days: float,
    ) -> None:
        self.store, self.client, self.clock = store, client, clock
        self.schedule_ids = tuple(dict.fromkeys(schedule_ids))
        self.days = days
        self.lookahead = Lookahead((), None)

    async def load(self) -> None:
        """The lookahead the last refresh stored (this instance's or the lease holder's)."""
        self.lookahead = await self.store.load()

    async def refresh(self) -> bool:
        """Read the coming shifts; True if they were replaced, False if the read failed."""
        now = self.clock.now()
        horizon = now + timedelta(days=self.days)
        try:
            rows = await self.client.shifts(self.schedule_ids, now, horizon)
        except PagerDutyError as exc:
            before = self.lookahead
            since = before.failing_since or now
            log.error("on-call lookahead failed (since %s): %s", since.isoformat(), exc.message)
            failed = Lookahead(before.shifts, before.as_of, before.horizon, since, exc.message)
            await self.store.record_failure(failed)
            self.lookahead = failed
            return False
        shifts = []
        for r in rows:
            start, end = pd_time(r.start), pd_time(r.end)
            if start is None or end is None:
                continue
            shifts.append(
                Shift(
                    r.row.schedule_id,
                    r.row.schedule_name,
                    role_of(r.row),
                    r.row.user_id,
                    r.row.user_name,
                    start,
                    end,
                )
            )
        fresh = Lookahead(tuple(shifts), now, horizon)
        await self.store.replace(fresh)
        self.lookahead = fresh
        return True
