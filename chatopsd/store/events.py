"""The event ledger: which chat events were already handled (dedupe across restarts, and the
claim that lets several instances share the work: exactly one handles each event).

With several instances (PostgreSQL) a claim also records who claimed it and the command
itself, until it was answered. When an instance dies between claim and answer, the lease
holder finds the claim (`orphans`), takes it over (`adopt`, a compare-and-set on the owner)
and handles it again: a `kill -9` loses no command. A page handled twice is still one
PagerDuty incident (the incident_key is the chat event).

A command with outside effects (core/commands.CommandSpec.effects) is recorded as `started`
before it acts, on either database. One left started and unanswered is not handled again:
it is reported (core/ports.Orphan.started_at; chatopsd/ha/takeover.py), by a survivor or, on
SQLite, by the next start.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from chatopsd.core.ports import ClaimUnavailable, Clock, Orphan
from chatopsd.store.db import Database

log = logging.getLogger("chatopsd.store")

# PostgreSQL's clock, in epoch seconds: heartbeats are written with it, so "dead" does not
# depend on the hosts' clocks agreeing. (Orphans are looked for only on PostgreSQL.)
DB_NOW = "extract(epoch from clock_timestamp())"


_CLAIM = (
    "INSERT INTO events (platform, event_id, seen_at) VALUES ($1, $2, $3) "
    "ON CONFLICT (platform, event_id) DO NOTHING"
)
# Before a command with outside effects acts: the row (ours, still open) says it started.
# On SQLite the claim row exists already (no instance); an event without an id gets its own.
_STARTED = (
    "INSERT INTO events (platform, event_id, seen_at, instance, payload, started_at) "
    "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (platform, event_id) DO UPDATE SET "
    "started_at = excluded.started_at, instance = excluded.instance, payload = excluded.payload "
    "WHERE events.done_at IS NULL "
    "AND (events.instance IS NULL OR events.instance = excluded.instance)"
)
_CLAIM_OWNED = (
    "INSERT INTO events (platform, event_id, seen_at, instance, payload) "
    "VALUES ($1, $2, $3, $4, $5) "
    "ON CONFLICT (platform, event_id) DO NOTHING"
)


_ANSWERED = (
    "UPDATE events SET done_at = $1, payload = NULL "
    "WHERE platform = $2 AND event_id = $3 AND instance = $4"
)
# The same on PostgreSQL without waiting for the server's disk (`synchronous_commit` off for
# this one statement's own transaction: set_config(..., true) lasts until its commit). Losing
# the mark is harmless: only a server crash loses it, and then the claim looks unanswered,
# yet it is taken over only if its instance is dead too, and the survivor finds the reply
# already posted (the replies of a shared claim are keyed: Bus._deliver) and does not post
# it again. A commit costs a disk flush; this one is on every command's path.
_ANSWERED_LAZY = (
    "WITH lazy AS (SELECT set_config('synchronous_commit', 'off', true)) "
    "UPDATE events SET done_at = $1, payload = NULL FROM lazy "
    "WHERE platform = $2 AND event_id = $3 AND instance = $4"
)


class SqlEventLedger:
    """Claims live in memory for speed and in the database for restarts and other instances.

    Platforms redeliver within minutes (Slack) or on reconnect (Mattermost resync, Discord
    resume), so a claim is kept for `retention_s` (the redelivery horizon, 3 days) in the
    database, however many events came since; then it is pruned. Memory is a front cache
    bounded by `max_events` (every event is claimed, before the rate limiter, so a flood of
    fresh ids must not grow it without end): past the bound the oldest are dropped from
    memory only.

    On SQLite (one process) memory answers alone while it holds every claim of the horizon,
    and the row is written through the group commit. Once claims were dropped from memory
    (or a restart loaded only the newest `max_events`), an id memory does not know is looked
    up by the insert itself (`ON CONFLICT DO NOTHING`: no row went in, so it was claimed
    before). On PostgreSQL that insert always decides: the instance whose row went in owns
    the event; memory only short-cuts what this instance already saw.
    """

    def __init__(
        self,
        db: Database,
        clock: Clock,
        retention_s: float = 3 * 86400,
        max_events: int = 50_000,
        instance: str = "",
        answerable: Callable[[], bool] = lambda: True,
    ) -> None:
        self.db, self.clock, self.retention_s = db, clock, retention_s
        self.max_events = max_events
        self.instance = instance
        self._seen: dict[tuple[str, str], float] = {}  # insertion order = claim order
        # The newest claim time memory dropped (or never loaded): while it is older than the
        # horizon, memory holds every claim that still counts and a miss is a new event.
        self._forgotten_until = float("-inf")
        self._adopted: set[tuple[str, str]] = set()  # taken over, to be handled once more
        # commands with outside effects started here and not yet answered
        self._started: set[tuple[str, str]] = set()
        self.failures = 0  # claims that could not be made (shared database unreachable)
        self.adopted = 0  # commands taken over from dead instances
        # False while the others may count this instance dead (its heartbeat is late): it then
        # answers only what `take_answer` still gives it (the lease's `alive`).
        self.answerable = answerable

    def __len__(self) -> int:
        return len(self._seen)

    async def load(self) -> int:
        cutoff = self.clock.now().timestamp() - self.retention_s
        rows = await self.db.fetchall(
            "SELECT platform, event_id, seen_at FROM events WHERE seen_at >= $1 "
            "ORDER BY seen_at DESC LIMIT $2",
            (cutoff, self.max_events),
        )
        rows.reverse()  # oldest first, like claims made in this run
        self._seen = {(r[0], r[1]): r[2] for r in rows}
        if len(rows) >= self.max_events:
            self._forgotten_until = rows[0][2]  # older claims stay in the database only
        return len(self._seen)

    async def claim(self, platform: str, event_id: str, payload: str | None = None) -> bool:
        """True when this instance is to handle the event. `payload` (the command as JSON) is
        kept with a shared claim until `answered`, so a survivor can take it over."""
        key = (platform, event_id)
        if key in self._adopted:
            self._adopted.discard(key)
            return True
        if key in self._seen:
            return False
        now = self.clock.now().timestamp()
        self._seen[key] = now
        while len(self._seen) > self.max_events:
            oldest = next(iter(self._seen))
            self._forgotten_until = max(self._forgotten_until, self._seen.pop(oldest))
        try:
            if self.db.shared:
                won = await self._claim_shared(platform, event_id, now, payload)
            elif self._forgotten_until < now - self.retention_s:
                await self.db.write(_CLAIM, (platform, event_id, now))  # memory knows all
                won = True
            else:
                # memory dropped claims that still count: the database decides
                won = await self.db.execute(_CLAIM, (platform, event_id, now)) == 1
        except BaseException:
            del self._seen[key]  # not recorded, so not claimed
            raise
        return won

    async def _claim_shared(
        self, platform: str, event_id: str, now: float, payload: str | None
    ) -> bool:
        try:
            return (
                await self.db.execute(
                    _CLAIM_OWNED, (platform, event_id, now, self.instance, payload)
                )
                == 1
            )
        except Exception as exc:
            # Cut off from the shared database: not ours. Another instance may claim and
            # answer it; answering "internal error" here would be a second, wrong answer.
            self.failures += 1
            log.error("cannot claim %s event %s (database: %s)", platform, event_id, exc)
            raise ClaimUnavailable(str(exc)) from exc

    async def started(self, platform: str, event_id: str, payload: str) -> bool:
        """Before a command with outside effects acts: recorded durably (a raise when it
        cannot be: the command must not act unrecorded). False when the event is no longer
        ours to run (a survivor took it over)."""
        key = (platform, event_id)
        now = self.clock.now().timestamp()
        changed = await self.db.execute(
            _STARTED, (platform, event_id, now, self.instance, payload, now)
        )
        if changed != 1:
            return False
        self._started.add(key)
        return True

    async def answered(self, platform: str, event_id: str) -> None:
        """The command's replies went out (or were given up on): nobody takes it over now."""
        key = (platform, event_id)
        if not self.db.shared and key not in self._started:
            return  # one process, nothing started: nobody to take over from, nothing to tell
        self._started.discard(key)
        try:
            await self.db.execute(
                _ANSWERED_LAZY if self.db.dialect == "postgresql" else _ANSWERED,
                (self.clock.now().timestamp(), platform, event_id, self.instance),
            )
        except Exception as exc:
            # The survivor may take it over and answer a second time; say so where it shows.
            log.error("could not mark %s event %s answered (database: %s)", platform, event_id, exc)

    async def take_answer(self, platform: str, event_id: str, attempts: int = 3) -> bool:
        """The claim is still ours and nobody may take it over any more: it is marked
        answered first, then answered (at most once: lost if we die in between). Used only
        when our heartbeat is late, so a survivor may be taking the command over right now;
        this UPDATE and its compare-and-set lock the same row, so exactly one of the two
        wins."""
        if not self.db.shared:
            return True
        self._started.discard((platform, event_id))
        for attempt in range(attempts):
            try:
                changed = await self.db.execute(
                    "UPDATE events SET done_at = $1, payload = NULL WHERE platform = $2 "
                    "AND event_id = $3 AND instance = $4 AND done_at IS NULL",
                    (self.clock.now().timestamp(), platform, event_id, self.instance),
                )
            except Exception as exc:
                log.warning("cannot confirm %s event %s is ours (%s)", platform, event_id, exc)
                await asyncio.sleep(0.5 * (attempt + 1))
                continue
            return changed == 1
        return False  # out of reach: a survivor takes it over once we count as dead

    async def orphans(self, dead_after_s: float, max_age_s: float) -> list[Orphan]:
        """Unanswered claims of instances whose heartbeat is older than `dead_after_s`
        (by the database's clock, the one every heartbeat is written with), claimed in the
        last `max_age_s`; a started one whenever it was claimed (it is reported, not run).

        On SQLite (one process), the commands an earlier run started and never finished: it
        was killed or crashed mid-command."""
        if not self.db.shared:
            rows = await self.db.fetchall(
                "SELECT platform, event_id, instance, payload, seen_at, started_at FROM events "
                "WHERE started_at IS NOT NULL AND done_at IS NULL ORDER BY seen_at LIMIT 500"
            )
            return [
                Orphan(r[0], r[1], r[2] or "", r[3], r[4], r[5])
                for r in rows
                if (r[0], r[1]) not in self._started  # this run's own, still running
            ]
        rows = await self.db.fetchall(
            "SELECT e.platform, e.event_id, e.instance, e.payload, e.seen_at, e.started_at "
            "FROM events e WHERE e.done_at IS NULL AND e.payload IS NOT NULL "
            "AND (e.seen_at >= $1 OR e.started_at IS NOT NULL) "
            "AND e.instance <> $2 AND NOT EXISTS (SELECT 1 FROM instances i "
            f"WHERE i.id = e.instance AND i.seen_at > {DB_NOW} - $3) "
            "ORDER BY e.seen_at LIMIT 500",
            (self.clock.now().timestamp() - max_age_s, self.instance, dead_after_s),
        )
        return [Orphan(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows]

    async def adopt(self, orphan: Orphan, *, resume: bool = True) -> bool:
        """Take the claim over from its dead owner; True if we won it (one survivor does).
        `resume`: it is to be handled again here (not when it is only reported)."""
        changed = await self.db.execute(
            "UPDATE events SET instance = $1 WHERE platform = $2 AND event_id = $3 "
            "AND instance = $4 AND done_at IS NULL",
            (self.instance, orphan.platform, orphan.event_id, orphan.instance),
        )
        if changed != 1:
            return False
        if resume:
            self._adopted.add((orphan.platform, orphan.event_id))
        self.adopted += 1
        return True

    async def release(self, orphan: Orphan) -> None:
        """Give back an orphan adopted to be reported, when reporting it failed: it is its
        dead owner's again, for the next sweep (here or on another survivor)."""
        await self.db.execute(
            "UPDATE events SET instance = $1 WHERE platform = $2 AND event_id = $3 "
            "AND instance = $4 AND done_at IS NULL",
            (orphan.instance, orphan.platform, orphan.event_id, self.instance),
        )

    async def abandon(self, orphan: Orphan) -> None:
        """Done with an orphan: given up on (too old to answer now, unreadable; logged by
        the caller), or reported as interrupted after `adopt`."""
        await self.db.execute(
            "UPDATE events SET done_at = $1, payload = NULL "
            "WHERE platform = $2 AND event_id = $3 AND instance IN ($4, $5)",
            (
                self.clock.now().timestamp(),
                orphan.platform,
                orphan.event_id,
                orphan.instance,
                self.instance,
            ),
        )

    async def prune(self) -> int:
        """Forget claims older than the redelivery horizon (by time only: a claim inside it
        still stops a redelivery, however many events came since)."""
        cutoff = self.clock.now().timestamp() - self.retention_s
        await self.db.write("DELETE FROM events WHERE seen_at < $1", (cutoff,))
        old = [k for k, t in self._seen.items() if t < cutoff]
        for k in old:
            del self._seen[k]
        return len(old)
