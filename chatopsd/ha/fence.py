"""Fencing: singleton work writes only while the lease it started under is still the current
one, checked in the same transaction as the write.

A run of singleton work (the status poll, the PagerDuty incident poll, handoffs, reminders,
topics and user groups, the status page queue) reads the lease's token once, when it starts
(`read_fence`), and passes it to every write it makes. A leader paused past its lease that
wakes up mid-run then writes nothing, and so posts nothing, stale: a newer leader has a newer
token.

"No token" has one meaning: on one instance (SQLite), the only instance, nothing to fence; on
a shared database, this instance does not lead, and the write is refused. A refused write has
one signal: `Superseded`, with nothing written. (Work any instance may do, such as a click's
own update, is not fenced at all: the stores name it so, e.g. `claim_unfenced`.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from chatopsd.store.db import Database, Op, Params, Tx


class Superseded(Exception):
    """A fenced write was refused: the lease has a newer token, or (several instances) this
    instance holds none: it no longer leads. Nothing was written."""


@dataclass(frozen=True, slots=True)
class LeaseState:
    """Who runs the singleton jobs (status poll, PagerDuty refresh, approval expiry)."""

    instance: str
    leader: bool
    token: int | None  # the fencing token while leader
    holder: str | None  # the instance that holds the lease, as the database says; None: unknown
    instances: tuple[str, ...] = ()  # those alive (a recent heartbeat)
    # Why the last contact with the shared database failed; None while it answers.
    database_error: str | None = None
    # Instances whose heartbeat stopped without a clean stop (kill -9, a lost host) in the
    # last day, with when they were last seen (epoch seconds, the database's clock).
    dead: tuple[tuple[str, float], ...] = ()


class Lease(Protocol):
    """Leadership for singleton work. On SQLite the one process always leads."""

    instance: str  # this instance's name (host:pid), as claims and heartbeats record it

    @property
    def leader(self) -> bool: ...

    @property
    def token(self) -> int | None: ...

    def state(self) -> LeaseState: ...

    def alive(self) -> bool:
        """False while the other instances may count this one dead (no recent heartbeat):
        it must not answer commands then, a survivor takes them over."""
        ...

    async def start(self) -> None: ...

    async def stop(self) -> None:
        """Hand the lease over (a successor need not wait for it to expire)."""
        ...


def read_fence(lease: Lease | None) -> tuple[bool, int | None]:
    """(leading, token) read together, once per run of singleton work: the run then writes
    with that token, so a lease lost midway fences its writes instead of unfencing them.
    No lease: the only instance (always leads, nothing to fence)."""
    if lease is None:
        return True, None
    token = lease.token
    return lease.leader, token


async def fence_holds(tx: Tx, token: int) -> bool:
    """Whether `token` is still the lease's; on PostgreSQL the row stays share-locked until
    the transaction ends, so a takeover waits for this write instead of racing it."""
    lock = " FOR SHARE" if tx.dialect == "postgresql" else ""
    row = await tx.fetchone(f"SELECT token FROM lease WHERE id = 1{lock}")
    return row is not None and int(row[0]) == token


def superseded(token: int | None) -> Superseded:
    if token is None:
        return Superseded("no lease token: this instance does not lead")
    return Superseded(f"lease token {token} superseded")


async def check(tx: Tx, shared: bool, token: int | None) -> None:
    """Inside a transaction: Superseded unless a write under `token` may go in now."""
    if token is None:
        if shared:
            raise superseded(None)
    elif not await fence_holds(tx, token):
        raise superseded(token)


async def holds(db: Database, token: int | None) -> bool:
    """Whether a write under `token` may go out now (checked before a write outside the
    database, e.g. a channel topic, whose record follows)."""
    if token is None:
        return not db.shared

    async def held(tx: Tx) -> bool:
        return await fence_holds(tx, token)

    return await db.transaction(held)


async def execute_fenced(db: Database, sql: str, params: Params, token: int | None) -> int:
    """One statement under `token` (Superseded, nothing written, otherwise): the rows it
    changed."""
    shared = db.shared

    async def fenced(tx: Tx) -> int:
        await check(tx, shared, token)
        return await tx.execute(sql, params)

    return await db.transaction(fenced)


async def write_fenced(db: Database, ops: Sequence[Op], token: int | None) -> None:
    """Write `ops` in one transaction, only under `token` (see the module's docstring):
    Superseded, and nothing written, otherwise. Every fenced singleton write goes here."""
    if token is None:
        if db.shared:
            raise superseded(None)
        if ops:
            await db.write_many(ops)
        return

    async def fenced(tx: Tx) -> None:
        if not await fence_holds(tx, token):
            raise superseded(token)
        for sql, params in ops:
            await tx.execute(sql, params)

    await db.transaction(fenced)
