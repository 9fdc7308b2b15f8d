"""Status page publications: what each incident shows publicly, and the durable queue of calls
still to make (a restart, even kill -9, loses none of them).

Several instances (PostgreSQL): any instance queues (the one that handled the
command); only the lease holder sends. The worker's writes take the leader's fencing token
(`fence`): `note_attempt` (the claim of a call, made before its request goes out),
`attempt_failed` and `succeeded` (the mark-sent) happen only while that token is still the
lease's, checked in the same transaction (ha/fence.py). A leader paused past its
lease gets no claim, so it sends nothing; whoever leads next finds the call pending, with
`maybe_done` set if an attempt may have gone out, and checks the page before sending again.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from typing import Any

from chatopsd.features.statuspage.ports import Publication, QueuedCall
from chatopsd.ha.fence import execute_fenced, write_fenced
from chatopsd.store.db import Database


def _pub(r: sqlite3.Row) -> Publication:
    return Publication(
        r["incident_id"],
        r["page_incident_id"],
        r["shortlink"],
        r["status"],
        r["wanted"],
        tuple(json.loads(r["components"])),
        bool(r["unpublished"]),
    )


class SqlPublications:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, incident_id: str) -> Publication | None:
        row = await self.db.fetchone(
            "SELECT * FROM public_incidents WHERE incident_id = $1", (incident_id,)
        )
        return None if row is None else _pub(row)

    async def start(
        self,
        incident_id: str,
        components: list[str],
        payload: dict[str, Any],
        actor: tuple[str, str],
        at: datetime,
    ) -> None:
        """Record the decision to publish and queue the create call, atomically."""
        await self.db.write_many(
            [
                (
                    "INSERT INTO public_incidents (incident_id, wanted, components, updated_at) "
                    "VALUES ($1, 'investigating', $2, $3)",
                    (incident_id, json.dumps(components), at.timestamp()),
                ),
                self._enqueue_op(incident_id, "create", payload, actor, at),
            ]
        )

    async def queue_update(
        self,
        incident_id: str,
        wanted: str,
        payload: dict[str, Any],
        actor: tuple[str, str],
        at: datetime,
    ) -> None:
        await self.db.write_many(
            [
                (
                    "UPDATE public_incidents SET wanted = $1, updated_at = $2 "
                    "WHERE incident_id = $3",
                    (wanted, at.timestamp(), incident_id),
                ),
                self._enqueue_op(incident_id, "update", payload, actor, at),
            ]
        )

    @staticmethod
    def _enqueue_op(
        incident_id: str, action: str, payload: dict[str, Any], actor: tuple[str, str], at: datetime
    ) -> tuple[str, tuple[object, ...]]:
        return (
            "INSERT INTO public_outbox (incident_id, action, payload, actor, actor_name, "
            "created_at, next_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            (
                incident_id,
                action,
                json.dumps(payload, sort_keys=True),
                actor[0],
                actor[1],
                at.timestamp(),
                at.timestamp(),
            ),
        )

    async def unpublish(self, incident_id: str, at: datetime) -> int:
        """Stop publishing: mark it, and cancel what is still queued. Returns how many."""
        pending = await self.db.fetchone(
            "SELECT COUNT(*) FROM public_outbox WHERE incident_id = $1 AND state = 'pending'",
            (incident_id,),
        )
        await self.db.write_many(
            [
                (
                    "UPDATE public_incidents SET unpublished = 1, updated_at = $1 "
                    "WHERE incident_id = $2",
                    (at.timestamp(), incident_id),
                ),
                (
                    "UPDATE public_outbox SET state = 'cancelled', done_at = $1 "
                    "WHERE incident_id = $2 AND state = 'pending'",
                    (at.timestamp(), incident_id),
                ),
            ]
        )
        return int(pending[0]) if pending else 0

    async def heads(self) -> list[QueuedCall]:
        """The oldest pending call of each incident: calls of one incident go in order."""
        rows = await self.db.fetchall(
            "SELECT * FROM public_outbox WHERE id IN (SELECT MIN(id) FROM public_outbox "
            "WHERE state = 'pending' GROUP BY incident_id) ORDER BY next_at, id"
        )
        return [
            QueuedCall(
                r["id"],
                r["incident_id"],
                r["action"],
                json.loads(r["payload"]),
                r["actor"],
                r["actor_name"],
                int(r["attempts"]),
                datetime.fromtimestamp(r["next_at"], UTC),
                r["last_error"],
                bool(r["maybe_done"]),
            )
            for r in rows
        ]

    async def pending_count(self, incident_id: str) -> int:
        row = await self.db.fetchone(
            "SELECT COUNT(*) FROM public_outbox WHERE incident_id = $1 AND state = 'pending'",
            (incident_id,),
        )
        return int(row[0]) if row else 0

    async def last_error(self, incident_id: str) -> str | None:
        row = await self.db.fetchone(
            "SELECT last_error FROM public_outbox WHERE incident_id = $1 AND state = 'pending' "
            "ORDER BY id LIMIT 1",
            (incident_id,),
        )
        return None if row is None else row[0]

    async def attempt_failed(
        self,
        call_id: int,
        error: str,
        retry_at: datetime,
        maybe_done: bool,
        *,
        fence: int | None = None,
    ) -> None:
        await write_fenced(
            self.db,
            [
                (
                    "UPDATE public_outbox SET last_error = $1, next_at = $2, maybe_done = $3 "
                    "WHERE id = $4",
                    (error, retry_at.timestamp(), int(maybe_done), call_id),
                )
            ],
            fence,
        )

    async def note_attempt(self, call_id: int, *, fence: int | None = None) -> bool:
        """Counted before the request goes out, so a crash mid-call is known on restart (and
        by the next leader). False, nothing written: the call is no longer pending (do not
        send it); Superseded: the fence no longer holds (send nothing)."""
        sql = (
            "UPDATE public_outbox SET attempts = attempts + 1, maybe_done = 1 "
            "WHERE id = $1 AND state = 'pending'"
        )
        return await execute_fenced(self.db, sql, (call_id,), fence) == 1

    async def succeeded(
        self,
        call: QueuedCall,
        page_incident_id: str,
        shortlink: str | None,
        status: str,
        at: datetime,
        *,
        fence: int | None = None,
    ) -> None:
        await write_fenced(
            self.db,
            [
                (
                    "UPDATE public_outbox SET state = 'done', done_at = $1, last_error = NULL "
                    "WHERE id = $2",
                    (at.timestamp(), call.id),
                ),
                (
                    "UPDATE public_incidents SET page_incident_id = $1, "
                    "shortlink = COALESCE($2, shortlink), status = $3, updated_at = $4 "
                    "WHERE incident_id = $5",
                    (page_incident_id, shortlink, status, at.timestamp(), call.incident_id),
                ),
            ],
            fence,
        )

    async def cancel(self, call_id: int, reason: str, at: datetime) -> None:
        await self.db.write(
            "UPDATE public_outbox SET state = 'cancelled', last_error = $1, done_at = $2 "
            "WHERE id = $3",
            (reason, at.timestamp(), call_id),
        )
