"""The on-call lookahead cache: coming shifts from GET /oncalls with since/until, in the database.

Refreshed right after each successful on-call refresh (one paginated read for every
configured schedule), loaded at start, served from memory. A failed read keeps the last good
shifts and says since when it fails; it never replaces them with an empty list.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from chatopsd.core.ports import Clock
from chatopsd.features.oncall.shift_rules import Lookahead, Shift
from chatopsd.features.pagerduty.client import PagerDutyClient, PagerDutyError
from chatopsd.features.pagerduty.oncall_cache import _dt, _role
from chatopsd.store.db import Database, Op

log = logging.getLogger("chatopsd.shifts")


class ShiftCache:
    def __init__(
        self,
        db: Database,
        client: PagerDutyClient,
        clock: Clock,
        *,
        schedule_ids: Sequence[str],
        days: float,
    ) -> None:
        self.db, self.client, self.clock = db, client, clock
        self.schedule_ids = tuple(dict.fromkeys(schedule_ids))
        self.days = days
        self.lookahead = Lookahead((), None)

    async def load(self) -> None:
        """The shifts and their as_of/horizon in ONE statement (one snapshot on both
        databases): a follower reloading while the leader's refresh commits never pairs old
        shifts with the new horizon. The meta row is joined onto every shift row; with no
        shift stored, one row carries the meta alone."""
        rows = await self.db.fetchall(
            "SELECT m.id, m.last_ok, m.horizon, m.failing_since, m.error, s.schedule_id, "
            "s.schedule_name, s.role, s.person_id, s.person_name, s.start, s.until "
            "FROM (SELECT 1 AS one) AS base "
            "LEFT JOIN oncall_shifts_meta AS m ON m.id = 1 "
            "LEFT JOIN oncall_shifts AS s ON 1 = 1 "
            "ORDER BY s.position"
        )
        shifts = tuple(
            Shift(
                r[5],
                r[6],
                r[7],
                r[8],
                r[9],
                datetime.fromisoformat(r[10]),
                datetime.fromisoformat(r[11]),
            )
            for r in rows
            if r[5] is not None
        )
        meta = rows[0]  # always one row at least (the base)
        if meta[0] is None:  # never refreshed
            self.lookahead = Lookahead(shifts, None)
        else:
            self.lookahead = Lookahead(shifts, _dt(meta[1]), _dt(meta[2]), _dt(meta[3]), meta[4])

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
            await self.db.write(*_meta(before.as_of, before.horizon, since, exc.message))
            self.lookahead = Lookahead(
                before.shifts, before.as_of, before.horizon, since, exc.message
            )
            return False
        shifts = []
        for r in rows:
            start, end = _dt(r.start), _dt(r.end)
            if start is None or end is None:
                continue
            shifts.append(
                Shift(
                    r.row.schedule_id,
                    r.row.schedule_name,
                    _role(r.row),
                    r.row.user_id,
                    r.row.user_name,
                    start,
                    end,
                )
            )
        ops: list[Op] = [("DELETE FROM oncall_shifts", ())]
        ops += [
            (
                "INSERT INTO oncall_shifts (position, schedule_id, schedule_name, role, "
                "person_id, person_name, start, until) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                (
                    i,
                    s.schedule_id,
                    s.schedule_name,
                    s.role,
                    s.person_id,
                    s.person_name,
                    s.start.isoformat(),
                    s.end.isoformat(),
                ),
            )
            for i, s in enumerate(shifts)
        ]
        ops.append(_meta(now, horizon, None, None))
        await self.db.write_many(ops)
        self.lookahead = Lookahead(tuple(shifts), now, horizon)
        return True


def _meta(
    last_ok: datetime | None,
    horizon: datetime | None,
    failing_since: datetime | None,
    error: str | None,
) -> Op:
    return (
        "INSERT INTO oncall_shifts_meta (id, last_ok, horizon, failing_since, error) "
        "VALUES (1, $1, $2, $3, $4) ON CONFLICT (id) DO UPDATE SET last_ok = excluded.last_ok, "
        "horizon = excluded.horizon, failing_since = excluded.failing_since, "
        "error = excluded.error",
        tuple(
            x.isoformat() if isinstance(x, datetime) else x
            for x in (last_ok, horizon, failing_since, error)
        ),
    )
