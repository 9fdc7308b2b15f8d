"""Follow-ups of an incident, their export as tickets, and 📌/📝 reactions.

`!incident followup add|list|done|retry`, `!incident tickets` (also run when the incident is
closed, as an `IncidentHook`), `!incident pin` (a message into the timeline). A reaction in
an incident's channel becomes an ordinary command (📌 → `incident pin`, 📝 → `incident
followup add`) submitted to the bus, so it is deduplicated, authorized and audited like a
typed one.

Tickets are created once per follow-up: the follow-up is marked 'sending' durably before the
request and gets its ticket link after, so re-running never duplicates. A follow-up whose
request got no clear answer (timeout, crash) is left unconfirmed and never re-sent on its own:
the tracker is asked to be checked, and `followup retry <n>` sends it again on purpose.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from chatopsd.core.commands import Arg, CommandSpec, Handler
from chatopsd.core.context import Call
from chatopsd.core.errors import NotFound, UsageError
from chatopsd.core.messages import Inbound, Priority, Reply
from chatopsd.core.outcome import Outcome
from chatopsd.core.ports import AuditEntry, AuditLog, Clock, ReplySink
from chatopsd.core.values import whole_number
from chatopsd.features.followups.ports import FollowUp, FollowUpStore
from chatopsd.features.incidents.api import (
    INCIDENT_ID,
    Change,
    Home,
    Incident,
    IncidentService,
    given,
    usage,
)

if TYPE_CHECKING:  # the tracker module is loaded only when [tickets] is configured
    from chatopsd.features.followups.trackers import TicketDraft, Tracker

log = logging.getLogger("chatopsd.followups")
# The commands that send follow-ups to the tracker (closing an incident does too)
_EXPORTS = frozenset({("tickets",), ("followup", "retry")})


# Reaction names as the platforms send them (Slack/Mattermost names, Discord's emoji itself).
REACTION_COMMANDS: dict[str, str] = {
    "pushpin": "pin",
    "round_pushpin": "pin",
    "📌": "pin",
    "📍": "pin",
    "memo": "followup",
    "pencil": "followup",
    "📝": "followup",
}


def reaction_command(emoji: str, incident_id: str, message_ref: str) -> str | None:
    """The command a reaction on `message_ref` in `incident_id`'s channel stands for."""
    action = REACTION_COMMANDS.get(emoji.strip(":").lower())
    if action == "pin":
        return f"incident pin {incident_id} {message_ref}"
    if action == "followup":
        return f'incident followup add {incident_id} "see message {message_ref}"'
    return None


def _n(text: str) -> int:
    try:
        return whole_number(text)
    except UsageError as exc:
        raise UsageError(f"a follow-up number, like 2: {exc.message}") from None


