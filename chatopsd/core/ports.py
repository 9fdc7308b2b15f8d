"""The ports handlers and middleware depend on. Implementations live outside core/."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

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


class EventLedger(Protocol):
    async def claim(self, platform: str, event_id: str) -> bool:
        """Record the event durably; False if it was seen before (a redelivery)."""
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


class AuditLog(Protocol):
    async def append(self, entry: AuditEntry) -> None:
        """Durable once this returns."""
        ...

    async def since(self, since: datetime | None, limit: int = 1000) -> Sequence[AuditEntry]: ...


class ReplySink(Protocol):
    """The outbox, as handlers and the bus see it."""

    def enqueue(self, destination: Destination, reply: Reply) -> None:
        """Queue a reply; returns at once."""
        ...

    async def send(self, destination: Destination, reply: Reply) -> Sent | None:
        """Queue a reply and wait until it is posted; None if it could not be."""
        ...

    async def edit(self, sent: Sent, reply: Reply) -> None: ...


class KeyValue(Protocol):
    """Small durable state: connector cursors, last-seen times."""

    async def get(self, key: str) -> str | None: ...

    async def put(self, key: str, value: str) -> None: ...


class ChannelRefused(Exception):
    """The platform (or the bot's permissions) did not allow creating a channel; say why."""


@runtime_checkable
class ChannelAdmin(Protocol):
    """OPTIONAL connector capability: channels of its own for incidents.

    A connector that has these methods gets per-incident channels (the App finds it with
    isinstance); one without them gets a thread under the announcement instead.
    """

    async def create_channel(self, name: str, topic: str) -> str:
        """Create a channel; return its id. Raise ChannelRefused if not allowed or the name
        is taken (the caller then tries another name, then falls back to a thread)."""
        ...

    async def invite(self, channel: str, user_ids: Sequence[str]) -> None:
        """Add people to the channel. Raise ChannelRefused if not allowed."""
        ...

    async def pin(self, sent: Sent) -> None:
        """Pin a message we posted. Raise ChannelRefused if not allowed."""
        ...


class IdentityLinks(Protocol):
    """Chat identity → PagerDuty email links made with `!pd link` (issue 17)."""

    async def link(self, platform: str, user_id: str, email: str) -> None: ...

    async def email(self, platform: str, user_id: str) -> str | None: ...

    async def holders(self, email: str) -> list[str]:
        """Every "platform:user_id" linked to this email."""
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
        self, changes: Sequence[tuple[str, int, str, str]], destinations: Sequence[Destination]
    ) -> None:
        """Record (incident id, number, status, state) atomically; every new incident gets a
        card owed in each destination, a changed one an edit owed in each of its cards."""
        ...

    async def owed(self) -> list[OwedCard]: ...

    async def shown(self, card: OwedCard, message_id: str) -> None: ...


@runtime_checkable
class UserEmails(Protocol):
    """OPTIONAL connector capability: a user's email from the platform (Mattermost
    GET /users/{id}); used to act in PagerDuty as that person."""

    async def user_email(self, user_id: str) -> str | None: ...


@runtime_checkable
class DirectMessages(Protocol):
    """OPTIONAL connector capability: a direct-message channel with one user (issue 18: shift
    reminders). Slack conversations.open, Mattermost POST /channels/direct, Discord
    POST /users/@me/channels; the reply is then sent there like any other."""

    async def dm_channel(self, user_id: str) -> str: ...


@runtime_checkable
class ChannelTopics(Protocol):
    """OPTIONAL connector capability: set a channel's topic (Slack conversations.setTopic,
    the Mattermost channel header, the Discord channel topic). Issue 18."""

    async def set_topic(self, channel: str, text: str) -> None: ...


@runtime_checkable
class UserGroups(Protocol):
    """OPTIONAL connector capability: replace a user group's members (Slack
    usergroups.users.update). Issue 18."""

    async def set_usergroup(self, group_id: str, user_ids: Sequence[str]) -> None: ...
