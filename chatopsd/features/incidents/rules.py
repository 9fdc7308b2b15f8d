"""Incidents, pure: the model, ids, severities, the state machine, and the texts we post.

States go declared → acknowledged → resolved → closed (acknowledging is optional: a declared
incident may be resolved at once). Every refused move raises `IllegalTransition`, a UserError,
so the person in chat sees why. Nothing here does I/O; the handler and the store do.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import Enum

from chatopsd.core.errors import UsageError, UserError
from chatopsd.core.messages import Button, Priority, Reply
from chatopsd.core.times import UTC_TIMES, Times

SEVERITIES = (1, 2, 3, 4)
SEVERITY_HELP = {
    1: "critical: customers broadly affected",
    2: "major: a core function degraded",
    3: "minor: limited impact",
    4: "low: no customer impact yet",
}
ROLES: dict[str, str] = {
    "commander": "Incident Commander",
    "comms": "Communications Lead",
    "scribe": "Scribe",
    "assignee": "Assignee",
}
_ID = re.compile(r"^#?INC-(\d{4})-(\d{1,6})$", re.IGNORECASE)
_SEV = re.compile(r"^(?:sev)?-?\s*([1-4])$", re.IGNORECASE)


class State(Enum):
    DECLARED = "declared"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
    CLOSED = "closed"

    @property
    def open(self) -> bool:
        return self in (State.DECLARED, State.ACKNOWLEDGED)


class IllegalTransition(UserError):
    """A command that the incident's current state does not allow."""


# action -> (states it is allowed from, state it leads to; None: the state stays)
TRANSITIONS: dict[str, tuple[frozenset[State], State | None]] = {
    "ack": (frozenset({State.DECLARED}), State.ACKNOWLEDGED),
    "resolve": (frozenset({State.DECLARED, State.ACKNOWLEDGED}), State.RESOLVED),
    "close": (frozenset({State.RESOLVED}), State.CLOSED),
    "escalate": (frozenset({State.DECLARED, State.ACKNOWLEDGED}), None),
    "update": (frozenset({State.DECLARED, State.ACKNOWLEDGED, State.RESOLVED}), None),
    "role": (frozenset({State.DECLARED, State.ACKNOWLEDGED, State.RESOLVED}), None),
    "join": (frozenset({State.DECLARED, State.ACKNOWLEDGED, State.RESOLVED}), None),
}


def format_id(year: int, seq: int) -> str:
    return f"INC-{year:04d}-{seq:04d}"


def parse_id(text: str) -> str | None:
    """The canonical id if `text` is an incident id (any case, optional #), else None."""
    m = _ID.match(text.strip())
    return format_id(int(m.group(1)), int(m.group(2))) if m else None


def parse_severity(text: str) -> int:
    """ "SEV-1", "sev1", "1" → 1. Raises UsageError naming the accepted forms."""
    m = _SEV.match(text.strip())
    if not m:
        raise UsageError(
            f"severity must be SEV-1, SEV-2, SEV-3 or SEV-4 (got {text!r})",
            hint="SEV-1 is the most severe",
        )
    return int(m.group(1))


def sev_label(severity: int) -> str:
    return f"SEV-{severity}"


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One line of an incident's history: who did what, when, from where."""

    at: datetime
    actor: str
    platform: str
    channel: str
    kind: str
    text: str


@dataclass(frozen=True, slots=True)
class Incident:
    id: str
    title: str
    severity: int
    state: State
    declared_at: datetime
    declared_by: str
    platform: str
    channel: str
    service: str | None = None
    description: str | None = None
    acknowledged_at: datetime | None = None
    resolved_at: datetime | None = None
    closed_at: datetime | None = None
    resolution: str | None = None
    last_update_at: datetime | None = None
    roles: Mapping[str, str] = field(default_factory=dict)
    pagerduty: str | None = None  # the PagerDuty incident's URL once `!ic page` ran in it

    @property
    def sev(self) -> str:
        return sev_label(self.severity)

    @property
    def commander(self) -> str | None:
        return self.roles.get("commander")

    def quiet_since(self) -> datetime:
        return self.last_update_at or self.declared_at


