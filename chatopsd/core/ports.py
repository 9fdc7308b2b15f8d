"""The kernel's ports: the clock, small durable state, the outbox as the bus sees it, the
audit trail, the event ledger and its claims (the optional connector capabilities are in
core/capabilities.py). Implementations live outside core/; each feature's own stores are
declared in its folder."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from chatopsd.core.messages import Destination, Reply, Sent


class Clock(Protocol):
    def now(self) -> datetime:
        """Aware UTC wall time."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (for rate limits, deadlines)."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        import time

        return time.monotonic()


class ClaimUnavailable(Exception):
    """The shared database could not record the claim: the event is not ours (another
    instance may claim it; a platform that redelivers unacknowledged events will)."""


class AnswerClaim(Protocol):
    """A claimed command's answer, with several instances (or a command with outside effects
    recorded as started): the bus answers it once, then reports it answered."""

    # Answers carry the key `<event id>#<n>`: only where another instance may take the
    # command over and must find what was already posted.
    keyed: bool

    def answerable(self) -> bool:
        """True while nobody else may take the command over (our heartbeat is fresh)."""
        ...

    async def answered(self) -> None:
        """Its replies went out (after them: a kill before this gives a second answer)."""
        ...

    async def take_answer(self) -> bool:
        """Before answering while not `answerable`: True if it is still ours to answer."""
        ...


class EventLedger(Protocol):
    """Which chat events were handled. With several instances on one database, `claim` is
    THE active-active guard: exactly one instance gets True for a (platform, event id)."""

    async def claim(self, platform: str, event_id: str, payload: str | None = None) -> bool:
        """Record the event durably; False if it was seen before (a redelivery, or another
        instance claimed it first); ClaimUnavailable if it could not be recorded. `payload`
        (the command) is kept until `answered`, so another instance can take the command
        over if this one dies first."""
        ...

    async def started(self, platform: str, event_id: str, payload: str) -> bool:
        """Record durably, before a command with outside effects acts, that it started
        (`payload`: the command): if this instance dies before `answered`, the command is
        reported, never run again. False if the event is no longer ours to run (another
        instance took it over); an exception if it could not be recorded."""
        ...

    async def answered(self, platform: str, event_id: str) -> None:
        """The claimed command's replies went out: nobody needs to take it over."""
        ...

    def answerable(self) -> bool:
        """False while the others may count this instance dead (its heartbeat is late): it
        must then `take_answer` before answering."""
        ...

    async def take_answer(self, platform: str, event_id: str) -> bool:
        """Mark the claim answered before answering, if it is still ours: True when we are
        to answer, False when another instance took the command over (or we cannot tell)."""
        ...

    async def prune(self) -> int:
        """Forget claims older than the retention; returns how many were dropped."""
        ...


@dataclass(frozen=True, slots=True)
class Orphan:
    """A command a dead instance claimed and never answered (several instances)."""

    platform: str
    event_id: str
    instance: str
    payload: str  # the command, as core/messages.inbound_to_json wrote it
    seen_at: float
    # When its outside effects began (epoch seconds), or None: a started command is reported
    # (it may or may not have taken effect), never run again.
    started_at: float | None = None


class OrphanedClaims(Protocol):
    """The event ledger's side that lets a survivor take over a dead instance's commands."""

    async def orphans(self, dead_after_s: float, max_age_s: float) -> list[Orphan]:
        """Unanswered claims of instances silent for `dead_after_s`, claimed in the last
        `max_age_s`."""
        ...

    async def adopt(self, orphan: Orphan, *, resume: bool = True) -> bool:
        """Take the claim over; True for the one instance that wins it. `resume`: it is to
        be handled again here (False: only reported)."""
        ...

    async def release(self, orphan: Orphan) -> None:
        """Give an orphan adopted to be reported back to its dead owner (reporting failed)."""
        ...

    async def abandon(self, orphan: Orphan) -> None:
        """Done with it: given up (too old, unreadable), or reported as interrupted."""
        ...


@dataclass(frozen=True, slots=True)
class AuditEntry:
    at: datetime
    platform: str
    channel: str
    thread: str | None
    actor: str
    actor_name: str
    kind: str
    text: str
    command: str
    outcome: str
    duration_ms: float
    event_id: str
    ref: str
    cause: str | None = ""  # why, in a few words; None on rows written before it existed


class AuditLog(Protocol):
    async def append(self, entry: AuditEntry) -> None:
        """Durable once this returns."""
        ...

    async def since(self, since: datetime | None, limit: int = 1000) -> Sequence[AuditEntry]: ...

    async def of_event(self, platform: str, event_id: str, since: datetime) -> AuditEntry | None:
        """The newest row a command left from `since` on (its own or its run's): unless it
        is `interrupted`, the command finished."""
        ...


class ReplySink(Protocol):
    """The outbox, as handlers and the bus see it."""

    def enqueue(self, destination: Destination, reply: Reply) -> None:
        """Queue a reply; returns at once."""
        ...

    async def send(self, destination: Destination, reply: Reply) -> Sent | None:
        """Queue a reply and wait until it is posted; None if it could not be."""
        ...

    async def edit(self, sent: Sent, reply: Reply) -> Sent | None:
        """Replace a posted message; the outbox returns None if it could not."""
        ...

    async def posted(self, destination: Destination, key: str, since: float) -> bool:
        """Whether a reply marked `key` was posted there since `since` (epoch seconds);
        False where the platform cannot tell (core/capabilities.PostedAnswers)."""
        ...


class KeyValue(Protocol):
    """Small durable state: connector cursors, last-seen times."""

    async def get(self, key: str) -> str | None: ...

    async def put(self, key: str, value: str) -> None: ...
