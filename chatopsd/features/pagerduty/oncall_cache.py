"""The on-call cache: PagerDuty data in SQLite, refreshed by a job, read by `!ic` commands.

Requests never wait on PagerDuty: `roster()` answers from an in-memory snapshot of the
SQLite tables (loaded at start, replaced after each refresh), so `!ic` costs microseconds and
keeps answering while PagerDuty is down. The tables make the cache survive restarts.
A failed refresh keeps the last good data and records since when refreshes fail; once the
last good refresh is older than twice the interval, rosters are marked stale.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from chatopsd.core.errors import JobFailed, Unavailable
from chatopsd.core.ports import Clock
from chatopsd.features.pagerduty.client import OnCallRow, PagerDutyClient, PagerDutyError
from chatopsd.features.paging.api import OnCall, PageRecord, Person, Roster
from chatopsd.store.db import Database, Op

log = logging.getLogger("chatopsd.oncall")

_PHONE_TYPES = ("phone_contact_method", "sms_contact_method")


@dataclass
class Snapshot:
    people: dict[str, Person] = field(default_factory=dict)
    entries: dict[str, tuple[OnCall, ...]] = field(default_factory=dict)
    last_ok: datetime | None = None
    failing_since: datetime | None = None
    error: str | None = None


@dataclass(frozen=True)
class RefreshStats:
    requests: int
    seconds: float
    people: int
    entries: int


class OnCallCache:
    """Directory over the cache, plus the refresh job that fills it."""

    def __init__(
        self,
        db: Database,
        client: PagerDutyClient,
        clock: Clock,
        *,
        schedules: dict[str, Sequence[str]],  # "ic", "responders", "service:<name>"
        refresh_seconds: float,
        search_deadline: float = 3.0,
        concurrency: int = 8,
    ) -> None:
        self.concurrency = concurrency
        self.db = db
        self.client = client
        self.clock = clock
        self.schedules = schedules
        self.refresh_seconds = refresh_seconds
        self.search_deadline = search_deadline
        self.snapshot = Snapshot()
        self._lock = asyncio.Lock()
        # Run after each refresh that succeeded, with what it read (handoffs, issue 18); never
        # after a failed one, so nothing downstream mistakes an outage for "nobody on call".
        self.after_refresh: list[Callable[[Snapshot], Awaitable[None]]] = []

    # -- Directory ---------------------------------------------------------------------

    async def roster(self, group: str) -> Roster:
        snap = self.snapshot
        stale = snap.last_ok is None or self.clock.now() - snap.last_ok > timedelta(
            seconds=2 * self.refresh_seconds
        )
        return Roster(
            snap.entries.get(group, ()),
            as_of=snap.last_ok,
            stale=stale,
            failing_since=snap.failing_since if stale else None,
            error=snap.error if stale else None,
        )

    async def find(self, query: str, *, search: bool = True) -> Sequence[Person]:
        """Email or PagerDuty id exactly, then part of a name, in the cache; then PagerDuty's
        user search (bounded by a short deadline; on failure, nothing found)."""
        q = query.strip().lstrip("@").lower()
        if not q:
            return []
        people = self.snapshot.people.values()
        # (a chat mention was turned into an email by the identity service before this)
        exact = [p for p in people if q in (p.email.lower(), p.id.lower())]
        if exact:
            return exact
        named = [p for p in people if q in p.name.lower()]
        if named or not search:
            return named
        shown = query.strip()[:80]
        if self.snapshot.failing_since is not None:
            # Known down: answer now from the cache rather than wait on a search that fails.
            raise Unavailable(
                f"PagerDuty unreachable ({self.snapshot.error or 'refresh failing'}); "
                f"the cache has no one called {shown!r}"
            )
        try:
            found = await self.client.search_users(query.strip(), deadline=self.search_deadline)
        except PagerDutyError as exc:
            log.warning("user search for %r failed: %s", shown, exc.message)
            raise Unavailable(
                f"PagerDuty unreachable ({exc.message}); the cache has no one called {shown!r}"
            ) from exc
        return [_person(u) for u in found]

    # -- the refresh job ---------------------------------------------------------------

    async def load(self) -> None:
        """Read the cache left by the previous run."""
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
            snap.last_ok = _dt(meta[0])
            snap.failing_since = _dt(meta[1])
            snap.error = meta[2]
        self.snapshot = snap

    async def refresh(self) -> RefreshStats | None:
        """Fetch on-calls and their people; replace the cache, or record the failure."""
        async with self._lock:
            started, before = time.perf_counter(), self.client.requests
            try:
                people, entries = await self._fetch()
            except PagerDutyError as exc:
                await self._failed(exc.message)
                return None
            await self._store(people, entries)
            return RefreshStats(
                self.client.requests - before,
                time.perf_counter() - started,
                len(people),
                sum(len(e) for e in entries.values()),
            )

    async def refresh_job(self) -> None:
        """The scheduled refresh: a failure it kept from the daemon is still a failed run."""
        if await self.refresh() is None:
            raise JobFailed(self.snapshot.error or "refresh failed")
        snap = self.snapshot
        for hook in self.after_refresh:
            await hook(snap)

    async def _fetch(self) -> tuple[dict[str, Person], dict[str, tuple[OnCall, ...]]]:
        rows: dict[str, list[OnCallRow]] = {}
        for group, ids in self.schedules.items():
            rows[group] = await self.client.oncalls(ids) if ids else []
        if self.schedules.get("ic") and not rows.get("ic"):
            # An IC schedule with nobody on it is an outage of its own; keep the last people
            # we knew (someone can call them) and say so, rather than forget every number.
            raise PagerDutyError("PagerDuty lists nobody on call on the IC schedules")
        ids = sorted({r.user_id for group_rows in rows.values() for r in group_rows})
        # A few user fetches at a time: polite to PagerDuty's rate limit, and the limit lives
        # here (not in the client) so a page never queues behind a slow refresh.
        limit = asyncio.Semaphore(self.concurrency)

        names = {r.user_id: r.user_name for group_rows in rows.values() for r in group_rows}

        async def user(uid: str) -> dict[str, Any]:
            async with limit:
                try:
                    return await self.client.user(uid)
                except PagerDutyError as exc:
                    if exc.status != 404:
                        raise
                    # Deleted between the two calls: keep the name, without numbers.
                    log.warning("pagerduty user %s is on call but not found", uid)
                    return {"id": uid, "name": names.get(uid, uid)}

        users = await asyncio.gather(*(user(uid) for uid in ids))
        people = {uid: _person(u) for uid, u in zip(ids, users, strict=True)}
        entries: dict[str, tuple[OnCall, ...]] = {
            group: tuple(
                OnCall(
                    people[r.user_id],
                    r.schedule_id,
                    r.schedule_name,
                    _role(r),
                    _dt(r.until),
                )
                for r in group_rows
            )
            for group, group_rows in rows.items()
        }
        return people, entries

    async def _store(
        self, people: dict[str, Person], entries: dict[str, tuple[OnCall, ...]]
    ) -> None:
        now = self.clock.now()
        ops: list[Op] = [("DELETE FROM oncall_people", ()), ("DELETE FROM oncall_entries", ())]
        ops += [
            (
                "INSERT INTO oncall_people (id, name, email, phones) VALUES ($1, $2, $3, $4)",
                (p.id, p.name, p.email, json.dumps(list(p.phones))),
            )
            for p in people.values()
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
            for group, group_entries in entries.items()
            for i, e in enumerate(group_entries)
        ]
        ops.append(_meta_op(now, None, None))
        await self.db.write_many(ops)
        # (recovery is logged by the scheduler's outage log, once)
        self.snapshot = Snapshot(people, entries, now)

    async def _failed(self, error: str) -> None:
        snap = self.snapshot
        since = snap.failing_since or self.clock.now()
        # Logged by the scheduler's outage log (one WARNING, then a reminder every 5 minutes).
        log.debug("pagerduty refresh failed (failing since %s): %s", since.isoformat(), error)
        await self.db.write(*_meta_op(snap.last_ok, since, error))
        snap.failing_since, snap.error = since, error


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


def _dt(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _role(row: OnCallRow) -> str:
    name = row.schedule_name.lower()
    for word in ("trainee", "shadow"):
        if word in name:
            return word
    return {1: "primary", 2: "backup"}.get(row.level, f"level {row.level}")


def _person(user: dict[str, Any]) -> Person:
    return Person(
        id=str(user.get("id", "")),
        name=str(user.get("name") or user.get("summary") or user.get("id", "?")),
        email=str(user.get("email") or ""),
        phones=_phones(user.get("contact_methods")),
    )


def _phones(methods: Any) -> tuple[str, ...]:
    """Phone and SMS numbers, skipping blacklisted or disabled ones and references."""
    found: list[str] = []
    if not isinstance(methods, list):
        return ()
    for m in methods:
        if not isinstance(m, dict) or m.get("type") not in _PHONE_TYPES:
            continue
        if m.get("blacklisted") or m.get("enabled") is False or not m.get("address"):
            continue
        cc = m.get("country_code")
        number = f"+{cc} {m['address']}" if cc else str(m["address"])
        if number not in found:
            found.append(number)
    return tuple(found)


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
