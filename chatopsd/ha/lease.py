"""Leadership for singleton work (status poll, PagerDuty refresh, approval expiry, pulses).

SQLite: one process, always the leader (`LocalLease`).

PostgreSQL (`PgLease`), several instances:
- A session advisory lock, held on a connection of its own (never a pooled one: a pooled
  connection goes back to the pool with the lock still on it). When that connection dies,
  PostgreSQL drops the lock: a dead leader frees the lease without anyone's help.
- The `lease` row carries a fencing token, raised by every takeover, and `renewed_at`
  (the database's clock). Singleton writes check the token in their own transaction
  (ha/fence.py), so a leader that was paused and wakes up cannot write, and so
  cannot post, a stale change.
- Self-fencing: the leader renews every `lease_seconds / 5` on its lock connection and counts
  itself leader only until `lease_seconds / 2` after the last renewal it SENT that succeeded
  (a renewal may not take longer than `lease_seconds / 5`). A candidate that got the lock
  still waits until `renewed_at` is `0.75 × lease_seconds` old. So a partitioned leader has
  stopped its singleton work before anyone else can start it, and a `kill -9`ed one is
  replaced within `0.75 × lease_seconds` plus one renewal interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from typing import TYPE_CHECKING, Any

from chatopsd.ha.fence import LeaseState
from chatopsd.store.db import LEASE_LOCK

if TYPE_CHECKING:
    from chatopsd.store.postgres import PgDatabase

log = logging.getLogger("chatopsd.lease")

_NOW = "extract(epoch from clock_timestamp())"
# How long an instance that stopped without a clean stop stays listed as dead.
DEAD_LISTED_SECONDS = 86400.0


def _cause(exc: BaseException, timeout: float) -> str:
    """A failed contact with the database in a few words (no URL: it names the server)."""
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g} s"
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}"[:200] if text else type(exc).__name__


def instance_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class LocalLease:
    """The single process on SQLite: always the leader, no token needed."""

    def __init__(self, instance: str | None = None) -> None:
        self.instance = instance or instance_name()

    @property
    def leader(self) -> bool:
        return True

    @property
    def token(self) -> int | None:
        return None

    def state(self) -> LeaseState:
        return LeaseState(self.instance, True, None, self.instance, (self.instance,))

    def alive(self) -> bool:
        return True

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


class PgLease:
    def __init__(
        self, db: PgDatabase, *, lease_seconds: float = 10.0, instance: str | None = None
    ) -> None:
        self.db = db
        self.lease_seconds = lease_seconds
        self.instance = instance or instance_name()
        self.interval = lease_seconds / 5
        self._conn: Any = None
        self._token: int | None = None
        self._valid_until = 0.0  # time.monotonic() past which we no longer count as leader
        self._holder: str | None = None
        self._instances: tuple[str, ...] = ()
        self._dead: tuple[tuple[str, float], ...] = ()
        # Why the last lease round / heartbeat could not reach the database (None: it did).
        self._round_error: str | None = None
        self._beat_error: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._started = time.time()
        self._beat_sent = -1e9  # time.monotonic() when the last heartbeat that went in was sent
        self.changes = 0  # leadership gained or lost (tests, health)
        self._was_leader = False
        self._stopping = False

    @property
    def leader(self) -> bool:
        ok = self._token is not None and time.monotonic() < self._valid_until
        if self._was_leader and not ok:
            log.warning("lease: %s is no longer the leader (not renewed in time)", self.instance)
            self._was_leader = False
            self.changes += 1
        return ok

    @property
    def token(self) -> int | None:
        return self._token if self.leader else None

    def alive(self) -> bool:
        """Whether the others still count this instance alive. They take over its unanswered
        commands once its heartbeat is `lease_seconds` old (database clock); it stops
        answering after `lease_seconds / 2` without a heartbeat, so never both answer."""
        return time.monotonic() - self._beat_sent < self.lease_seconds / 2

    def state(self) -> LeaseState:
        leader = self.leader
        error = self._round_error or self._beat_error
        # Who holds the lease is known only from a round that reached the database, and it
        # is not this instance unless it still leads (its lease may be running out).
        holder = None if error else self._holder
        if holder == self.instance and not leader:
            holder = None
        return LeaseState(
            self.instance,
            leader,
            self._token if leader else None,
            holder,
            self._instances,
            error,
            self._dead,
        )

    async def start(self) -> None:
        await self.tick()  # a lone instance leads at once (after a clean handover, too)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="lease")

    async def stop(self) -> None:
        """Hand the lease over cleanly: a successor need not wait for it to expire."""
        if self._task is not None:
            self._stopping = True
            # One cancel can be lost: Python 3.11's wait_for returns the result of a step that
            # completes in the same instant instead of raising, and the loop would then run
            # (and keep the daemon from stopping) forever. Cancel until it has ended (5 s at
            # most: stopping must not hang on it either way).
            for _ in range(20):
                if self._task.done():
                    break
                self._task.cancel()
                await asyncio.wait({self._task}, timeout=0.25)
            else:
                log.error("lease: the renewal task of %s did not stop", self.instance)
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._release(self._conn, self._token), self.interval)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                self.db.write("DELETE FROM instances WHERE id = $1", (self.instance,)),
                self.interval,
            )
        self._step_down("stopping")
        await self._drop_connection()

    async def _release(self, conn: Any, token: int | None) -> None:
        """Give the lease and the lock up before the connection goes: closing it alone frees
        the lock only once the server has noticed, so a successor ticking right after our
        stop() could still find it taken and wait out the lease instead."""
        if token is not None:
            await conn.execute(
                "UPDATE lease SET holder = NULL, renewed_at = 0 WHERE id = 1 AND token = $1",
                token,
            )
        await conn.fetchval("SELECT pg_advisory_unlock($1)", LEASE_LOCK)

    async def _run(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.interval)
            await self.tick()

    async def tick(self) -> None:
        """One round: (re)connect, take or renew the lease, heartbeat; never raises."""
        try:
            if self._conn is None or self._conn.is_closed():
                self._conn = await asyncio.wait_for(self.db.connect(), self.lease_seconds)
            await asyncio.wait_for(self._round(), self.interval)
            self._round_error = None
        except Exception as exc:
            if self._token is not None:
                log.error("lease: lost the database connection (%s); stepping down", exc)
            self._round_error = _cause(exc, self.interval)
            self._holder = None
            self._step_down(str(exc))
            await self._drop_connection()
        try:
            await asyncio.wait_for(self._heartbeat(), self.interval)
            self._beat_error = None
        except Exception as exc:
            self._beat_error = _cause(exc, self.interval)
            log.debug("lease heartbeat failed: %s", exc)

    async def _round(self) -> None:
        sent = time.monotonic()
        conn = self._conn
        if self._token is not None:
            row = await conn.fetchrow(
                f"UPDATE lease SET renewed_at = {_NOW} WHERE id = 1 AND token = $1 "
                "RETURNING holder",
                self._token,
            )
            if row is None:
                self._step_down("another instance holds a newer token")
                return
            self._valid_until = sent + self.lease_seconds / 2
            self._holder = self.instance
            return
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", LEASE_LOCK):
            row = await conn.fetchrow(
                f"SELECT holder, renewed_at < {_NOW} - $1 FROM lease WHERE id = 1",
                2.0 * self.lease_seconds,
            )
            self._holder = row[0] if row else None
            if row is not None and row[1]:
                await self._evict(conn)
            return
        row = await conn.fetchrow(
            f"UPDATE lease SET token = token + 1, holder = $1, renewed_at = {_NOW} "
            f"WHERE id = 1 AND (holder IS NULL OR holder = $1 OR renewed_at < {_NOW} - $2) "
            "RETURNING token",
            self.instance,
            0.75 * self.lease_seconds,
        )
        if row is None:
            # The lock is ours but the old leader may still be in its last half lease:
            # keep the lock and wait for its renewal to age.
            self._holder = await conn.fetchval("SELECT holder FROM lease WHERE id = 1")
            return
        self._token = int(row[0])
        self._valid_until = sent + self.lease_seconds / 2
        self._holder = self.instance
        self._was_leader = True
        self.changes += 1
        log.warning("lease: %s is the leader (token %d)", self.instance, self._token)

    async def _evict(self, conn: Any) -> None:
        """The lock is held but the lease has not been renewed for two lease periods: its
        holder is cut off without the server noticing (a silent partition keeps the TCP
        session open for hours). End that session so the lock is freed; the holder, unable
        to renew, stopped its singleton work long ago."""
        high, low = LEASE_LOCK >> 32, LEASE_LOCK & 0xFFFFFFFF
        ended = await conn.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' "
            "AND classid = $1 AND objid = $2 AND objsubid = 1 AND granted "
            "AND pid <> pg_backend_pid()",
            high,
            low,
        )
        if ended:
            log.warning("lease: ended the session of unresponsive leader %s", self._holder)

    async def _heartbeat(self) -> None:
        # The database's clock: other instances judge "dead" by it (events.orphans).
        sent = time.monotonic()
        await self.db.write(
            f"INSERT INTO instances (id, started_at, seen_at) VALUES ($1, $2, {_NOW}) "
            "ON CONFLICT (id) DO UPDATE SET seen_at = excluded.seen_at",
            (self.instance, self._started),
        )
        self._beat_sent = sent
        # alive: a heartbeat within 3 lease periods; dead: silent since, kept for a day (a
        # clean stop deletes its row, so only the ones that vanished stay listed)
        rows = await self.db.fetchall(
            f"SELECT id, seen_at, seen_at > {_NOW} - $1 FROM instances "
            f"WHERE seen_at > {_NOW} - $2 ORDER BY id",
            (3 * self.lease_seconds, DEAD_LISTED_SECONDS),
        )
        self._instances = tuple(str(r[0]) for r in rows if r[2])
        self._dead = tuple((str(r[0]), float(r[1])) for r in rows if not r[2])
        if self.leader:
            await self.db.write(
                f"DELETE FROM instances WHERE seen_at < {_NOW} - $1", (DEAD_LISTED_SECONDS,)
            )

    def _step_down(self, why: str) -> None:
        if self._token is not None:
            log.warning("lease: %s steps down (%s)", self.instance, why)
            if self._was_leader:
                self.changes += 1
        self._token = None
        self._valid_until = 0.0
        self._was_leader = False

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            # terminate(): do not wait on a socket that may be dead; the server drops the lock.
            with contextlib.suppress(Exception):
                conn.terminate()