class FollowUps:
    def __init__(
        self,
        store: FollowUpStore,
        incidents: IncidentService,
        tracker: Tracker | None,
        outbox: ReplySink,
        audit: AuditLog,
        clock: Clock,
        *,
        labels: Sequence[str] = (),
        incident_url: str | None = None,
    ) -> None:
        self.store = store
        self.incidents = incidents
        self.tracker = tracker
        self.outbox = outbox
        self.audit = audit
        self.clock = clock
        self.labels = tuple(labels)
        self.incident_url = incident_url
        self._exporting = asyncio.Lock()

    @property
    def prefix(self) -> str:
        return self.incidents.prefix

    def commands(self) -> list[CommandSpec]:
        def spec(path: tuple[str, ...], summary: str, handler: Handler, *args: Arg) -> CommandSpec:
            return CommandSpec(
                ("incident", *path),
                summary,
                handler,
                args,
                mutates=path != ("followup", "list"),
                incident_work=True,
                priority=Priority.STATUS,
                effects=path in _EXPORTS,  # files tickets in the tracker
            )

        def tail(name: str, what: str, required: bool = False) -> Arg:
            return Arg(name, what, kind="rest", required=required)

        return [
            spec(
                ("followup", "add"),
                "add a follow-up action (exported as a ticket at close)",
                self.add,
                INCIDENT_ID,
                tail("what", "what to do", required=True),
                Arg("owner", "who owns it (@user)", option=True, required=False),
            ),
            spec(
                ("followup", "list"), "the incident's follow-ups", self.list_followups, INCIDENT_ID
            ),
            spec(
                ("followup", "done"),
                "mark a follow-up done",
                self.done,
                INCIDENT_ID,
                tail("number", "the follow-up's number"),
            ),
            spec(
                ("followup", "retry"),
                "send an unconfirmed follow-up to the tracker again",
                self.retry,
                INCIDENT_ID,
                tail("number", "the follow-up's number"),
            ),
            spec(("tickets",), "export open follow-ups as tickets now", self.tickets, INCIDENT_ID),
            spec(
                ("pin",),
                "add a chat message to the timeline",
                self.pin,
                INCIDENT_ID,
                tail("message", "the message's reference (a 📌 reaction on it does this)"),
            ),
        ]

    async def _find(self, call: Call) -> tuple[Incident, str]:
        return await self.incidents.find(call.event, given(call), usage(call))

    # -- follow-ups --------------------------------------------------------------------------

    async def add(self, call: Call) -> Reply:
        incident, text = await self._find(call)
        if not text:
            raise UsageError("say what to follow up", hint=usage(call))
        owner = call.text("owner")
        n = await self.store.add(
            incident.id, text, owner, call.event.actor.display, self.clock.now()
        )
        await self._timeline(call.event, incident.id, "followup", f"follow-up {n}: {text}")
        by = f" (owner {owner})" if owner else ""
        return Reply(text=f"{incident.id} follow-up {n} added{by}: {text}")

    async def list_followups(self, call: Call) -> Reply:
        incident, _ = await self._find(call)
        found = await self.store.list(incident.id)
        if not found:
            return Reply(
                text=f"{incident.id} has no follow-ups. Add one: "
                f"{self.prefix}incident followup add <what to do>"
            )
        return Reply(
            title=f"Follow-ups of {incident.id}",
            fields=tuple((f"{f.n}. {f.text}", _state(f)) for f in found),
        )

    async def _numbered(self, call: Call) -> tuple[Incident, FollowUp]:
        incident, rest = await self._find(call)
        if not rest:
            raise UsageError("which follow-up? give its number", hint=usage(call))
        found = await self.store.get(incident.id, _n(rest))
        if found is None:
            raise NotFound(
                f"{incident.id} has no follow-up {rest}",
                hint=f"see {self.prefix}incident followup list",
            )
        return incident, found

    async def done(self, call: Call) -> Reply:
        incident, f = await self._numbered(call)
        await self.store.done(incident.id, f.n, self.clock.now())
        await self._timeline(call.event, incident.id, "followup", f"follow-up {f.n} done")
        return Reply(text=f"{incident.id} follow-up {f.n} done.")

    async def retry(self, call: Call) -> Reply:
        incident, f = await self._numbered(call)
        if f.export_state != "sending":
            raise UsageError(f"follow-up {f.n} is not unconfirmed; nothing to retry")
        await self.store.release(incident.id, f.n)
        return Reply(text="\n".join(await self.export(incident, call.event)))

    # -- tickets -----------------------------------------------------------------------------

    async def tickets(self, call: Call) -> Reply:
        incident, _ = await self._find(call)
        if self.tracker is None:
            raise UsageError(
                "no ticket tracker is configured",
                hint="add a [tickets] section (kind, token, project): see docs/tickets.md",
            )
        return Reply(text="\n".join(await self.export(incident, call.event)))

    async def export(self, incident: Incident, event: Inbound) -> list[str]:
        """Create a ticket for every open follow-up without one; lines saying what happened."""
        if self.tracker is None:
            return []
        from chatopsd.features.followups.trackers import TicketError

        tracker = self.tracker
        lines: list[str] = []
        async with self._exporting:
            followups = await self.store.list(incident.id)
            home = await self.incidents.home(incident.id)
            for f in followups:
                if f.done_at is not None or f.export_state == "sent":
                    continue
                if f.export_state == "sending":
                    lines.append(
                        f"Follow-up {f.n}: unconfirmed, not sent again (an earlier request got "
                        f"no answer). Look in {tracker.name} for “{_title(incident, f)}”; "
                        f"if it is not there: {self.prefix}incident followup retry "
                        f"{incident.id} {f.n}"
                    )
                    continue
                if not await self.store.claim(incident.id, f.n):
                    continue  # another command (or instance) is exporting it right now
                started = self.clock.monotonic()
                try:
                    ticket = await tracker.create(self._draft(incident, f, home))
                except TicketError as exc:
                    if not exc.maybe_created:
                        await self.store.release(incident.id, f.n)
                    more = " (unconfirmed: not re-sent on its own)" if exc.maybe_created else ""
                    lines.append(f"Follow-up {f.n}: no ticket: {exc}{more}")
                    await self._audit(event, incident, f, f"failed: {exc}{more}", started)
                    continue
                await self.store.ticket_created(incident.id, f.n, ticket.key, ticket.url)
                lines.append(f"Follow-up {f.n} → {ticket.key} {ticket.url}")
                await self._audit(event, incident, f, f"ok: {ticket.key} {ticket.url}", started)
        if not lines:
            lines.append(f"{incident.id}: no open follow-ups without a ticket.")
        return lines

    async def _audit(
        self, event: Inbound, incident: Incident, f: FollowUp, outcome: str, started: float
    ) -> None:
        """One audit row per ticket request: what left for the tracker, and how it went."""
        assert self.tracker is not None
        await self.audit.append(
            AuditEntry(
                at=self.clock.now(),
                platform=event.platform,
                channel=event.channel,
                thread=event.thread,
                actor=event.actor.id,
                actor_name=event.actor.display,
                kind="ticket",
                text=f"{incident.id} follow-up {f.n}: {f.text}"[:2000],
                command=f"tickets create ({self.tracker.name})",
                # "failed: <why>" → the closed set's outcome, and the why as its cause
                outcome=Outcome(outcome.partition(": ")[0]),
                duration_ms=round((self.clock.monotonic() - started) * 1000, 3),
                event_id=f"{event.event_id}/ticket/{incident.id}/{f.n}",
                ref=f"{incident.id}#{f.n}",
                cause=outcome.partition(": ")[2],
            )
        )

    def _draft(self, incident: Incident, f: FollowUp, home: Home | None) -> TicketDraft:
        from chatopsd.features.followups.trackers import TicketDraft

        where = ""
        if home is not None:
            where = f" Its channel: {home.platform} #{home.channel}."
        paragraphs = [
            f"Follow-up {f.n} of incident {incident.id} [{incident.sev}] {incident.title} "
            f"(declared {self.incidents.times.full(incident.declared_at)}).{where}",
            f.text,
            f"Owner: {f.owner}" if f.owner else "",
            f"Added by {f.added_by}. Created by chatopsd.",
        ]
        link = None
        if self.incident_url:
            link = (incident.id, self.incident_url.replace("{incident_id}", incident.id))
        return TicketDraft(
            title=_title(incident, f),
            paragraphs=tuple(p for p in paragraphs if p),
            link=link,
            labels=self.labels,
        )

    # -- timeline pins -----------------------------------------------------------------------

    async def pin(self, call: Call) -> Reply:
        incident, ref = await self._find(call)
        if not ref:
            raise UsageError("which message? give its reference", hint=usage(call))
        await self._timeline(call.event, incident.id, "pinned", f"📌 message {ref}")
        return Reply(text=f"Added to the timeline of {incident.id}.", ephemeral=True)

    async def _timeline(self, event: Inbound, incident_id: str, kind: str, text: str) -> None:
        def apply(i: Incident, _rest: str) -> tuple[Incident, str, str]:
            # no state check: follow-ups and pins are still written after close (postmortem)
            return i, kind, text

        await self.incidents.change(event, incident_id, "", apply)

    async def reaction_command(self, event: Inbound) -> str | None:
        """📌/📝 in an incident's channel stand for commands; the bus runs them through the
        same middleware as typed ones (role, channel, rate limit, audit)."""
        if not event.message_id or event.text.strip(":").lower() not in REACTION_COMMANDS:
            return None
        incident_id = await self.incidents.incident_at(event.platform, event.channel, event.thread)
        if incident_id is None:
            return None  # a reaction elsewhere is not ours to act on
        return reaction_command(event.text, incident_id, event.message_id)

    # -- the lifecycle hook ------------------------------------------------------------------

    async def changed(self, change: Change) -> None:
        if change.kind != "closed" or self.tracker is None:
            return
        lines = await self.export(change.incident, change.event)
        home = await self.incidents.home(change.incident.id)
        if home is not None:
            self.outbox.enqueue(
                home.destination,
                Reply(title=f"Tickets for {change.incident.id}", text="\n".join(lines)),
            )

    async def status_fields(self, incident: Incident) -> Sequence[tuple[str, str]]:
        return ()

    async def postmortem_rows(self, incident_id: str) -> Sequence[tuple[str, str, str, str]]:
        rows = []
        for f in await self.store.list(incident_id):
            action = f"{f.text} (done)" if f.done_at is not None else f.text
            key = f.ticket_key or ("unconfirmed" if f.export_state == "sending" else "")
            rows.append((action, f.owner or "", key, f.ticket_url or ""))
        return rows


def _title(incident: Incident, f: FollowUp) -> str:
    return f"[{incident.id}] {f.text}"[:200]


def _state(f: FollowUp) -> str:
    parts = [f"owner {f.owner}" if f.owner else "no owner"]
    if f.done_at is not None:
        parts.append("done")
    if f.ticket_url:
        parts.append(f"{f.ticket_key} {f.ticket_url}")
    elif f.export_state == "sending":
        parts.append("ticket unconfirmed")
    return ", ".join(parts)
