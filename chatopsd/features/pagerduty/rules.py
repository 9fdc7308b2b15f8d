"""PagerDuty incidents as chat sees them: the domain type, its card, and the ports. Pure.

An incident's card is the message posted to `pagerduty.incident_channels` and edited in place
as the incident changes; its text depends only on the incident's state (no "5 minutes ago"),
so "has it changed?" is a plain comparison of `PdIncident.digest()`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from chatopsd.core.messages import Button, Priority, Reply
from chatopsd.core.times import UTC_TIMES, Times

OPEN = ("triggered", "acknowledged")


@dataclass(frozen=True, slots=True)
class PdUser:
    id: str
    name: str
    email: str


@dataclass(frozen=True, slots=True)
class PdIncident:
    """One PagerDuty incident. `changed_by`/`changed_at`: its last status change (a person's
    name, or the service when PagerDuty itself did it). `level` is the escalation level when
    known (set by our own escalations)."""

    id: str
    number: int
    title: str
    status: str
    urgency: str = "high"
    service_id: str = ""
    service: str = ""
    assignees: tuple[str, ...] = ()
    assignee_ids: tuple[str, ...] = ()
    url: str = ""
    created_at: str = ""
    changed_by: str = ""
    changed_at: str = ""
    level: int | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def open(self) -> bool:
        return self.status in OPEN

    def digest(self) -> str:
        """Everything the card shows, as one comparable string."""
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_digest(cls, text: str) -> PdIncident:
        raw: dict[str, Any] = json.loads(text)
        for key in ("assignees", "assignee_ids", "notes"):
            raw[key] = tuple(raw.get(key) or ())
        return cls(**raw)

    def with_level(self, level: int | None) -> PdIncident:
        return replace(self, level=level)


def hhmm(iso: str, times: Times = UTC_TIMES) -> str:
    """ "2026-11-23T21:14:00Z" → "21:14 UTC" (in chatopsd.timezone); "" stays ""."""
    if not iso:
        return ""
    try:
        at = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return iso
    return times.hm(at if at.tzinfo else at.replace(tzinfo=UTC))


def state_line(inc: PdIncident, times: Times = UTC_TIMES) -> str:
    """ "acknowledged by Grace Hopper at 21:14", "resolved by Ada Lovelace at 21:40"."""
    text = inc.status
    if inc.status != "triggered" and inc.changed_by:
        text += f" by {inc.changed_by}"
    if inc.changed_at and inc.status != "triggered":
        text += f" at {hhmm(inc.changed_at, times)}"
    if inc.level and inc.level > 1 and inc.open:
        text += f", escalated to level {inc.level}"
    return text


def buttons(inc: PdIncident) -> tuple[Button, ...]:
    if not inc.open:
        return ()
    found: list[Button] = []
    if inc.status == "triggered":
        found.append(Button("Acknowledge", f"pd ack {inc.id}", "primary"))
    found.append(Button("Resolve", f"pd resolve {inc.id}", "danger"))
    return tuple(found)


def card(inc: PdIncident, times: Times = UTC_TIMES) -> Reply:
    """The message for one incident: title, state, urgency, assignees, link, buttons."""
    fields = [
        ("Status", state_line(inc, times)),
        ("Urgency", inc.urgency),
        ("Assigned to", ", ".join(inc.assignees) or "nobody"),
        ("Opened", hhmm(inc.created_at, times) if inc.created_at else "unknown"),
    ]
    if inc.service:
        fields.append(("Service", inc.service))
    return Reply(
        title=f"PagerDuty #{inc.number}: {inc.title}",
        text=inc.url,
        fields=tuple(fields),
        buttons=buttons(inc),
        priority=Priority.STATUS,
    )


def age(inc: PdIncident, now: datetime) -> str:
    if not inc.created_at:
        return "?"
    try:
        created = datetime.fromisoformat(inc.created_at.replace("Z", "+00:00"))
    except ValueError:
        return "?"
    minutes = max(0, int((now - created).total_seconds() // 60))
    if minutes < 60:
        return f"{minutes} min"
    if minutes < 48 * 60:
        return f"{minutes // 60} h {minutes % 60} min"
    return f"{minutes // 1440} d"


def listing(found: Sequence[PdIncident], now: datetime, scope: str) -> list[Reply]:
    """`!pd incidents`: a header, then one short card per incident, each with its buttons."""
    if not found:
        return [Reply(text=f"No open PagerDuty incidents on {scope}.")]
    replies = [Reply(title=f"Open PagerDuty incidents on {scope} ({len(found)})")]
    for inc in found[:20]:
        replies.append(
            Reply(
                text=(
                    f"#{inc.number} {inc.title} · {inc.urgency} · {state_line(inc)} · "
                    f"{', '.join(inc.assignees) or 'unassigned'} · {age(inc, now)} · {inc.url}"
                ),
                buttons=buttons(inc),
            )
        )
    if len(found) > 20:
        replies.append(Reply(text=f"… and {len(found) - 20} more: see PagerDuty."))
    return replies


class IncidentApi(Protocol):
    """PagerDuty's incident endpoints, as handlers need them. Failures raise Unavailable
    (or NotFound for an unknown id) with a message fit for chat. `sender` is the email sent
    as `From`: the person who asked, never the bot."""

    async def open_incidents(self, service_ids: Sequence[str]) -> list[PdIncident]:
        """Triggered and acknowledged incidents (on every service when the list is empty)."""
        ...

    async def resolved_since(self, since: datetime, service_ids: Sequence[str]) -> list[PdIncident]:
        """Incidents opened since then and already resolved (the open ones come from
        `open_incidents`)."""
        ...

    async def get(self, incident_id: str) -> PdIncident: ...

    async def update(
        self,
        incident_id: str,
        sender: str,
        *,
        status: str | None = None,
        level: int | None = None,
        assignee_ids: Sequence[str] = (),
        resolution: str | None = None,
    ) -> PdIncident: ...

    async def note(self, incident_id: str, sender: str, text: str) -> None: ...

    async def snooze(self, incident_id: str, sender: str, seconds: int) -> PdIncident: ...

    async def user_by_email(self, email: str) -> PdUser | None: ...

    async def find_users(self, query: str) -> list[PdUser]: ...

    async def user(self, user_id: str) -> PdUser: ...

    async def create(
        self,
        sender: str,
        *,
        service_id: str,
        title: str,
        user_ids: Sequence[str],
        key: str,
    ) -> PdIncident: ...

    async def team_policy(self, query: str) -> tuple[str, str] | None:
        """(team name, escalation policy id) for the one team matching `query`."""
        ...

    async def create_for_policy(
        self, sender: str, *, service_id: str, title: str, policy_id: str, key: str
    ) -> PdIncident: ...

    async def on_call(self, schedule_id: str) -> list[tuple[PdUser, str | None]]:
        """Who is on call on the schedule now, with the end of their shift (ISO) if known."""
        ...

    async def add_override(
        self, schedule_id: str, sender: str, user_id: str, start: datetime, end: datetime
    ) -> str:
        """Create an override; its id."""
        ...

    async def delete_override(self, schedule_id: str, sender: str, override_id: str) -> None: ...
