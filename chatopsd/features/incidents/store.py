"""Incidents (SQLite or PostgreSQL): the incident rows, timelines, channels and messages.

A state change and its timeline entry go in one `write_many`, so they commit together or not
at all. Ids are allocated per year: read the highest and insert the next in one transaction;
with several instances on PostgreSQL a collision on UNIQUE (year, seq) is retried.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime

from chatopsd.core.messages import Destination, Sent
from chatopsd.features.incidents.api import Home
from chatopsd.features.incidents.rules import Incident, State, TimelineEntry, format_id
from chatopsd.store.db import Database, Op, Row, Tx, placeholders

_COLUMNS = (
    "id, title, severity, state, service, description, declared_at, declared_by, platform, "
    "channel, acknowledged_at, resolved_at, closed_at, resolution, last_update_at, roles, "
    "pagerduty"
)
_ENTRY = (
    "INSERT INTO incident_timeline (incident_id, at, actor, platform, channel, kind, text) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7)"
)


__all__ = ["SqlIncidentStore"]


def _ts(at: datetime | None) -> float | None:
    return None if at is None else at.timestamp()


def _dt(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def _row(r: Row) -> Incident:
    declared = _dt(r["declared_at"])
    assert declared is not None
    return Incident(
        id=r["id"],
        title=r["title"],
        severity=int(r["severity"]),
        state=State(r["state"]),
        declared_at=declared,
        declared_by=r["declared_by"],
        platform=r["platform"],
        channel=r["channel"],
        service=r["service"],
        description=r["description"],
        acknowledged_at=_dt(r["acknowledged_at"]),
        resolved_at=_dt(r["resolved_at"]),
        closed_at=_dt(r["closed_at"]),
        resolution=r["resolution"],
        last_update_at=_dt(r["last_update_at"]),
        roles=json.loads(r["roles"]),
        pagerduty=r["pagerduty"],
    )


def _entry_op(incident_id: str, e: TimelineEntry) -> Op:
    return (_ENTRY, (incident_id, e.at.timestamp(), e.actor, e.platform, e.channel, e.kind, e.text))


def _update_op(i: Incident) -> Op:
    return (
        "UPDATE incidents SET title = $1, severity = $2, state = $3, service = $4, "
        "description = $5, acknowledged_at = $6, resolved_at = $7, closed_at = $8, "
        "resolution = $9, last_update_at = $10, roles = $11, pagerduty = $12 WHERE id = $13",
        (
            i.title,
            i.severity,
            i.state.value,
            i.service,
            i.description,
            _ts(i.acknowledged_at),
            _ts(i.resolved_at),
            _ts(i.closed_at),
            i.resolution,
            _ts(i.last_update_at),
            json.dumps(dict(i.roles), sort_keys=True),
            i.pagerduty,
            i.id,
        ),
    )


class SqlIncidentStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._allocate = asyncio.Lock()

    async def create(
        self, year: int, make: Callable[[str], tuple[Incident, TimelineEntry]]
    ) -> Incident:
        """Allocate the next id of `year`, build the incident with it, store it and its entry."""

        async def allocate(tx: Tx) -> Incident | None:
            row = await tx.fetchone(
                "SELECT COALESCE(MAX(seq), 0) FROM incidents WHERE year = $1", (year,)
            )
            seq = int(row[0]) + 1 if row else 1
            incident, entry = make(format_id(year, seq))
            inserted = await tx.execute(
                f"INSERT INTO incidents (year, seq, {_COLUMNS}) "
                f"VALUES ({placeholders(19)}) ON CONFLICT DO NOTHING",
                (year, seq, *self._values(incident)),
            )
            if inserted != 1:
                return None  # another instance took this number first: read again
            await tx.execute(*_entry_op(incident.id, entry))
            return incident

        async with self._allocate:
            for _ in range(20):
                made = await self.db.transaction(allocate)
                if made is not None:
                    return made
        raise RuntimeError(f"could not allocate an incident id for {year}")

    @staticmethod
    def _values(i: Incident) -> tuple[object, ...]:
        return (
            i.id,
            i.title,
            i.severity,
            i.state.value,
            i.service,
            i.description,
            i.declared_at.timestamp(),
            i.declared_by,
            i.platform,
            i.channel,
            _ts(i.acknowledged_at),
            _ts(i.resolved_at),
            _ts(i.closed_at),
            i.resolution,
            _ts(i.last_update_at),
            json.dumps(dict(i.roles), sort_keys=True),
            i.pagerduty,
        )

    async def save(self, incident: Incident, entry: TimelineEntry) -> None:
        """Store the incident's new state and the timeline entry for it, atomically."""
        await self.db.write_many([_update_op(incident), _entry_op(incident.id, entry)])

    async def change(
        self, incident_id: str, step: Callable[[Incident], tuple[Incident, TimelineEntry]]
    ) -> tuple[Incident, Incident] | None:
        """Read, change and store an incident in one transaction: (before, after), or None
        if there is no such incident. The row is locked while `step` decides (FOR UPDATE on
        PostgreSQL; SQLite has one writer), so two instances acknowledging at once give one
        "acknowledged" and one refusal, and no change overwrites another. An exception from
        `step` (an illegal transition) rolls back and propagates."""
        lock = " FOR UPDATE" if self.db.dialect == "postgresql" else ""

        async def run(tx: Tx) -> tuple[Incident, Incident] | None:
            row = await tx.fetchone(f"SELECT * FROM incidents WHERE id = $1{lock}", (incident_id,))
            if row is None:
                return None
            before = _row(row)
            after, entry = step(before)
            await tx.execute(*_update_op(after))
            await tx.execute(*_entry_op(after.id, entry))
            return before, after

        return await self.db.transaction(run)

    async def get(self, incident_id: str) -> Incident | None:
        row = await self.db.fetchone(
            f"SELECT {_COLUMNS} FROM incidents WHERE id = $1", (incident_id,)
        )
        return None if row is None else _row(row)

    async def open(self) -> list[Incident]:
        rows = await self.db.fetchall(
            f"SELECT {_COLUMNS} FROM incidents WHERE state IN ('declared', 'acknowledged') "
            "ORDER BY severity, declared_at"
        )
        return [_row(r) for r in rows]

    async def resolved(self) -> list[Incident]:
        rows = await self.db.fetchall(
            f"SELECT {_COLUMNS} FROM incidents WHERE state = 'resolved' ORDER BY resolved_at"
        )
        return [_row(r) for r in rows]

    async def timeline(self, incident_id: str) -> list[TimelineEntry]:
        rows = await self.db.fetchall(
            "SELECT at, actor, platform, channel, kind, text FROM incident_timeline "
            "WHERE incident_id = $1 ORDER BY id",
            (incident_id,),
        )
        return [
            TimelineEntry(datetime.fromtimestamp(r[0], UTC), r[1], r[2], r[3], r[4], r[5])
            for r in rows
        ]

    async def last_update(self, incident_id: str) -> TimelineEntry | None:
        row = await self.db.fetchone(
            "SELECT at, actor, platform, channel, kind, text FROM incident_timeline "
            "WHERE incident_id = $1 AND kind IN ('update', 'acknowledged', 'resolved', "
            "'escalated', 'declared') ORDER BY id DESC LIMIT 1",
            (incident_id,),
        )
        if row is None:
            return None
        return TimelineEntry(datetime.fromtimestamp(row[0], UTC), *row[1:])

    # -- where incidents live ----------------------------------------------------------------

    async def bind_home(self, incident_id: str, home: Home) -> None:
        await self.db.write(
            "INSERT INTO incident_channels (platform, channel, thread, incident_id) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT (platform, channel, thread) "
            "DO UPDATE SET incident_id = excluded.incident_id",
            (home.platform, home.channel, home.thread or "", incident_id),
        )

    async def home(self, incident_id: str) -> Home | None:
        row = await self.db.fetchone(
            "SELECT platform, channel, thread FROM incident_channels WHERE incident_id = $1 "
            "LIMIT 1",
            (incident_id,),
        )
        return None if row is None else Home(row[0], row[1], row[2] or None)

    async def is_open_incident_channel(self, platform: str, channel: str) -> bool:
        """Whether this is a channel of its own that was made for an incident not yet closed
        (resolved still counts: it is closed, updated and followed up from there)."""
        row = await self.db.fetchone(
            "SELECT 1 FROM incident_channels c JOIN incidents i ON i.id = c.incident_id "
            "WHERE c.platform = $1 AND c.channel = $2 AND c.thread = '' AND i.state <> 'closed'",
            (platform, channel),
        )
        return row is not None

    async def incident_at(self, platform: str, channel: str, thread: str | None) -> str | None:
        """The incident whose channel (or thread) this is, if any."""
        row = await self.db.fetchone(
            "SELECT incident_id FROM incident_channels WHERE platform = $1 AND channel = $2 "
            "AND thread IN ($3, '') ORDER BY thread DESC LIMIT 1",
            (platform, channel, thread or ""),
        )
        return None if row is None else str(row[0])

    # -- messages we edit or watch -----------------------------------------------------------

    async def remember(self, incident_id: str, purpose: str, sent: Sent) -> None:
        d = sent.destination
        await self.db.write(
            "INSERT INTO incident_messages "
            "(incident_id, purpose, platform, channel, thread, message_id) "
            "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (incident_id, purpose, platform, channel) "
            "DO UPDATE SET thread = excluded.thread, message_id = excluded.message_id",
            (incident_id, purpose, d.platform, d.channel, d.thread or "", sent.message_id),
        )

    async def messages(self, incident_id: str, purpose: str) -> list[Sent]:
        rows = await self.db.fetchall(
            "SELECT platform, channel, thread, message_id FROM incident_messages "
            "WHERE incident_id = $1 AND purpose = $2 ORDER BY platform, channel",
            (incident_id, purpose),
        )
        return [Sent(Destination(r[0], r[1], r[2] or None), r[3]) for r in rows]

    async def incident_for_message(self, platform: str, message_id: str) -> str | None:
        row = await self.db.fetchone(
            "SELECT incident_id FROM incident_messages WHERE platform = $1 AND message_id = $2",
            (platform, message_id),
        )
        return None if row is None else str(row[0])

    # -- pulses ------------------------------------------------------------------------------

    async def last_pulse(self, incident_id: str) -> datetime | None:
        row = await self.db.fetchone(
            "SELECT last_pulse_at FROM incidents WHERE id = $1", (incident_id,)
        )
        return None if row is None else _dt(row[0])

    async def mark_pulse(self, incident_id: str, at: datetime) -> None:
        await self.db.write(
            "UPDATE incidents SET last_pulse_at = $1 WHERE id = $2", (at.timestamp(), incident_id)
        )
