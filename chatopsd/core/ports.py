"""The ports handlers and middleware depend on. Implementations live outside core/."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from chatopsd.core.messages import Destination, Reply, Sent

if TYPE_CHECKING:
    # (annotations only, the handoff types too: that logic loads with the PagerDuty features)
    from chatopsd.core.identity import Link
    from chatopsd.features.approvals.rules import Action, Person
    from chatopsd.features.approvals.rules import State as ApprovalState
    from chatopsd.features.incidents.rules import Incident, TimelineEntry
    from chatopsd.features.oncall.handoff_rules import OwedPost, Step, Watched
    from chatopsd.features.status.stalking_rules import Stalker, StalkerKey


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


# -- stores: what handlers and services persist (implemented once, in store/, over SQLite and
# PostgreSQL; the composition root picks the backend) ----------------------------------------


class StalkerStore(Protocol):
    """Channels stalking the status, with the state last posted to each."""

    async def all(self) -> list[Stalker]: ...

    async def put(self, s: Stalker) -> None: ...

    async def delete(self, key: StalkerKey) -> None: ...

    async def mark(
        self, entries: Sequence[tuple[str, str, float, StalkerKey]], *, fence: int | None = None
    ) -> bool:
        """Persist (fingerprint, verdict, posted_at) per stalker, atomically. With a fencing
        token, only if that token is still the current lease's (False: a newer leader exists
        and nothing was written)."""
        ...


class IdentityLinks(Protocol):
    """`!pd link` claims, and whether each was confirmed (core/identity.py has the rules)."""

    async def claim(
        self, platform: str, user_id: str, email: str, request: str, expires: datetime
    ) -> None:
        """Record an unconfirmed claim (replacing this identity's earlier link, if any)."""
        ...

    async def confirm(self, platform: str, user_id: str, email: str, by: str) -> bool:
        """Mark the pending claim confirmed, only if it is still a claim to this email."""
        ...

    async def grant(self, platform: str, user_id: str, email: str, by: str) -> None:
        """Write the link confirmed (an admin approved it), whatever was there."""
        ...

    async def link(self, platform: str, user_id: str) -> Link | None: ...

    async def by_request(self, request: str) -> Link | None: ...

    async def holders(self, email: str) -> list[Link]:
        """Every link (confirmed or not) to this email."""
        ...

    async def drop(self, platform: str, user_id: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class Home:
    """Where an incident's conversation happens: a channel of its own, or a thread."""

    platform: str
    channel: str
    thread: str | None

    @property
    def destination(self) -> Destination:
        return Destination(self.platform, self.channel, self.thread)


class IncidentStore(Protocol):
    """Incidents, their timelines, homes (channel or thread) and the messages we edit."""

    async def create(
        self, year: int, make: Callable[[str], tuple[Incident, TimelineEntry]]
    ) -> Incident:
        """Allocate the next id of `year`, build the incident with it, store it and its entry."""
        ...

    async def save(self, incident: Incident, entry: TimelineEntry) -> None: ...

    async def change(
        self, incident_id: str, step: Callable[[Incident], tuple[Incident, TimelineEntry]]
    ) -> tuple[Incident, Incident] | None:
        """Read-change-store in one transaction with the row locked: (before, after)."""
        ...

    async def get(self, incident_id: str) -> Incident | None: ...

    async def open(self) -> list[Incident]: ...

    async def timeline(self, incident_id: str) -> list[TimelineEntry]: ...

    async def last_update(self, incident_id: str) -> TimelineEntry | None: ...

    async def bind_home(self, incident_id: str, home: Home) -> None: ...

    async def home(self, incident_id: str) -> Home | None: ...

    async def is_open_incident_channel(self, platform: str, channel: str) -> bool: ...

    async def incident_at(self, platform: str, channel: str, thread: str | None) -> str | None: ...

    async def remember(self, incident_id: str, purpose: str, sent: Sent) -> None: ...

    async def messages(self, incident_id: str, purpose: str) -> list[Sent]: ...

    async def incident_for_message(self, platform: str, message_id: str) -> str | None: ...

    async def last_pulse(self, incident_id: str) -> datetime | None: ...

    async def mark_pulse(self, incident_id: str, at: datetime) -> None: ...


class ApprovalStore(Protocol):
    """Approval and confirmation requests and their votes."""

    async def create(self, a: Action) -> None: ...

    async def set_message(self, action_id: str, message_id: str) -> None: ...

    async def get(self, action_id: str) -> Action | None: ...

    async def by_message(self, platform: str, message_id: str) -> Action | None: ...

    async def pending_due(self, now: datetime) -> list[Action]: ...

    async def pending(self) -> list[Action]: ...

    async def undispatched(self) -> list[Action]: ...

    async def vote(
        self, action_id: str, voter: Person, name: str, vote: str, at: datetime
    ) -> None: ...

    async def decide(self, action_id: str, state: ApprovalState, by: str, at: datetime) -> bool:
        """Move a pending request to `state`; False if it was no longer pending (another
        instance, or another approver, decided first)."""
        ...

    async def mark_dispatched(self, action_id: str) -> bool:
        """Claim the run of an approved request; False if it was already dispatched."""
        ...

    async def set_result(self, action_id: str, result: str) -> None: ...

    async def result(self, action_id: str) -> str | None: ...


@dataclass(frozen=True, slots=True)
class LeaseState:
    """Who runs the singleton jobs (status poll, PagerDuty refresh, approval expiry)."""

    instance: str
    leader: bool
    token: int | None  # the fencing token while leader
    holder: str | None  # the instance that holds the lease, as the database says
    instances: tuple[str, ...] = ()


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


@dataclass(frozen=True, slots=True)
class OwedCard:
    """A PagerDuty incident card still to post (message_id None) or to edit."""

    incident_id: str
    destination: Destination
    message_id: str | None
    wanted: str


class IncidentCards(Protocol):
    """The PagerDuty incidents followed in chat: the state decided for each, and its cards."""

    async def state(self, incident_id: str) -> str | None:
        """The last decided state (a PdIncident digest) or None if never seen."""
        ...

    async def states(self, incident_ids: Sequence[str]) -> dict[str, str]:
        """The decided state of each of these that was seen before."""
        ...

    async def by_number(self, number: int) -> str | None: ...

    async def unresolved(self) -> list[str]: ...

    async def decide(
        self,
        changes: Sequence[tuple[str, int, str, str]],
        destinations: Sequence[Destination],
        *,
        fence: int | None = None,
    ) -> bool:
        """Record (incident id, number, status, state) atomically; every new incident gets a
        card owed in each destination, a changed one an edit owed in each of its cards.
        With `fence` (a lease token), only while it is still the lease's (else False)."""
        ...

    async def owed(self, incident_id: str | None = None) -> list[OwedCard]:
        """Cards still to post or edit (of one incident, or all)."""
        ...

    async def claim(self, card: OwedCard, *, fence: int | None = None) -> str | None:
        """Take the delivery of one card (the claim's id), or None: the fence no longer
        holds, or another instance is delivering it."""
        ...

    async def release(self, card: OwedCard, claim: str) -> None: ...

    async def shown(self, card: OwedCard, message_id: str) -> None: ...


class ClickClaims(Protocol):
    """One write to PagerDuty per (incident, action), whichever instance got the click."""

    async def claim(
        self, incident_id: str, action: str, holder: str, now: float, event: str = ""
    ) -> str | None:
        """The claim's id if this click won, None if another write is under way (`event`:
        the chat event, which may take its own claim over when it is handled again)."""
        ...

    async def holder(self, incident_id: str, action: str) -> str | None: ...

    async def release(self, incident_id: str, action: str, claim: str) -> None: ...


class OnCallPosts(Protocol):
    """Issue 18's durable state: handoffs announced, reminders handled, posts owed.

    Singleton work (issue 19): `decide`, `remind` and `claim` take the leader's fencing token
    and write only while it is still the lease's (False / None otherwise); on a shared
    database a missing token is refused."""

    async def watched(self) -> dict[str, Watched]: ...

    async def decide(
        self,
        steps: Sequence[Step],
        destinations: Sequence[Destination],
        *,
        fence: int | None = None,
    ) -> bool:
        """Store each watch's new state and the announcements it owes, atomically."""
        ...

    async def owed(self) -> list[OwedPost]: ...

    async def claim(self, post: OwedPost, *, fence: int | None = None) -> str | None:
        """Take the sending of one owed post (the claim's id), or None: the fence no longer
        holds, it was sent meanwhile, or another instance is sending it."""
        ...

    async def release(self, key: str, claim: str) -> None: ...

    async def sent(self, key: str, message_id: str) -> None: ...

    async def reminded(self, keys: Sequence[str]) -> set[str]: ...

    async def remind(
        self,
        handled: Sequence[str],
        dms: Sequence[tuple[str, str, str, str]],
        *,
        fence: int | None = None,
    ) -> bool:
        """Record handled reminder keys and the DMs they owe, atomically."""
        ...


class KeptState(Protocol):
    """What was last written to each topic / user group kept true (issue 18), fenced like
    OnCallPosts (issue 19)."""

    async def written(self) -> dict[str, str]: ...

    async def holds(self, fence: int | None) -> bool:
        """Whether a write may go out now (the fence still holds)."""
        ...

    async def record(self, target: str, value: str, *, fence: int | None = None) -> bool: ...

    async def forget(self, target: str) -> None:
        """A write went out unrecorded: have the next leader write it again."""
        ...


def read_fence(lease: Lease | None) -> tuple[bool, int | None]:
    """(leading, token) read together, once per run of singleton work: the run then writes
    with that token, so a lease lost midway fences its writes instead of unfencing them.
    No lease: the only instance (always leads, nothing to fence)."""
    if lease is None:
        return True, None
    token = lease.token
    return lease.leader, token


@dataclass(frozen=True, slots=True)
class FollowUp:
    """A follow-up action of an incident, and the ticket it became (issue 21)."""

    incident_id: str
    n: int
    text: str
    owner: str | None
    added_by: str
    added_at: datetime
    done_at: datetime | None
    export_state: str | None  # None | sending | sent
    ticket_key: str | None
    ticket_url: str | None


class FollowUpStore(Protocol):
    """Follow-ups per incident. Export is decided (`claim`) durably before the ticket is
    created, so a crash or a second instance never creates it twice."""

    async def add(
        self, incident_id: str, text: str, owner: str | None, added_by: str, at: datetime
    ) -> int:
        """Store a follow-up; returns its number within the incident (unique across
        instances)."""
        ...

    async def list(self, incident_id: str) -> list[FollowUp]: ...

    async def get(self, incident_id: str, n: int) -> FollowUp | None: ...

    async def done(self, incident_id: str, n: int, at: datetime) -> None: ...

    async def claim(self, incident_id: str, n: int) -> bool:
        """Decide to send it; False if it was already decided (here or by another instance)."""
        ...

    async def release(self, incident_id: str, n: int) -> None: ...

    async def ticket_created(self, incident_id: str, n: int, key: str, url: str) -> None: ...


class Superseded(Exception):
    """A fenced write was refused: the lease has a newer token, this instance no longer leads."""


@dataclass(frozen=True, slots=True)
class Publication:
    """What one incident shows on the public status page (issue 21)."""

    incident_id: str
    page_incident_id: str | None
    shortlink: str | None
    status: str | None  # confirmed by the page
    wanted: str  # last queued
    components: tuple[str, ...]
    unpublished: bool


@dataclass(frozen=True, slots=True)
class QueuedCall:
    """A status page call still to make, from the durable queue."""

    id: int
    incident_id: str
    action: str  # create | update
    payload: dict[str, Any]
    actor: str
    actor_name: str
    attempts: int
    next_at: datetime
    last_error: str | None
    maybe_done: bool  # the last attempt may have taken effect (no clear answer, or a crash)


class Publications(Protocol):
    """Status page publications and the durable queue of calls still to make. Any instance
    queues; only the lease holder sends, and its worker's writes take its fencing token
    (`fence`): refused with Superseded once the token is no longer the lease's."""

    async def get(self, incident_id: str) -> Publication | None: ...

    async def start(
        self,
        incident_id: str,
        components: list[str],
        payload: dict[str, Any],
        actor: tuple[str, str],
        at: datetime,
    ) -> None:
        """Record the decision to publish and queue the create call, atomically."""
        ...

    async def queue_update(
        self,
        incident_id: str,
        wanted: str,
        payload: dict[str, Any],
        actor: tuple[str, str],
        at: datetime,
    ) -> None: ...

    async def unpublish(self, incident_id: str, at: datetime) -> int:
        """Stop publishing and cancel what is still queued; returns how many were."""
        ...

    async def heads(self) -> list[QueuedCall]:
        """The oldest pending call of each incident (calls of one incident go in order)."""
        ...

    async def pending_count(self, incident_id: str) -> int: ...

    async def last_error(self, incident_id: str) -> str | None: ...

    async def attempt_failed(
        self,
        call_id: int,
        error: str,
        retry_at: datetime,
        maybe_done: bool,
        *,
        fence: int | None = None,
    ) -> None: ...

    async def note_attempt(self, call_id: int, *, fence: int | None = None) -> bool:
        """The claim of a call, before its request goes out. False: no longer pending (do
        not send); Superseded: the fence no longer holds (send nothing)."""
        ...

    async def succeeded(
        self,
        call: QueuedCall,
        page_incident_id: str,
        shortlink: str | None,
        status: str,
        at: datetime,
        *,
        fence: int | None = None,
    ) -> None: ...

    async def cancel(self, call_id: int, reason: str, at: datetime) -> None: ...
