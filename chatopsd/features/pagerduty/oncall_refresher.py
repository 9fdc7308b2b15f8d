"""The PagerDuty on-call refresher: the job that reads who is on call and keeps the snapshot,
and the Directory `!ic` commands read.

Requests never wait on PagerDuty: `roster()` answers from the in-memory snapshot (loaded from
the snapshot store at start, replaced after each refresh), so `!ic` costs microseconds and
keeps answering while PagerDuty is down. A failed refresh keeps the last good data and records
since when refreshes fail; once the last good refresh is older than twice the interval,
rosters are marked stale.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from chatopsd.core.errors import JobFailed, Unavailable
from chatopsd.core.ports import Clock
from chatopsd.features.pagerduty.client import (
    OnCallRow,
    PagerDutyClient,
    PagerDutyError,
    pd_time,
    role_of,
)
from chatopsd.features.pagerduty.oncall_store import OnCallSnapshots, Snapshot
from chatopsd.features.paging.api import OnCall, Person, Roster

log = logging.getLogger("chatopsd.oncall")

_PHONE_TYPES = ("phone_contact_method", "sms_contact_method")


@dataclass(frozen=True)
class RefreshStats:
    requests: int
    seconds: float
    people: int
    entries: int


class OnCallRefresher:
    """Directory over the snapshot, plus the refresh job that fills it."""

    def __init__(
        self,
        store: OnCallSnapshots,
        client: PagerDutyClient,
        clock: Clock,
        *,
        schedules: dict[str, Sequence[str]],  # "ic", "responders", "service:<name>"
        refresh_seconds: float,
        search_deadline: float = 3.0,
        concurrency: int = 8,
    ) -> None:
        self.concurrency = concurrency
        self.store = store
        self.client = client
        self.clock = clock
        self.schedules = schedules
        self.refresh_seconds = refresh_seconds
        self.search_deadline = search_deadline
        self.snapshot = Snapshot()
        self._lock = asyncio.Lock()
        # Run after each refresh that succeeded, with what it read (handoffs, the lookahead);
        # never after a failed one, so nothing downstream mistakes an outage for "nobody on
        # call".
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
        """Email or PagerDuty id exactly, then part of a name, in the snapshot; then
        PagerDuty's user search (bounded by a short deadline; on failure, nothing found)."""
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
        """Read the snapshot left by the previous run (or by the lease holder)."""
        self.snapshot = await self.store.load()

    async def refresh(self) -> RefreshStats | None:
        """Fetch on-calls and their people; replace the snapshot, or record the failure."""
        async with self._lock:
            started, before = time.perf_counter(), self.client.requests
            try:
                people, entries = await self._fetch()
            except PagerDutyError as exc:
                await self._failed(exc.message)
                return None
            snap = Snapshot(people, entries, self.clock.now())
            await self.store.replace(snap)
            # (recovery is logged by the scheduler's outage log, once)
            self.snapshot = snap
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
                    role_of(r),
                    pd_time(r.until),
                )
                for r in group_rows
            )
            for group, group_rows in rows.items()
        }
        return people, entries

    async def _failed(self, error: str) -> None:
        snap = self.snapshot
        since = snap.failing_since or self.clock.now()
        # Logged by the scheduler's outage log (one WARNING, then a reminder every 5 minutes).
        log.debug("pagerduty refresh failed (failing since %s): %s", since.isoformat(), error)
        await self.store.record_failure(snap.last_ok, since, error)
        snap.failing_since, snap.error = since, error


def person_of(user: dict[str, Any]) -> Person:
    """A PagerDuty user object (with its contact methods) as a Person with phone numbers."""
    return _person(user)


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
