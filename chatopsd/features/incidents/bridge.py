"""`incidents.bridge_url`: the video bridge link, posted and pinned when an incident opens,
and shown in its pinned status. An `IncidentHook`."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from chatopsd.core.capabilities import MESSAGE_PINS, Capabilities
from chatopsd.core.messages import Priority, Reply
from chatopsd.core.ports import IncidentStore, ReplySink
from chatopsd.features.incidents.api import Change
from chatopsd.features.incidents.rules import Incident

log = logging.getLogger("chatopsd.incident")


class Bridge:
    def __init__(
        self,
        template: str,
        store: IncidentStore,
        outbox: ReplySink,
        capabilities: Capabilities,
    ) -> None:
        self.template = template
        self.store = store
        self.outbox = outbox
        self.capabilities = capabilities

    def url(self, incident_id: str) -> str:
        # replace, not str.format: a template with other braces must not raise or leak
        return self.template.replace("{incident_id}", incident_id)

    async def changed(self, change: Change) -> None:
        if change.kind != "declared":
            return
        home = await self.store.home(change.incident.id)
        if home is None:
            return
        sent = await self.outbox.send(
            home.destination,
            Reply(text=f"Video bridge: {self.url(change.incident.id)}", priority=Priority.STATUS),
        )
        pins = self.capabilities.get(home.platform, MESSAGE_PINS)
        if sent is None or pins is None or home.thread is not None:
            return
        try:
            await pins.pin(sent)
        except Exception as exc:  # the link is posted; an unpinned link is still useful
            log.warning("%s: could not pin the bridge link: %s", change.incident.id, exc)

    async def status_fields(self, incident: Incident) -> Sequence[tuple[str, str]]:
        return (("Bridge", self.url(incident.id)),)
