"""The audit trail (SQLite or PostgreSQL): append-only, each row chained to the one before.

`hash = sha256(prev_hash + canonical(row))`, where canonical is the JSON list of the row's
fields. Editing, deleting or inserting a row anywhere breaks the chain from there on, which
`chatopsd audit verify` reports. (Truncating the newest rows cannot be seen from the rows
alone: keep the head hash `verify` prints somewhere else if that matters.)

Cost on the per-command hot path: one json.dumps and one sha256 of a few hundred bytes (a few
microseconds), no extra SQL: the previous hash is kept in memory. Appends are chained in call
order, which is also the insert order because the writer queue is FIFO.

With several instances (PostgreSQL) memory cannot know the head: each append reads it and
inserts in one transaction under an advisory transaction lock, so the chain stays one chain.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from chatopsd.core.ports import AuditEntry
from chatopsd.store.db import AUDIT_LOCK, Database, Tx

_FIELDS = (
    "at, platform, channel, thread, actor, actor_name, kind, text, command, outcome, "
    "duration_ms, event_id, ref"
)
_COLUMNS = f"{_FIELDS}, prev_hash, hash"
_INSERT = f"INSERT INTO audit ({_COLUMNS}) VALUES ({', '.join('?' * 15)})"
GENESIS = "0" * 64


def row_hash(prev: str, values: Sequence[object]) -> str:
    canonical = json.dumps(list(values), ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256((prev + canonical).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Verdict:
    rows: int
    unchained: int  # rows written before the chain existed (migration 0005)
    head: str
    broken_at: int | None = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.broken_at is None


class SqlAuditLog:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._last: str | None = None
        self._loading = asyncio.Lock()

    async def append(self, entry: AuditEntry) -> None:
        if self._last is None:
            await self._load()
        values = (
            entry.at.timestamp(),
            entry.platform,
            entry.channel,
            entry.thread,
            entry.actor,
            entry.actor_name,
            entry.kind,
            entry.text,
            entry.command,
            entry.outcome,
            entry.duration_ms,
            entry.event_id,
            entry.ref,
        )
        if self.db.shared:
            await self.db.transaction(lambda tx: self._append_shared(tx, values))
            return
        prev = self._last or GENESIS
        digest = row_hash(prev, values)
        self._last = digest  # before awaiting: the next append chains onto this one
        try:
            await self.db.write(_INSERT, (*values, prev, digest))
        except BaseException:
            self._last = None  # the row may not exist: re-read the head before the next one
            raise

    @staticmethod
    async def _append_shared(tx: Tx, values: tuple[object, ...]) -> None:
        await tx.execute("SELECT pg_advisory_xact_lock(?)", (AUDIT_LOCK,))
        row = await tx.fetchone(
            "SELECT hash FROM audit WHERE hash IS NOT NULL ORDER BY id DESC LIMIT 1"
        )
        prev = row[0] if row else GENESIS
        await tx.execute(_INSERT, (*values, prev, row_hash(prev, values)))

    async def _load(self) -> None:
        async with self._loading:
            if self._last is None:
                row = await self.db.fetchone(
                    "SELECT hash FROM audit WHERE hash IS NOT NULL ORDER BY id DESC LIMIT 1"
                )
                self._last = row[0] if row else GENESIS

    async def since(self, since: datetime | None, limit: int = 1000) -> Sequence[AuditEntry]:
        return await self.query(since=since, limit=limit)

    async def query(
        self,
        *,
        since: datetime | None = None,
        actor: str | None = None,
        command: str | None = None,
        outcome: str | None = None,
        limit: int = 1000,
    ) -> Sequence[AuditEntry]:
        """Rows in order; `actor` matches the id or the name, `command` a prefix of the
        command, `outcome` a substring (e.g. "denied", "exit 1")."""
        where = ["at >= ?"]
        params: list[object] = [since.timestamp() if since else 0.0]
        if actor:
            where.append("(actor = ? OR actor_name = ?)")
            params += [actor, actor]
        if command:
            where.append("(command = ? OR command LIKE ? ESCAPE '\\')")
            params += [command, _like_prefix(command)]
        if outcome:
            where.append("outcome LIKE ? ESCAPE '\\'")
            params.append(f"%{_escape_like(outcome)}%")
        rows = await self.db.fetchall(
            f"SELECT {_FIELDS} FROM audit WHERE {' AND '.join(where)} ORDER BY id LIMIT ?",
            (*params, limit),
        )
        return [AuditEntry(datetime.fromtimestamp(r[0], UTC), *r[1:]) for r in rows]

    async def verify(self, page: int = 5000) -> Verdict:
        """Recompute the chain over every row; the first row that does not fit breaks it."""
        prev: str | None = None  # None until the first chained row
        rows = unchained = 0
        last_id = 0
        while True:
            batch = await self.db.fetchall(
                f"SELECT id, {_COLUMNS} FROM audit WHERE id > ? ORDER BY id LIMIT ?",
                (last_id, page),
            )
            if not batch:
                return Verdict(rows, unchained, prev or GENESIS)
            for r in batch:
                rows += 1
                last_id = r[0]
                values, stored_prev, stored = tuple(r[1:14]), r[14], r[15]
                if stored is None:
                    if prev is not None:
                        return Verdict(rows, unchained, prev, r[0], "the row has no hash")
                    unchained += 1  # written before migration 0005
                    continue
                if stored_prev != (prev or GENESIS):
                    return Verdict(
                        rows,
                        unchained,
                        prev or GENESIS,
                        r[0],
                        "its previous-row hash does not match (a row before it was deleted "
                        "or inserted, or the hash edited)",
                    )
                if row_hash(stored_prev, values) != stored:
                    return Verdict(
                        rows,
                        unchained,
                        prev or GENESIS,
                        r[0],
                        "its contents do not match its hash (the row was edited)",
                    )
                prev = stored


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _like_prefix(text: str) -> str:
    return _escape_like(text) + " %"


SqliteAuditLog = SqlAuditLog  # the former name, still imported elsewhere
