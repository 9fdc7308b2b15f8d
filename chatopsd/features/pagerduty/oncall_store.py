"""The on-call snapshot in SQL: who is on call per group, their contact details, when the last
refresh succeeded or since when refreshes fail; and the page log. Pure persistence: the
PagerDuty refresher (oncall_refresher.py) decides what goes in, this module only keeps it.

The tables make the cache survive restarts, and let a follower instance read what the lease
holder's refresh wrote.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

from chatopsd.features.paging.api import OnCall, PageRecord, Person
from chatopsd.store.db import Database, Op


@dataclass
class Snapshot:
    """The on-call data as of the last good refresh, and the state of the refreshes since."""

    people: dict[str, Person] = field(default_factory=dict)
    entries: dict[str, tuple[OnCall, ...]] = field(default_factory=dict)
    last_ok: datetime | None = None
    failing_since: datetime | None = None
    error: str | None = None


class OnCallSnapshots:
    """The last good on-call snapshot and the refresh state, in the database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def load(self) -> Snapshot:
        """The snapshot left by the last refresh (this instance's, an earlier run's, or the
        lease holder's); an empty one before the first."""
        snap = Snapshot()
        for row in await self.db.fetchall("SELECT id, name, email, phones FROM oncall_people"):
            snap.people[row[0]] = Person(row[0], row[1], row[2], tuple(json.loads(row[3])))
        grouped: dict[str, list[OnCall]] = {}
        for row in await self.db.fetchall(
            "SELECT grp, schedule_id, schedule_name, role, person_id, until "
            "FROM oncall_entries ORDER BY grp, position"
        ):
            person = snap.people.get(row[4]) or Person(row[4], row[4])
            until = datetime.fromisoformat(row[5]) if row[5] else None
            grouped.setdefault(row[0], []).append(OnCall(person, row[1], row[2], row[3], until))
        snap.entries = {g: tuple(e) for g, e in grouped.items()}
        meta = await self.db.fetchone(
            "SELECT last_ok, failing_since, error FROM oncall_refresh WHERE id = 1"
        )
        if meta is not None:
            snap.last_ok = _time(meta[0])
            snap.failing_since = _time(meta[1])
            snap.error = meta[2]
        return snap

    async def replace(self, snap: Snapshot) -> None:
        """A good refresh: its people and entries replace the old ones, in one transaction."""
        ops: list[Op] = [("DELETE FROM oncall_people", ()), ("DELETE FROM oncall_entries", ())]
        ops += [
            (
                "INSERT INTO oncall_people (id, name, email, phones) VALUES ($1, $2, $3, $4)",
                (p.id, p.name, p.email, json.dumps(list(p.phones))),
            )
            for p in snap.people.values()
        ]
        ops += [
            (
                "INSERT INTO oncall_entries (grp, position, schedule_id, schedule_name, role, "
                "person_id, until) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                (
                    group,
                    i,
                    e.schedule_id,
                    e.schedule_name,
                    e.role,
                    e.person.id,
                    e.until.isoformat() if e.until else None,
                ),
            )
            for group, group_entries in snap.entries.items()
            for i, e in enumerate(group_entries)
        ]
        ops.append(_meta_op(snap.last_ok, snap.failing_since, snap.error))
        await self.db.write_many(ops)

    async def record_failure(
        self, last_ok: datetime | None, failing_since: datetime, error: str
    ) -> None:
        """A failed refresh: the last good data stays; since when it fails, and why."""
        await self.db.write(*_meta_op(last_ok, failing_since, error))


class MemorySnapshots(OnCallSnapshots):
    """The demo's on-call snapshot, kept in memory: made-up people never reach the database,
    so a daemon configured for real later never serves them from its cache."""

    def __init__(self) -> None:
        self._snap = Snapshot()

    async def load(self) -> Snapshot:
        return self._snap

    async def replace(self, snap: Snapshot) -> None:
        self._snap = snap

    async def record_failure(
        self, last_ok: datetime | None, failing_since: datetime, error: str
    ) -> None:
        self._snap = Snapshot(self._snap.people, self._snap.entries, last_ok, failing_since, error)


def _meta_op(last_ok: datetime | None, failing_since: datetime | None, error: str | None) -> Op:
    return (
        "INSERT INTO oncall_refresh (id, last_ok, failing_since, error) VALUES (1, $1, $2, $3) "
        "ON CONFLICT (id) DO UPDATE SET last_ok = excluded.last_ok, "
        "failing_since = excluded.failing_since, error = excluded.error",
        (
            last_ok.isoformat() if last_ok else None,
            failing_since.isoformat() if failing_since else None,
            error,
        ),
    )


def _time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


class SqlPageLog:
    """The last page per target, in the database: "already paged" survives a restart."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def last(self, target: str) -> PageRecord | None:
        row = await self.db.fetchone(
            "SELECT at, actor, url FROM recent_pages WHERE target = $1", (target,)
        )
        if row is None:
            return None
        return PageRecord(target, datetime.fromtimestamp(row[0], UTC), row[1], row[2])

    async def record(self, record: PageRecord) -> None:
        await self.db.write(
            "INSERT INTO recent_pages (target, at, actor, url) VALUES ($1, $2, $3, $4) "
            "ON CONFLICT (target) DO UPDATE SET at = excluded.at, actor = excluded.actor, "
            "url = excluded.url",
            (record.target, record.at.timestamp(), record.actor, record.url),
        )
