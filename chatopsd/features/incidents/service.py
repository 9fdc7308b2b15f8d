"""The incident lifecycle other features use (incidents/api.IncidentService): which incident a
command means, one stored change with its timeline entry, the followers told, the pinned
status refreshed. The `!incident` commands (commands.py) go through it too."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING

from chatopsd.core.context import Call
from chatopsd.core.errors import NotFound, UsageError
from chatopsd.core.messages import Inbound, Reply
from chatopsd.core.ports import Clock, ReplySink
from chatopsd.core.times import Times
from chatopsd.features.incidents import rules as core
from chatopsd.features.incidents.api import Apply, Change, Given, Home, IncidentHook
from chatopsd.features.incidents.rules import IllegalTransition, Incident, TimelineEntry
from chatopsd.features.paging.api import PageResult

if TYPE_CHECKING:
    from chatopsd.features.incidents.ports import IncidentStore  # a protocol: annotations only

log = logging.getLogger("chatopsd.incident")


class IncidentLifecycle:
    def __init__(
        self, store: IncidentStore, outbox: ReplySink, clock: Clock, *, prefix: str, times: Times
    ) -> None:
        self.store, self.outbox, self.clock = store, outbox, clock
        self.prefix, self.times = prefix, times
        # the features that follow the lifecycle (status page, follow-ups, bridge), in order
        self._hooks: list[IncidentHook] = []

    def subscribe(self, hook: IncidentHook) -> None:
        self._hooks.append(hook)

    # -- finding the incident ----------------------------------------------------------------

    async def find(self, event: Inbound, named: Given | str, usage: str) -> tuple[Incident, str]:
        given = named if isinstance(named, Given) else Given.of_text(named)
        incident_id = core.parse_id(given.incident_id) if given.incident_id else None
        rest = given.rest.strip()
        if incident_id is None:
            incident_id = await self.store.incident_at(event.platform, event.channel, event.thread)
        if incident_id is None:
            # With exactly one incident open there is nothing to ask, on any platform; with
            # none open, the one resolved and not yet closed is the one to close or export.
            open_now = await self.store.open()
            only = open_now or await self.store.resolved()
            if len(only) == 1:
                incident_id = only[0].id
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
                hint=f"see {self.prefix}incident list",
            )
        return found, rest

    async def home(self, incident_id: str) -> Home | None:
        return await self.store.home(incident_id)

    async def incident_at(self, platform: str, channel: str, thread: str | None) -> str | None:
        return await self.store.incident_at(platform, channel, thread)

    # -- changes -----------------------------------------------------------------------------

    def entry(self, event: Inbound, kind: str, text: str) -> TimelineEntry:
        return TimelineEntry(
            self.clock.now(), event.actor.display, event.platform, event.channel, kind, text
        )

    async def change(
        self,
        event: Inbound,
        named: Given | str,
        usage: str,
        apply: Apply,
        public: str | None = None,
    ) -> tuple[Incident, Incident, str]:
        found, rest = await self.find(event, named, usage)
        said: list[tuple[str, str]] = []

        def step(current: Incident) -> tuple[Incident, TimelineEntry]:
            # decided on the incident as stored now (another instance may have changed it)
            try:
                after, kind, text = apply(current, rest)
            except IllegalTransition as exc:
                # the core's hints name commands without the prefix, which only we know
                if exc.hint and exc.hint.startswith("incident "):
                    exc.hint = f"{self.prefix}{exc.hint}"
                raise
            said.append((kind, text))
            return after, self.entry(event, kind, text)

        changed = await self.store.change(found.id, step)
        if changed is None:
            raise NotFound(f"there is no incident {found.id}")
        before, after = changed
        kind, text = said[-1]
        await self.notify(Change(after, kind, text, event, public))
        await self._refresh_status(after)
        return before, after, rest

    async def notify(self, change: Change) -> None:
        for hook in self._hooks:
            try:
                await hook.changed(change)
            except Exception:  # the change is stored: a follower's failure must not undo it
                log.exception("incident hook %s failed on %s", type(hook).__name__, change.kind)

    async def status_reply(self, incident: Incident) -> Reply:
        last = await self.store.last_update(incident.id)
        reply = core.status(incident, last, self.clock.now(), self.times)
        extra: list[tuple[str, str]] = []
        for hook in self._hooks:
            extra.extend(await hook.status_fields(incident))
        return replace(reply, fields=reply.fields + tuple(extra)) if extra else reply

    async def _refresh_status(self, incident: Incident) -> None:
        reply = await self.status_reply(incident)
        for sent in await self.store.messages(incident.id, "status"):
            await self.outbox.edit(sent, reply)

    async def refresh_status(self, incident_id: str) -> None:
        incident = await self.store.get(incident_id)
        if incident is not None:
            await self._refresh_status(incident)

    async def link_page(
        self, call: Call, result: PageResult, incident_id: str | None = None
    ) -> None:
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
            await self.change(event, incident_id, "", apply)
        except IllegalTransition as exc:
            log.info("page not linked to %s: %s", incident_id, exc)