def declare(
    incident_id: str,
    title: str,
    severity: int,
    at: datetime,
    actor: str,
    platform: str,
    channel: str,
    *,
    service: str | None = None,
    description: str | None = None,
) -> Incident:
    title = " ".join(title.split())
    if not title:
        raise UsageError(
            "an incident needs a title", hint='e.g. incident declare "Payments failing"'
        )
    if severity not in SEVERITIES:
        raise UsageError(f"severity must be SEV-1..SEV-4 (got {severity})")
    # Whoever declares commands until they hand over (PagerDuty's practice).
    return Incident(
        id=incident_id,
        title=title[:200],
        severity=severity,
        state=State.DECLARED,
        declared_at=at,
        declared_by=actor,
        platform=platform,
        channel=channel,
        service=service,
        description=description,
        last_update_at=at,
        roles={"commander": actor},
    )


def check(incident: Incident, action: str) -> None:
    """Raise IllegalTransition if `action` is not allowed in the incident's state."""
    allowed, _ = TRANSITIONS[action]
    if incident.state in allowed:
        return
    message, hint = _refusal(incident, action)
    raise IllegalTransition(message, hint=hint)


def _refusal(incident: Incident, action: str) -> tuple[str, str | None]:
    i, state = incident.id, incident.state
    if state is State.CLOSED:
        return f"{i} is closed; nothing can change it now", "declare a new incident if it is back"
    if action == "ack" and state is State.ACKNOWLEDGED:
        return f"{i} is already acknowledged", None
    if action == "ack":
        return f"{i} is {state.value}; there is nothing left to acknowledge", None
    if action == "resolve":
        return f"{i} is already resolved", "close it once the follow-ups are filed"
    if action == "close":
        return (
            f"{i} is still {state.value}: resolve it before closing it",
            f"incident resolve {i} <what fixed it>",
        )
    if action == "escalate":
        return f"{i} is {state.value}; only an open incident can be escalated", None
    return f"{i} is {state.value}; {action} is not allowed", None


def transition(incident: Incident, action: str, at: datetime, note: str | None = None) -> Incident:
    """Apply a state-changing action (ack, resolve, close). Raises IllegalTransition."""
    check(incident, action)
    target = TRANSITIONS[action][1]
    if target is None:
        raise ValueError(f"{action} does not change the state")
    if target is State.ACKNOWLEDGED:
        return replace(incident, state=target, acknowledged_at=at, last_update_at=at)
    if target is State.RESOLVED:
        return replace(incident, state=target, resolved_at=at, resolution=note, last_update_at=at)
    return replace(incident, state=target, closed_at=at, last_update_at=at)


def escalate(incident: Incident, severity: int | None, at: datetime) -> Incident:
    """Raise the severity (SEV-1 is the highest); None means one level up."""
    check(incident, "escalate")
    target = incident.severity - 1 if severity is None else severity
    if incident.severity == 1 or target < 1:
        # (not "SEV-1 to SEV-0": there is no SEV-0)
        raise IllegalTransition(f"{incident.id} is already SEV-1, the highest severity")
    if target >= incident.severity:
        raise IllegalTransition(
            f"{incident.id} is {incident.sev}; escalating means a more severe level "
            f"(SEV-1 to SEV-{incident.severity - 1})"
        )
    return replace(incident, severity=target, last_update_at=at)


def set_role(incident: Incident, role: str, user: str, at: datetime) -> Incident:
    check(incident, "role")
    if role not in ROLES:
        raise UsageError(f"unknown role {role!r}", hint=f"roles: {', '.join(ROLES)}")
    user = user.strip()
    if not user:
        raise UsageError(f"say who is the {ROLES[role]}")
    return replace(incident, roles={**incident.roles, role: user}, last_update_at=at)


def link_page(incident: Incident, url: str, at: datetime) -> Incident:
    """`!ic page` ran in the incident's channel: remember the PagerDuty incident."""
    check(incident, "update")
    return replace(incident, pagerduty=url, last_update_at=at)


def touch(incident: Incident, action: str, at: datetime) -> Incident:
    """An update: allowed while not closed, and it restarts the quiet period."""
    check(incident, action)
    return replace(incident, last_update_at=at)


def join(incident: Incident) -> Incident:
    """Someone joins: a timeline entry, but no status update (the pulse still fires)."""
    check(incident, "join")
    return incident


