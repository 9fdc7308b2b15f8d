"""`!incident ...`: declare and run an incident from chat.

On declare: announce in the channels routed by severity (and in the channel it was declared
in), open a channel of its own where the platform allows it (else a thread under the
announcement, and say so), post the status message there and pin it. Every later change is a
timeline entry stored with the state change, and edits that status message in place.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import NamedTuple

from chatopsd.config import IncidentsSection
from chatopsd.core.bus import new_ref, short_cause
from chatopsd.core.capabilities import (
    CHANNEL_INVITES,
    INCIDENT_CHANNELS,
    MESSAGE_PINS,
    THREADS,
    Capabilities,
    ChannelRefused,
)
from chatopsd.core.commands import Arg, CommandSpec, Handler
from chatopsd.core.context import Call
from chatopsd.core.errors import NotFound, TransientSendError, UsageError, UserError
from chatopsd.core.messages import Destination, Inbound, Priority, Reply, Sent
from chatopsd.core.ports import Clock, Home, IncidentStore, ReplySink
from chatopsd.core.times import UTC_TIMES, Times
from chatopsd.features.incidents import rules as core
from chatopsd.features.incidents.api import Change, FollowUpRows, IncidentHook
from chatopsd.features.incidents.rules import IllegalTransition, Incident, TimelineEntry
from chatopsd.features.paging.api import PageResult

log = logging.getLogger("chatopsd.incident")

DEFAULT_SEVERITY = "SEV-3"
# The role that may speak to customers: publish to the status page, or post --public text
# (auth.command_roles overrides it per command, or per option: "incident update --public").
STATUSPAGE_ROLE = "statuspage"
# Reactions that act like the announcement's buttons (Mattermost has no buttons for us).
REACTIONS: dict[str, str] = {
    "white_check_mark": "ack",
    "heavy_check_mark": "ack",
    "eyes": "ack",
    "arrow_up": "escalate",
    "rotating_light": "escalate",
    "raising_hand": "join",
    "raised_hand": "join",
    "hand": "join",
}


@dataclass(frozen=True)
class IncidentSettings:
    """[incidents] in the config, as destinations."""

    routing: dict[int, tuple[Destination, ...]] = field(default_factory=dict)
    default: tuple[Destination, ...] = ()
    management: Destination | None = None
    pulse_minutes: float = 30.0
    create_channels: bool = True
    prefix: str = "!"

    def destinations(self, severity: int) -> list[Destination]:
        found = list(self.routing.get(severity, ())) or list(self.default)
        if severity == 1 and self.management is not None:
            found.append(self.management)
        return found


def settings_from_config(section: IncidentsSection, prefix: str) -> IncidentSettings:
    return IncidentSettings(
        routing={
            core.parse_severity(sev): tuple(destination(t) for t in targets)
            for sev, targets in section.routing.items()
        },
        default=tuple(destination(t) for t in section.default_channels),
        management=destination(section.management_channel) if section.management_channel else None,
        pulse_minutes=section.pulse_minutes,
        create_channels=section.create_channels,
        prefix=prefix,
    )


def destination(target: str) -> Destination:
    """ "slack:C0123" → Destination("slack", "C0123")."""
    platform, _, channel = target.partition(":")
    return Destination(platform, channel)


def _dedupe(dests: Sequence[Destination]) -> list[Destination]:
    seen: set[tuple[str, str, str | None]] = set()
    out: list[Destination] = []
    for d in dests:
        key = (d.platform, d.channel, d.thread)
        if key not in seen:
            seen.add(key)
            out.append(d)
    return out


class Given(NamedTuple):
    """What a command named: the incident id if given first, and the typed tail after it."""

    incident_id: str | None
    rest: str

    @classmethod
    def of_text(cls, text: str) -> Given:
        """For callers that hold plain text (a reaction's incident id, other handlers' rest
        argument): an incident id first if there is one, then the rest."""
        first, _, after = text.strip().partition(" ")
        if _is_id(first):
            return cls(first, after.strip())
        return cls(None, text.strip())


def _raw(call: Call) -> Given:
    """The command's typed arguments: the optional leading id and its tail (whatever its name)."""
    args = call.spec.args if call.spec else ()
    tail = next((a.name for a in args if a.name != "id" and not a.option), None)
    return Given(call.text("id"), (call.text(tail) or "") if tail else "")


