"""The audit trail (SQLite or PostgreSQL): append-only, each row chained to the one before.

`hash = sha256(prev_hash + canonical(row))`, where canonical is the JSON list of the row's
fields, with `cause` last when it is not NULL (rows written before migration 0010 have none,
and their hashes stay valid); with `audit.hmac_key` set it is
`"hmac:" + HMAC-SHA256(key, prev_hash + canonical)`, so rewriting rows and recomputing the chain
needs the key. Editing, deleting or inserting a row anywhere breaks the chain from there on,
which `chatopsd audit verify` reports. A row without a hash is allowed only among those written
before the chain existed (their highest id is recorded in `audit_meta` by migration 0020):
blanking every hash is tampering too. Truncating the newest rows cannot be seen from the rows
alone: the daemon logs the head hash to the journal (hourly and at shutdown) and
`verify --head HASH` checks it is still there.

`audit_meta` is append-only like `audit` (migration 0099), and it is never trusted on its own
word. The rows pin it: a keyed row's hash covers its previous-row hash, so it fixes every row
before it, and the first chained row (previous hash GENESIS) ends the legacy range, which may
therefore not reach it. What the rows cannot pin is a log in which no keyed row is left (every
hash blanked, or the chain recomputed without the key, and the markers deleted). So with a key
configured, a non-empty log must contain keyed rows: the daemon appends a keyed row when it
starts with a key on an unkeyed head (`key_chain`), and `verify` fails a keyed configuration
whose log has none.

Cost on the per-command hot path: one json.dumps and one sha256 of a few hundred bytes (a few
microseconds), no extra SQL: the previous hash is kept in memory. Appends are chained in call
order, which is also the insert order because the writer queue is FIFO.

With several instances (PostgreSQL) memory cannot know the head: each append reads it and
inserts in one transaction under an advisory transaction lock, so the chain stays one chain.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from chatopsd.core.outcome import Outcome
from chatopsd.core.ports import AuditEntry
from chatopsd.store.db import AUDIT_LOCK, Database, Tx, like_escape, like_sql, placeholders

log = logging.getLogger("chatopsd.audit")

_FIELDS = (
    "at, platform, channel, thread, actor, actor_name, kind, text, command, outcome, "
    "duration_ms, event_id, ref"
)
_COLUMNS = f"{_FIELDS}, prev_hash, hash, cause"
_INSERT = f"INSERT INTO audit ({_COLUMNS}) VALUES ({placeholders(16)})"
GENESIS = "0" * 64
_KEYED_FROM = (  # SQLite and PostgreSQL alike ("WHERE 1 = 1": SQLite's upsert-after-SELECT)
    "INSERT INTO audit_meta (key, value) "
    "SELECT 'keyed_from', CAST(MAX(id) AS TEXT) FROM audit WHERE 1 = 1 "
    "ON CONFLICT (key) DO NOTHING"
)


KEYED = "hmac:"


def row_hash(
    prev: str, values: Sequence[object], cause: str | None = None, key: bytes | None = None
) -> str:
    if cause is not None:
        values = (*values, cause)
    canonical = json.dumps(list(values), ensure_ascii=False, separators=(",", ":"))
    data = (prev + canonical).encode()
    if key:
        return KEYED + hmac.new(key, data, hashlib.sha256).hexdigest()
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, slots=True)
class Verdict:
    rows: int
    unchained: int  # rows written before the chain existed (migration 0005)
    head: str
    broken_at: int | None = None
    reason: str = ""
    keyed: int = 0  # rows chained with the HMAC key
    head_seen: bool | None = None  # `expect_head` found in the chain (None: not asked)
    unkeyed: bool = False  # a key is configured but no row is keyed (see `reason`)

    @property
    def ok(self) -> bool:
        return self.broken_at is None and self.head_seen is not False and not self.unkeyed


class SqlAuditLog:
    def __init__(
        self, db: Database, key: bytes | None = None, redact: Callable[[str], str] | None = None
    ) -> None:
        self.db = db
        self.key = key or None
        # configured secrets out of the text and cause before the row is written and hashed
        self.redact = redact
        self._last: str | None = None
        self._loading = asyncio.Lock()

    async def append(self, entry: AuditEntry) -> None:
        if self._last is None:
            await self._load()
        if self.redact is not None:
            text, cause = self.redact(entry.text), self.redact(entry.cause or "")
            if text != entry.text or cause != (entry.cause or ""):  # a copy only when it differs
                entry = replace(entry, text=text, cause=cause)
        values = _values(entry)
        cause = entry.cause or ""
        if self.db.shared:
            await self.db.transaction(lambda tx: self._append_shared(tx, values, cause))
            return
        prev = self._last or GENESIS
        digest = row_hash(prev, values, cause, self.key)
        self._last = digest  # before awaiting: the next append chains onto this one
        ops: list[tuple[str, Sequence[object]]] = [(_INSERT, (*values, prev, digest, cause))]
        if self.key is not None and not prev.startswith(KEYED):
            # the first keyed row: from here on, an unkeyed row is a rewrite without the key
            ops.append((_KEYED_FROM, ()))
        try:
            await self.db.write_many(ops)
        except BaseException:
            self._last = None  # the row may not exist: re-read the head before the next one
            raise

    async def _append_shared(
        self, tx: Tx, values: tuple[object, ...], cause: str, *, unless_keyed: bool = False
    ) -> bool:
        await tx.execute("SELECT pg_advisory_xact_lock($1)", (AUDIT_LOCK,))
        row = await tx.fetchone(
            "SELECT hash FROM audit WHERE hash IS NOT NULL ORDER BY id DESC LIMIT 1"
        )
        prev = row[0] if row else GENESIS
        if unless_keyed and str(prev).startswith(KEYED):
            return False
        await tx.execute(_INSERT, (*values, prev, row_hash(prev, values, cause, self.key), cause))
        if self.key is not None and not str(prev).startswith(KEYED):
            await tx.execute(_KEYED_FROM, ())
        return True

    async def key_chain(self, at: datetime) -> bool:
        """With a key: if the chain's head is not keyed yet, append a keyed row that says so.

        From then on the log holds a keyed row, so `verify` can tell it from a log rewritten
        without the key (which has none). Called once at start-up; True when it keyed the
        chain. The change is logged as a warning: had the key been set before, the unkeyed
        head means the chain was rewritten, which the journal's last head shows."""
        if self.key is None:
            return False
        entry = AuditEntry(
            at, "chatopsd", "", None, "chatopsd", "chatopsd", "audit",
            "audit.hmac_key is set: the chain is keyed from this row on", "audit key", "ok",
            0.0, "", "",
        )  # fmt: skip
        if self.db.shared:
            added = await self.db.transaction(
                lambda tx: self._append_shared(tx, _values(entry), "", unless_keyed=True)
            )
        else:
            await self._load()
            added = not (self._last or GENESIS).startswith(KEYED)
            if added:
                await self.append(entry)
        if added:
            row_id, _ = await self.head()
            log.warning(
                "audit: the chain is keyed from row %d on (audit.hmac_key is set and the head "
                "was not keyed). If the key was set before, the chain was rewritten: check the "
                "last head hash in the journal with `chatopsd audit verify --head HASH`",
                row_id,
            )
        return added

    async def _load(self) -> None:
        async with self._loading:
            if self._last is None:
                row = await self.db.fetchone(
                    "SELECT hash FROM audit WHERE hash IS NOT NULL ORDER BY id DESC LIMIT 1"
                )
                self._last = row[0] if row else GENESIS
                if self._last.startswith(KEYED) and self.key is None:
                    log.error(
                        "the audit chain is keyed but audit.hmac_key is not set: new rows "
                        "will not verify; restore the key"
                    )

    async def head(self) -> tuple[int, str]:
        """The newest row's id and hash (0 and GENESIS for an empty log), for the journal."""
        row = await self.db.fetchone(
            "SELECT id, hash FROM audit WHERE hash IS NOT NULL ORDER BY id DESC LIMIT 1"
        )
        return (int(row[0]), str(row[1])) if row else (0, GENESIS)

    async def since(self, since: datetime | None, limit: int = 1000) -> Sequence[AuditEntry]:
        return await self.query(since=since, limit=limit)

    async def query(
        self,
        *,
        since: datetime | None = None,
        actor: str | None = None,
        command: str | None = None,
        outcome: str | None = None,
        cause: str | None = None,
        limit: int = 1000,
    ) -> Sequence[AuditEntry]:
        """Rows in order; `actor` matches the id or the name, `command` a prefix of the
        command. `outcome` is one of core/outcome.py's set (matched exactly; anything else is
        refused, so a typo never reads as "no such rows"); `cause` is text found in the
        cause (e.g. "exit 1", "PagerDuty")."""
        params: list[object] = []

        def param(value: object) -> str:
            params.append(value)
            return f"${len(params)}"

        like = functools.partial(like_sql, dialect=self.db.dialect)
        where = [f"at >= {param(since.timestamp() if since else 0.0)}"]
        if actor:
            who = param(actor)
            where.append(f"(actor = {who} OR actor_name = {who})")
        if command:
            where.append(
                f"(command = {param(command)} OR {like('command', param(_like_prefix(command)))})"
            )
        if outcome is not None:
            if outcome not in set(Outcome):
                raise ValueError(
                    f"outcome {outcome!r} is not one of {', '.join(o.value for o in Outcome)}"
                )
            # (rows from before migration 0010 wrote e.g. "denied: <why>" in one column)
            where.append(
                f"(outcome = {param(outcome)} OR "
                f"{like('outcome', param(like_escape(outcome) + ':%'))})"
            )
        if cause:
            # (and in the outcome column of those older rows)
            found = param(f"%{like_escape(cause)}%")
            cause_text = "coalesce(cause, '')"
            where.append(f"({like('outcome', found)} OR {like(cause_text, found)})")
        rows = await self.db.fetchall(
            f"SELECT {_FIELDS}, cause FROM audit WHERE {' AND '.join(where)} "
            f"ORDER BY id LIMIT {param(limit)}",
            params,
        )
        return [AuditEntry(datetime.fromtimestamp(r[0], UTC), *r[1:]) for r in rows]

    async def of_event(self, platform: str, event_id: str, since: datetime) -> AuditEntry | None:
        """The newest row a command left from `since` on (its own, or its run's when it ran
        a process): unless it is `interrupted`, the command finished."""
        row = await self.db.fetchone(
            f"SELECT {_FIELDS}, cause FROM audit WHERE at >= $1 AND platform = $2 "
            "AND event_id = $3 ORDER BY id DESC LIMIT 1",
            (since.timestamp(), platform, event_id),
        )
        return AuditEntry(datetime.fromtimestamp(row[0], UTC), *row[1:]) if row else None

    async def verify(self, page: int = 5000, expect_head: str | None = None) -> Verdict:
        """Recompute the chain over every row; the first row that does not fit breaks it.

        `expect_head`: a head hash logged earlier; the verdict fails if it is no longer in
        the chain (rows were cut off the end, or the chain was rewritten)."""
        legacy_max = await self._meta_id("legacy_max_id") or 0
        keyed_from = await self._meta_id("keyed_from")
        prev: str | None = None  # None until the first chained row
        rows = unchained = keyed = 0
        last_id = 0
        seen = None if expect_head is None else expect_head in ("", GENESIS)

        def broken(at: int, reason: str) -> Verdict:
            return Verdict(rows, unchained, prev or GENESIS, at, reason, keyed, seen)

        while True:
            batch = await self.db.fetchall(
                f"SELECT id, {_COLUMNS} FROM audit WHERE id > $1 ORDER BY id LIMIT $2",
                (last_id, page),
            )
            if not batch:
                if self.key is not None and rows and not keyed:
                    return Verdict(
                        rows, unchained, prev or GENESIS, None, _no_keyed_row(rows, unchained),
                        keyed, seen, unkeyed=True,
                    )  # fmt: skip
                return Verdict(rows, unchained, prev or GENESIS, None, "", keyed, seen)
            for r in batch:
                rows += 1
                last_id = r[0]
                values, stored_prev, stored, cause = tuple(r[1:14]), r[14], r[15], r[16]
                if stored is None:
                    if keyed_from is not None and r[0] >= keyed_from:
                        return broken(
                            r[0],
                            f"the row has no hash though the chain is keyed from row "
                            f"{keyed_from} (rewritten without the key)",
                        )
                    if prev is not None or r[0] > legacy_max:
                        return broken(
                            r[0],
                            "the row has no hash (only rows written before the chain existed "
                            "may lack one)",
                        )
                    unchained += 1  # written before migration 0005
                    continue
                if prev is None and r[0] <= legacy_max:
                    # the chain began at this row, so the rows before the chain end before it
                    return broken(
                        r[0],
                        f"audit_meta says rows up to id {legacy_max} predate the chain, but the "
                        "chain begins at this row (the legacy range was widened)",
                    )
                if stored_prev != (prev or GENESIS):
                    return broken(
                        r[0],
                        "its previous-row hash does not match (a row before it was deleted "
                        "or inserted, or the hash edited)",
                    )
                is_keyed = str(stored).startswith(KEYED)
                if not is_keyed and keyed_from is not None and r[0] >= keyed_from:
                    return broken(
                        r[0],
                        f"the row is not keyed though the chain is keyed from row {keyed_from} "
                        "(rewritten without the key)",
                    )
                if keyed and not is_keyed:
                    return broken(
                        r[0],
                        "an unkeyed row after keyed ones (the chain was rewritten without the key)",
                    )
                if is_keyed and self.key is None:
                    return broken(r[0], "the row is keyed: verify it with audit.hmac_key set")
                if not hmac.compare_digest(
                    row_hash(stored_prev, values, cause, self.key if is_keyed else None), stored
                ):
                    return broken(r[0], "its contents do not match its hash (the row was edited)")
                keyed += is_keyed
                prev = stored
                if seen is False and stored == expect_head:
                    seen = True

    async def _meta_id(self, key: str) -> int | None:
        try:
            row = await self.db.fetchone("SELECT value FROM audit_meta WHERE key = $1", (key,))
        except Exception:  # a database from before migration 0020
            return None
        return int(row[0]) if row else None


def _no_keyed_row(rows: int, unchained: int) -> str:
    legacy = f", {unchained} of them claiming to predate the chain" if unchained else ""
    return (
        f"audit.hmac_key is set but none of the {rows} rows{legacy} is keyed. The daemon keys "
        "the chain when it starts with the key, so either it has not run with this key yet "
        "(start it, then verify again), or the keyed rows were rewritten without the key "
        "(check the last head hash in the journal with --head)"
    )


def _values(entry: AuditEntry) -> tuple[object, ...]:
    """The hashed columns of a row, in `_FIELDS` order."""
    return (
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


def _like_prefix(text: str) -> str:
    return like_escape(text) + " %"