def channel_names(incident: Incident) -> list[str]:
    """Names to try for its channel: the plain one, then one with the id's number, for a
    second incident with the same title on the same day."""
    name = channel_name(incident)
    return [name, f"{name}-{incident.id.rsplit('-', 1)[1]}"]


# -- texts -----------------------------------------------------------------------------------


def slug(title: str, limit: int = 40) -> str:
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    words = re.sub(r"[^a-z0-9]+", "-", ascii_title.lower()).strip("-")
    return words[:limit].rstrip("-") or "incident"


def channel_name(incident: Incident) -> str:
    """inc-YYYYMMDD-<slug>: lowercase, digits and dashes, valid on every platform."""
    return f"inc-{incident.declared_at:%Y%m%d}-{slug(incident.title)}"


def duration(start: datetime, end: datetime) -> str:
    minutes = max(0, int((end - start) / timedelta(minutes=1)))
    hours, mins = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    parts = [f"{days}d"] if days else []
    if hours or days:
        parts.append(f"{hours}h")
    parts.append(f"{mins}m")
    return " ".join(parts)


def role_fields(incident: Incident) -> tuple[tuple[str, str], ...]:
    return tuple((ROLES[r], incident.roles[r]) for r in ROLES if incident.roles.get(r))


def announcement(incident: Incident, prefix: str, times: Times = UTC_TIMES) -> Reply:
    """The post in the routed channels: what, how bad, who leads, and buttons to act."""
    fields: list[tuple[str, str]] = [
        ("Severity", f"{incident.sev} ({SEVERITY_HELP[incident.severity]})")
    ]
    if incident.service:
        fields.append(("Service", incident.service))
    fields.extend(role_fields(incident))
    fields.append(("Declared", f"{times.full(incident.declared_at)} by {incident.declared_by}"))
    text = incident.description or ""
    more = f"Acknowledge: {prefix}incident ack {incident.id}"
    return Reply(
        title=f"🚨 {incident.id} [{incident.sev}] {incident.title}",
        text=f"{text}\n{more}".strip(),
        fields=tuple(fields),
        buttons=(
            Button("Acknowledge", f"incident ack {incident.id}", "primary"),
            Button("Escalate", f"incident escalate {incident.id}", "danger"),
            Button("I'm joining", f"incident join {incident.id}"),
        ),
        priority=Priority.PAGE if incident.severity == 1 else Priority.STATUS,
    )


def status(
    incident: Incident, last: TimelineEntry | None, now: datetime, times: Times = UTC_TIMES
) -> Reply:
    """The pinned status message; edited in place on every change."""
    icon = {
        State.DECLARED: "🔴",
        State.ACKNOWLEDGED: "🟠",
        State.RESOLVED: "🟢",
        State.CLOSED: "⚪",
    }[incident.state]
    fields: list[tuple[str, str]] = [
        ("State", incident.state.value),
        ("Severity", incident.sev),
    ]
    if incident.service:
        fields.append(("Service", incident.service))
    fields.extend(role_fields(incident))
    if incident.pagerduty:
        fields.append(("PagerDuty", incident.pagerduty))
    fields.append(("Declared", times.full(incident.declared_at)))
    end = incident.resolved_at or now
    fields.append(
        ("Duration" if incident.resolved_at else "Open for", duration(incident.declared_at, end))
    )
    if last is not None:
        fields.append(("Last update", f"{times.full(last.at)} {last.actor}: {last.text}"))
    return Reply(
        title=f"{icon} {incident.id} [{incident.sev}] {incident.title}",
        fields=tuple(fields),
        priority=Priority.STATUS,
    )