def _is_id(word: str) -> bool:
    return core.parse_id(word) is not None


# The optional leading incident id of every incident command (its own handlers' and the
# status page / follow-up ones): binds only a word that is an incident id.
INCIDENT_ID = Arg(
    "id",
    "INC id (optional inside the incident's channel or thread)",
    required=False,
    accepts=_is_id,
)


def given(call: Call) -> Given:
    """The incident a command named (if it did) and its typed tail."""
    return _raw(call)


def _user_id(text: str) -> str:
    """A user as typed ("<@U123>", "@alice", "alice") → the id a platform can invite."""
    return text.strip().removeprefix("<").removesuffix(">").lstrip("@!")


class IncidentHandler:
    def __init__(
        self,
        store: IncidentStore,
        outbox: ReplySink,
        clock: Clock,
        settings: IncidentSettings,
        capabilities: Capabilities,
        times: Times = UTC_TIMES,
    ) -> None:
        self.store = store
        self.outbox = outbox
        self.clock = clock
        self.settings = settings
        # Which platforms create channels, invite, pin, and show threads apart from their
        # channel (the console does not: a "thread" there is the same stream, so posting to
        # it as well prints twice).
        self.capabilities = capabilities
        # `!incident escalate --page X` (issue 17): (call, target, incident id) -> reply
        self.escalation_pager: Callable[[Call, str, str], Awaitable[Reply]] | None = None
        self.times = times
        # Features that follow the lifecycle (status page, follow-ups, bridge): app.py adds them.
        self.hooks: list[IncidentHook] = []
        self.followups: FollowUpRows | None = None

    def commands(self) -> list[CommandSpec]:
        # The id is optional inside an incident's channel or thread: a leading argument that
        # binds only an incident id, followed by the typed tail.
        inc = INCIDENT_ID

        def rest(name: str, what: str) -> tuple[Arg, Arg]:
            return inc, Arg(name, what, kind="rest", required=False)

        note = rest("note", "the text")
        user = rest("user", "who")

        def spec(
            sub: str, summary: str, handler: Handler, args: tuple[Arg, ...], mutates: bool, *ex: str
        ) -> CommandSpec:
            return CommandSpec(
                ("incident", sub),
                summary,
                handler,
                args,
                mutates=mutates,
                incident_work=True,
                priority=Priority.STATUS,
                examples=ex,
                # through the hooks: the status page (--public, auto-publish, resolved) and
                # the tickets exported at close
                effects=sub in ("update", "escalate", "resolve", "close"),
            )

        return [
            CommandSpec(("incident",), "open incidents", self.list_open),
            CommandSpec(
                ("incident", "declare"),
                "declare an incident: announce it, open its channel, pin its status",
                self.declare,
                (
                    Arg("title", "what is wrong, in a few words", kind="rest"),
                    Arg("sev", "SEV-1 (worst) to SEV-4", option=True, required=False),
                    Arg("service", "the affected service", option=True, required=False),
                    Arg("description", "more detail (quote it)", option=True, required=False),
                ),
                mutates=True,
                incident_work=True,
                priority=Priority.PAGE,
                examples=('incident declare --sev 1 "Payments failing" --service payments',),
                effects=True,  # opens a channel, posts a bridge, may auto-publish
            ),
            spec("ack", "acknowledge: someone is on it", self.ack, note, True, "incident ack"),
            spec(
                "update",
                'add a timestamped update; --public "TEXT" also posts TEXT to the status page',
                self.update,
                (
                    *note,
                    Arg(
                        "public",
                        "text for the status page, quoted, last",
                        option=True,
                        required=False,
                        last=True,
                        role=STATUSPAGE_ROLE,
                    ),
                ),
                True,
                "incident update rolled back the deploy, error rate falling",
                'incident update rolled back --public "A fix is being rolled out"',
            ),
            spec("status", "the incident's current status", self.status, (inc,), False),
            spec("list", "open incidents", self.list_open, (), False),
            spec(
                "escalate",
                "raise the severity (one level, or to the one given)",
                self.escalate,
                (
                    inc,
                    Arg("severity", "SEV-n (default: one level up)", required=False),
                    Arg("page", "page a schedule, person or team too", option=True, required=False),
                ),
                True,
                "incident escalate INC-2026-0042 SEV-1",
                "incident escalate INC-2026-0042 --page PTEAMSCHED",
            ),
            spec("assign", "set the assignee", self.assign, user, True, "incident assign @bob"),
            spec("commander", "hand over Incident Commander", self.commander, user, True),
            spec("comms", "set the Communications Lead", self.comms, user, True),
            spec("scribe", "set the Scribe", self.scribe, user, True),
            spec(
                "join", "say you are joining; invites you to its channel", self.join, (inc,), True
            ),
            spec(
                "resolve",
                "resolve with what fixed it; posts the wrap-up",
                self.resolve,
                note,
                True,
                "incident resolve rolled back to v1.2.2",
            ),
            spec("close", "close a resolved incident", self.close, (inc,), True),
            spec("timeline", "the incident's timeline", self.timeline, (inc,), False),
            spec("export", "a Markdown postmortem draft", self.export, (inc,), False),
        ]

    def _flat(self, dest: Destination) -> Destination:
        """Where a message really shows: on a platform without threads, the channel."""
        return (
            dest
            if self.capabilities.has(dest.platform, THREADS)
            else Destination(dest.platform, dest.channel)
        )

    # -- finding the incident ----------------------------------------------------------------

    async def _target(self, event: Inbound, raw: Given | str, usage: str) -> tuple[Incident, str]:
        """The incident named (an id, or a command's Given), or the one whose channel or
        thread this is; and the rest of the command."""
        given = raw if isinstance(raw, Given) else Given.of_text(raw)
        incident_id = core.parse_id(given.incident_id) if given.incident_id else None
        rest = given.rest.strip()
        if incident_id is None:
            incident_id = await self.store.incident_at(event.platform, event.channel, event.thread)
        if incident_id is None:
            # With exactly one incident open there is nothing to ask, on any platform.
            open_now = await self.store.open()
            if len(open_now) == 1:
                incident_id = open_now[0].id
            else:
                which = (
                    f"{len(open_now)} are open ({', '.join(i.id for i in open_now[:5])}); "
                    if open_now
                    else ""
                )
                raise UsageError(
                    f"which incident? {which}give its id (e.g. INC-2026-0001), or run this in "
                    "the incident's channel",
                    hint=usage,
                )
        found = await self.store.get(incident_id)
        if found is None:
            raise NotFound(
                f"there is no incident {incident_id}",
                hint=f"see {self.settings.prefix}incident list",
            )
        return found, rest

    def _entry(self, event: Inbound, kind: str, text: str) -> TimelineEntry:
        return TimelineEntry(
            self.clock.now(), event.actor.display, event.platform, event.channel, kind, text
        )

    async def _change(
        self,
        event: Inbound,
        raw: Given | str,
        usage: str,
        apply: Callable[[Incident, str], tuple[Incident, str, str]],
        public: str | None = None,
    ) -> tuple[Incident, Incident, str]:
        """Find, change and store an incident with its timeline entry; refresh its status.

        `apply(incident, rest)` returns (new incident, timeline kind, timeline text)."""
        found, rest = await self._target(event, raw, usage)
        said: list[tuple[str, str]] = []

        def step(current: Incident) -> tuple[Incident, TimelineEntry]:
            # decided on the incident as stored now (another instance may have changed it)
            try:
                after, kind, text = apply(current, rest)
            except IllegalTransition as exc:
                # the core's hints name commands without the prefix, which only we know
                if exc.hint and exc.hint.startswith("incident "):
                    exc.hint = f"{self.settings.prefix}{exc.hint}"
                raise
            said.append((kind, text))
            return after, self._entry(event, kind, text)

        changed = await self.store.change(found.id, step)
        if changed is None:
            raise NotFound(f"there is no incident {found.id}")
        before, after = changed
        kind, text = said[-1]
        await self._notify(Change(after, kind, text, event, public))
        await self._refresh_status(after)
        return before, after, rest

    async def _notify(self, change: Change) -> None:
        for hook in self.hooks:
            try:
                await hook.changed(change)
            except Exception:  # the change is stored: a follower's failure must not undo it
                log.exception("incident hook %s failed on %s", type(hook).__name__, change.kind)

    async def _status_reply(self, incident: Incident) -> Reply:
        last = await self.store.last_update(incident.id)
        reply = core.status(incident, last, self.clock.now(), self.times)
        extra: list[tuple[str, str]] = []
        for hook in self.hooks:
            extra.extend(await hook.status_fields(incident))
        return replace(reply, fields=reply.fields + tuple(extra)) if extra else reply

    async def _refresh_status(self, incident: Incident) -> None:
        reply = await self._status_reply(incident)
        for sent in await self.store.messages(incident.id, "status"):
            await self.outbox.edit(sent, reply)

    async def refresh_status(self, incident_id: str) -> None:
        """Re-render the pinned status (a hook's own state changed, e.g. published)."""
        incident = await self.store.get(incident_id)
        if incident is not None:
            await self._refresh_status(incident)

    # -- declare -----------------------------------------------------------------------------

    async def declare(self, call: Call) -> Reply:
        event = call.event
        severity = core.parse_severity(call.text("sev") or DEFAULT_SEVERITY)
        title = call.text("title") or ""
        now = self.clock.now()

        def make(incident_id: str) -> tuple[Incident, TimelineEntry]:
            made = core.declare(
                incident_id,
                title,
                severity,
                now,
                event.actor.display,
                event.platform,
                event.channel,
                service=call.text("service"),
                description=call.text("description"),
            )
            return made, self._entry(event, "declared", f"declared {made.sev}: {made.title}")

        incident = await self.store.create(now.year, make)
        origin = Destination(event.platform, event.channel, event.thread)
        announce = core.announcement(incident, call.prefix, self.times)
        origin_sent: Sent | None = None
        announced: list[str] = []
        places = _dedupe([origin, *self.settings.destinations(severity)])
        # All at once: a slow or rate-limited platform must not hold up the others.
        results = await asyncio.gather(*(self.outbox.send(d, announce) for d in places))
        for dest, sent in zip(places, results, strict=True):
            if sent is None:
                log.error(
                    "could not announce %s in %s:%s", incident.id, dest.platform, dest.channel
                )
                continue
            await self.store.remember(incident.id, "announce", sent)
            announced.append(f"{dest.platform}:{dest.channel}")
            if dest == origin:
                origin_sent = sent
        home, name, notes = await self._open_home(incident, event, origin_sent)
        if home is None:
            # Nothing posted here to hang a thread under (a slash command whose announcement
            # failed): binding the whole channel would make it an "incident channel", where
            # auth.paging_channels and mutating_channels no longer apply.
            lines = [
                f"{incident.id} declared ({incident.sev}), but nothing could be posted here, "
                "so it has no channel or thread of its own: give its id to later commands.",
                *notes,
            ]
            if announced:
                lines.append(f"Announced in {', '.join(announced)}.")
            await self._notify(Change(incident, "declared", f"declared {incident.sev}", event))
            return Reply(text="\n".join(lines), priority=Priority.STATUS)
        await self.store.bind_home(incident.id, home)
        status = await self.outbox.send(home.destination, await self._status_reply(incident))
        if status is not None:
            await self.store.remember(incident.id, "status", status)
            pins = self.capabilities.get(home.platform, MESSAGE_PINS)
            if pins is not None and home.thread is None:
                try:
                    await pins.pin(status)
                except Exception as exc:  # a missing pin must not undo the declaration
                    cause = _cause(exc, f"{incident.id}: pin")
                    notes.append(f"Could not pin the status message: {cause}")
        threaded = self.capabilities.has(event.platform, THREADS)
        if notes and home.thread is not None and threaded:
            self.outbox.enqueue(home.destination, Reply(text="\n".join(notes)))
        await self._notify(Change(incident, "declared", f"declared {incident.sev}", event))
        if name:
            where = f"Incident channel: #{name}"
        elif threaded:
            where = "Incident thread: under the announcement"
        else:
            where = "Its status and updates post here"
        lines = [f"{incident.id} declared ({incident.sev}). {where}.", *notes]
        if announced:
            lines.append(f"Announced in {', '.join(announced)}.")
        return Reply(text="\n".join(lines), priority=Priority.STATUS)

    async def _open_home(
        self, incident: Incident, event: Inbound, origin_sent: Sent | None
    ) -> tuple[Home | None, str | None, list[str]]:
        """A channel of its own if the platform allows it; else a thread in the declaring one."""
        notes: list[str] = []
        channels = (
            self.capabilities.get(event.platform, INCIDENT_CHANNELS)
            if self.settings.create_channels
            else None
        )
        reason = "this platform connector cannot create channels"
        if not self.settings.create_channels:
            reason = "incidents.create_channels is off"
        admin_reason: str | None = None
        if channels is not None:
            invites = self.capabilities.get(event.platform, CHANNEL_INVITES)
            for name in core.channel_names(incident):
                try:
                    topic = f"{incident.id} [{incident.sev}] {incident.title}"
                    channel = await channels.create_channel(name, topic)
                except Exception as exc:
                    # Any failure (refused, name taken, network): the incident is declared
                    # already, so it must not fail now; a thread will do.
                    failed = f"could not create #{name}: {_cause(exc, incident.id)}"
                    if admin_reason is None:
                        admin_reason = reason = failed  # the first refusal is the telling one
                    continue
                try:
                    if invites is not None:
                        await invites.invite(channel, [event.actor.id])
                except Exception as exc:
                    cause = _cause(exc, f"{incident.id}: invite")
                    notes.append(f"Could not invite {event.actor.display}: {cause}")
                return Home(event.platform, channel, None), name, notes
        # The thread hangs under the announcement; if that failed, under the declare command.
        thread = event.thread or (origin_sent.message_id if origin_sent else event.message_id)
        if not thread:
            notes.append(f"No incident channel ({reason}).")
            return None, None, notes
        if self.capabilities.has(event.platform, THREADS):
            notes.append(f"No incident channel ({reason}); this thread is the incident's home.")
        return Home(event.platform, event.channel, thread), None, notes

    # -- state changes -----------------------------------------------------------------------

    async def ack(self, call: Call) -> Reply:
        def apply(i: Incident, note: str) -> tuple[Incident, str, str]:
            text = f"acknowledged{': ' + note if note else ''}"
            return core.transition(i, "ack", self.clock.now()), "acknowledged", text

        _, after, _ = await self._change(call.event, _raw(call), self._usage(call), apply)
        return Reply(text=f"{after.id} acknowledged by {call.event.actor.display}.")

    async def update(self, call: Call) -> Reply:
        # Only the option's parsed value goes public: the grammar keeps quoted text whole and
        # refuses words after it, so no internal text can be taken for public text.
        public = call.text("public")
        if public is not None:
            public = public.strip()
            if not public:
                raise UsageError("the --public text is empty", hint=self._usage(call))

        def apply(i: Incident, note: str) -> tuple[Incident, str, str]:
            if not note and public:
                note = f"(public) {public}"
            if not note:
                raise UsageError("say what changed", hint=self._usage(call))
            return core.touch(i, "update", self.clock.now()), "update", note

        _, after, _ = await self._change(
            call.event, _raw(call), self._usage(call), apply, public=public
        )
        return Reply(text=f"{after.id} updated; the pinned status shows it.")

    async def escalate(self, call: Call) -> Reply | list[Reply]:
        given = _raw(call)
        # a bad severity fails before the lock
        sev = core.parse_severity(given.rest) if given.rest else None
        target = call.text("page")
        if target:  # --page: page through PagerDuty; the severity moves only if one is given
            if self.escalation_pager is None:
                raise UsageError("paging from an incident needs the [pagerduty] section")
            incident, _ = await self._target(call.event, given, self._usage(call))
            replies = [await self.escalation_pager(call, target, incident.id)]
            if sev is not None:
                replies.insert(0, await self._escalate(call.event, given, self._usage(call), sev))
            return replies
        return await self._escalate(call.event, given, self._usage(call), sev)

    async def _escalate(
        self, event: Inbound, raw: Given | str, usage: str, sev: int | None
    ) -> Reply:
        def apply(i: Incident, _rest: str) -> tuple[Incident, str, str]:
            new = core.escalate(i, sev, self.clock.now())
            return new, "escalated", f"escalated {i.sev} → {new.sev}"

        before, after, _ = await self._change(event, raw, usage, apply)
        announce = core.announcement(after, self.settings.prefix, self.times)
        already = await self.store.messages(after.id, "announce")
        for old in already:
            await self.outbox.edit(old, announce)
        have = {(s.destination.platform, s.destination.channel) for s in already}
        new_places = _dedupe(
            [
                d
                for d in self.settings.destinations(after.severity)
                if (d.platform, d.channel) not in have
            ]
        )
        results = await asyncio.gather(*(self.outbox.send(d, announce) for d in new_places))
        for sent in results:
            if sent is not None:
                await self.store.remember(after.id, "announce", sent)
        more = (
            f" Announced in {', '.join(f'{d.platform}:{d.channel}' for d in new_places)}."
            if new_places
            else ""
        )
        return Reply(
            text=f"{after.id} escalated {before.sev} → {after.sev}.{more}", priority=Priority.PAGE
        )

    async def _role(self, call: Call, role: str) -> Reply:
        def apply(i: Incident, user: str) -> tuple[Incident, str, str]:
            if not user:
                raise UsageError(f"say who is the {core.ROLES[role]}", hint=self._usage(call))
            return (
                core.set_role(i, role, user, self.clock.now()),
                "role",
                f"{core.ROLES[role]}: {user}",
            )

        _, after, user = await self._change(call.event, _raw(call), self._usage(call), apply)
        note = await self._invite(after, [_user_id(user)])
        return Reply(text=f"{core.ROLES[role]} of {after.id}: {user}.{note}")

    async def assign(self, call: Call) -> Reply:
        return await self._role(call, "assignee")

    async def commander(self, call: Call) -> Reply:
        return await self._role(call, "commander")

    async def comms(self, call: Call) -> Reply:
        return await self._role(call, "comms")

    async def scribe(self, call: Call) -> Reply:
        return await self._role(call, "scribe")

    async def join(self, call: Call) -> Reply:
        return await self._join(call.event, _raw(call), self._usage(call))

    async def _join(self, event: Inbound, raw: Given | str, usage: str) -> Reply:
        current, _ = await self._target(event, raw, usage)
        said = f"{event.actor.display} joined"
        if any(
            e.kind == "joined" and e.text == said for e in await self.store.timeline(current.id)
        ):
            # a second click (or reaction) on "I'm joining" adds nothing to the timeline
            return Reply(text=f"{event.actor.display} is already in {current.id}.", ephemeral=True)

        def apply(i: Incident, _rest: str) -> tuple[Incident, str, str]:
            return (
                core.join(i),
                "joined",
                f"{event.actor.display} joined",
            )

        _, after, _ = await self._change(event, raw, usage, apply)
        note = await self._invite(after, [event.actor.id]) if event.platform else ""
        return Reply(text=f"{event.actor.display} joined {after.id}.{note}")

    async def _invite(self, incident: Incident, user_ids: list[str]) -> str:
        home = await self.store.home(incident.id)
        if home is None or home.thread is not None:
            return ""
        invites = self.capabilities.get(home.platform, CHANNEL_INVITES)
        if invites is None:
            return ""
        try:
            await invites.invite(home.channel, user_ids)
        except Exception as exc:
            cause = _cause(exc, f"{incident.id}: invite")
            return f" Could not invite them to the incident channel: {cause}"
        return ""

    async def resolve(self, call: Call) -> list[Reply]:
        def apply(i: Incident, note: str) -> tuple[Incident, str, str]:
            if not note:
                raise UsageError(
                    "say what fixed it (it goes in the postmortem)", hint=self._usage(call)
                )
            return core.transition(i, "resolve", self.clock.now(), note), "resolved", note

        _, after, _ = await self._change(call.event, _raw(call), self._usage(call), apply)
        wrap = core.wrapup(after, await self.store.timeline(after.id), self.times)
        places: list[Destination] = []
        home = await self.store.home(after.id)
        if home is not None:
            places.append(home.destination)
        places += [s.destination for s in await self.store.messages(after.id, "announce")]
        here = self._flat(Destination(call.event.platform, call.event.channel, call.event.thread))
        for dest in _dedupe([self._flat(p) for p in places]):
            if dest != here:
                self.outbox.enqueue(dest, wrap)
        return [wrap]  # the asker's channel gets it as the command's reply

    async def close(self, call: Call) -> Reply:
        def apply(i: Incident, _rest: str) -> tuple[Incident, str, str]:
            return core.transition(i, "close", self.clock.now()), "closed", "closed"

        _, after, _ = await self._change(call.event, _raw(call), self._usage(call), apply)
        return Reply(
            text=f"{after.id} closed. Postmortem draft: {call.prefix}incident export {after.id}"
        )

    async def link_page(
        self, call: Call, result: PageResult, incident_id: str | None = None
    ) -> None:
        """`!ic page` succeeded: if it ran in an incident's channel or thread (or names the
        incident), link the PagerDuty incident to ours (timeline, status and postmortem)."""
        event = call.event
        if incident_id is None:
            incident_id = await self.store.incident_at(event.platform, event.channel, event.thread)
        if incident_id is None:
            return
        names = ", ".join(p.name for p in result.paged) or "nobody"
        text = f"paged {names}: PagerDuty {result.incident_id} {result.url}"

        def apply(i: Incident, _rest: str) -> tuple[Incident, str, str]:
            return core.link_page(i, result.url, self.clock.now()), "paged", text

        try:
            await self._change(event, incident_id, "", apply)
        except IllegalTransition as exc:
            log.info("page not linked to %s: %s", incident_id, exc)

    # -- reading -----------------------------------------------------------------------------

    async def status(self, call: Call) -> Reply:
        incident, _ = await self._target(call.event, _raw(call), self._usage(call))
        return await self._status_reply(incident)

    async def list_open(self, call: Call) -> Reply:
        found = await self.store.open()
        if not found:
            return Reply(text="No open incidents.")
        now = self.clock.now()
        fields = tuple(
            (
                f"{i.id} [{i.sev}] {i.title}",
                f"{i.state.value}, commander {i.commander or 'none'}, "
                f"open for {core.duration(i.declared_at, now)}",
            )
            for i in found
        )
        return Reply(title=f"Open incidents ({len(found)})", fields=fields)

    async def timeline(self, call: Call) -> Reply:
        incident, _ = await self._target(call.event, _raw(call), self._usage(call))
        entries = await self.store.timeline(incident.id)
        return Reply(
            title=f"Timeline of {incident.id}", code=core.timeline_text(entries, self.times)
        )

    async def export(self, call: Call) -> Reply:
        incident, _ = await self._target(call.event, _raw(call), self._usage(call))
        entries = await self.store.timeline(incident.id)
        rows = await self.followups.postmortem_rows(incident.id) if self.followups else ()
        return Reply(
            title=f"Postmortem draft for {incident.id}",
            code=core.postmortem(incident, entries, self.clock.now(), rows, self.times),
        )

    def _usage(self, call: Call) -> str:
        return f"usage: {call.spec.usage(call.prefix)}" if call.spec else ""

    # -- reactions (Mattermost's stand-in for buttons) ---------------------------------------

    async def reaction_command(self, event: Inbound) -> str | None:
        """The command a reaction on one of an incident's messages stands for; the bus runs it
        through the same checks as the typed command (role, channel, rate limit, audit)."""
        action = REACTIONS.get(event.text.strip(":").lower())
        if action is None or not event.message_id:
            return None
        incident_id = await self.store.incident_for_message(event.platform, event.message_id)
        if incident_id is None:
            return None
        return f"incident {action} {incident_id}"

    # -- pulses ------------------------------------------------------------------------------

    async def pulse_job(self) -> None:
        await self.pulse()

    async def pulse(self) -> int:
        """Remind the commander of each open incident quiet for `pulse_minutes`: once per
        quiet period. The reminder is recorded before it is sent, so a crash or restart
        can lose one reminder but never repeat it."""
        now = self.clock.now()
        quiet = timedelta(minutes=self.settings.pulse_minutes)
        reminded = 0
        for incident in await self.store.open():
            last_pulse = await self.store.last_pulse(incident.id)
            since = max(
                incident.quiet_since(), last_pulse or datetime.min.replace(tzinfo=now.tzinfo)
            )
            if now - since < quiet:
                continue
            home = await self.store.home(incident.id)
            if home is None:
                continue
            await self.store.mark_pulse(incident.id, now)
            who = incident.commander or "Incident Commander"
            self.outbox.enqueue(
                home.destination,
                Reply(
                    text=(
                        f"{who}: no update on {incident.id} for "
                        f"{core.duration(incident.quiet_since(), now)}. Post one with "
                        f"{self.settings.prefix}incident update <what changed>"
                    ),
                    priority=Priority.STATUS,
                ),
            )
            reminded += 1
        return reminded


def _cause(exc: Exception, what: str) -> str:
    """Log a failed channel-admin step and say why in a few words (core/bus.short_cause)."""
    ref = new_ref()
    expected = isinstance(exc, UserError | ChannelRefused | TransientSendError)
    log.warning("%s failed (ref %s): %s", what, ref, exc, exc_info=None if expected else exc)
    return short_cause(exc, ref)
