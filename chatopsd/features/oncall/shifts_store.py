"""The on-call lookahead in SQL: the coming shifts, when they were read, how far ahead, and
since when reading them fails. Pure persistence: the lookahead refresher (lookahead.py) reads
PagerDuty and decides; this module only keeps what it read.
"""

from __future__ import annotations

from datetime import datetime

from chatopsd.features.oncall.shift_rules import Lookahead, Shift
from chatopsd.store.db import Database, Op


class SqlShifts:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def load(self) -> Lookahead:
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
            return Lookahead(shifts, None)
        return Lookahead(shifts, _time(meta[1]), _time(meta[2]), _time(meta[3]), meta[4])

    async def replace(self, lookahead: Lookahead) -> None:
        """A good read: its shifts replace the old ones, with its as_of and horizon."""
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
            for i, s in enumerate(lookahead.shifts)
        ]
        ops.append(_meta(lookahead.as_of, lookahead.horizon, None, None))
        await self.db.write_many(ops)

    async def record_failure(self, lookahead: Lookahead) -> None:
        """A failed read: the last good shifts stay; since when it fails, and why."""
        await self.db.write(
            *_meta(lookahead.as_of, lookahead.horizon, lookahead.failing_since, lookahead.error)
        )


class MemoryShifts(SqlShifts):
    """The demo's lookahead, kept in memory (like its on-call snapshot): made-up shifts never
    reach the database."""

    def __init__(self) -> None:
        self._kept = Lookahead((), None)

    async def load(self) -> Lookahead:
        return self._kept

    async def replace(self, lookahead: Lookahead) -> None:
        self._kept = lookahead

    async def record_failure(self, lookahead: Lookahead) -> None:
        self._kept = lookahead


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


def _time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None