def wrapup(
    incident: Incident, timeline: Sequence[TimelineEntry], times: Times = UTC_TIMES
) -> Reply:
    """Posted on resolve: how long it took and what happened, briefly."""
    end = incident.resolved_at or incident.last_update_at or incident.declared_at
    counts: dict[str, int] = {}
    for entry in timeline:
        counts[entry.kind] = counts.get(entry.kind, 0) + 1
    people = sorted({e.actor for e in timeline})
    lines = [
        f"Resolved after {duration(incident.declared_at, end)} "
        f"({times.full(incident.declared_at)} → {times.full(end)}).",
    ]
    if incident.resolution:
        lines.append(f"Resolution: {incident.resolution}")
    lines.append(
        f"Timeline: {len(timeline)} entries"
        + (f" ({', '.join(f'{n} {k}' for k, n in sorted(counts.items()))})" if counts else "")
        + (f", from {', '.join(people)}" if people else "")
        + "."
    )
    highlights = [
        e for e in timeline if e.kind in ("declared", "acknowledged", "escalated", "resolved")
    ]
    lines.extend(f"{times.hm(e.at)} {what(e)}" for e in highlights)
    return Reply(
        title=f"✅ {incident.id} resolved: {incident.title}",
        text="\n".join(lines),
        fields=role_fields(incident),
        priority=Priority.STATUS,
    )


def timeline_text(timeline: Sequence[TimelineEntry], times: Times = UTC_TIMES) -> str:
    return "\n".join(
        f"{times.stamp(e.at)} {times.zone_name(e.at)} [{e.kind}] {e.actor} "
        f"({e.platform} #{e.channel}): {e.text}"
        for e in timeline
    )


def what(entry: TimelineEntry) -> str:
    """ "declared: SEV-1 …", without saying the kind twice when the text already starts with
    it ("declared SEV-1: Payments failing", not "declared: declared SEV-1: …")."""
    first = entry.text.split(maxsplit=1)[0].lower() if entry.text.strip() else ""
    if first.rstrip(":") == entry.kind.lower():
        return entry.text
    return f"{entry.kind}: {entry.text}"


def _md(text: str) -> str:
    """User text inside Markdown: escape what would start markup or break a table cell."""
    return re.sub(r"([\\`*_|<>\[\]#])", r"\\\1", text.replace("\n", " "))


def _ticket(key: str, url: str) -> str:
    """A ticket cell: a Markdown link when there is a URL."""
    if not url:
        return _md(key)
    safe = url.replace(" ", "%20").replace(")", "%29").replace("|", "%7C")
    return f"[{_md(key)}]({safe})"


def postmortem(
    incident: Incident,
    timeline: Sequence[TimelineEntry],
    now: datetime,
    followups: Sequence[tuple[str, str, str, str]] = (),
    times: Times = UTC_TIMES,
) -> str:
    """A Markdown postmortem skeleton, its facts filled from the incident and its timeline;
    `followups` are (action, owner, ticket key, ticket URL) rows."""
    end = incident.resolved_at
    window_end = times.full(end) if end else f"ongoing (as of {times.full(now)})"
    lines = [
        f"# Postmortem: {incident.id} {_md(incident.title)}",
        "",
        "## Summary",
        "",
        f"- Severity: {incident.sev}",
        f"- State: {incident.state.value}",
    ]
    if incident.service:
        lines.append(f"- Service: {_md(incident.service)}")
    if incident.description:
        lines.append(f"- Description: {_md(incident.description)}")
    if incident.resolution:
        lines.append(f"- Resolution: {_md(incident.resolution)}")
    if incident.pagerduty:
        lines.append(f"- PagerDuty: {_md(incident.pagerduty)}")
    lines += [
        "",
        "_What happened, in two or three sentences:_ TODO",
        "",
        "## Impact window",
        "",
        f"- Declared: {times.full(incident.declared_at)}",
        f"- Acknowledged: {times.full(incident.acknowledged_at)}",
        f"- Resolved: {window_end}",
        f"- Duration: {duration(incident.declared_at, end or now)}",
        "",
        "_Who and what was affected:_ TODO",
        "",
        "## Timeline",
        "",
        f"| Time ({times.zone_name(now)}) | Who | Where | What |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {times.stamp(e.at)} | {_md(e.actor)} | {e.platform} #{_md(e.channel)} "
        f"| {_md(what(e))} |"
        for e in timeline
    ]
    lines += ["", "## Roles", ""]
    lines += [f"- {label}: {_md(who)}" for label, who in role_fields(incident)] or ["- none set"]
    lines += [
        "",
        "## Follow-ups",
        "",
        "| Action | Owner | Ticket |",
        "|---|---|---|",
    ]
    lines += [f"| {_md(a)} | {_md(o)} | {_ticket(k, u)} |" for a, o, k, u in followups] or [
        "| TODO | | |"
    ]
    lines.append("")
    return "\n".join(lines)
