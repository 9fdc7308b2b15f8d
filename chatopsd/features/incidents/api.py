"""The small interface through which other features follow an incident's lifecycle.

The incident handler owns incidents; the status page publisher, the follow-ups and the video
bridge only need to hear what happened (declared, acknowledged, updated, resolved, closed...)
and may add lines to the pinned status. They register as `IncidentHook`s, so none of their
code lives in the incident handler.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from chatopsd.core.messages import Inbound
from chatopsd.features.incidents.rules import Incident

# Change kinds: the timeline kinds the incident handler writes ("declared", "acknowledged",
# "update", "escalated", "role", "joined", "resolved", "closed", "paged") plus the ones the
# hooks' own commands write ("identified", "monitoring", "published", "unpublished").


@dataclass(frozen=True, slots=True)
class Change:
    """One stored change of an incident. `public` is the text typed after --public, if any."""

    incident: Incident
    kind: str
    text: str
    event: Inbound
    public: str | None = None


class IncidentHook(Protocol):
    async def changed(self, change: Change) -> None:
        """Called after the change is stored. Must not raise for outside failures: it says
        them in the incident's channel itself (the change already happened)."""
        ...

    async def status_fields(self, incident: Incident) -> Sequence[tuple[str, str]]:
        """Extra label/value lines for the pinned status message."""
        ...


class FollowUpRows(Protocol):
    async def postmortem_rows(self, incident_id: str) -> Sequence[tuple[str, str, str, str]]:
        """(action, owner, ticket key, ticket URL) rows for the postmortem's follow-ups."""
        ...
