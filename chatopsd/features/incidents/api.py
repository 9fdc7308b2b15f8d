"""What other features use of incidents.

The incidents feature owns incidents. The status page publisher, the follow-ups and the video
bridge follow the lifecycle (declared, acknowledged, updated, resolved, closed...) as
`IncidentHook`s subscribed to the `IncidentService`, and may add lines to the pinned status;
their own commands find an incident and record a change through the same service, so the
rules (which incident a command means, one timeline entry per change, the status refreshed)
live in one place. Paging links a page to the incident it was made from.

Declared here for the incidents feature to use, provided by others: the pager behind
`!incident escalate --page` (on-call overrides) and the follow-up rows of the postmortem.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple, Protocol

from chatopsd.core.commands import Arg
from chatopsd.core.context import Call
from chatopsd.core.messages import Destination, Inbound, Reply
from chatopsd.features.incidents.rules import Incident, parse_id, touch
from chatopsd.runtime import ServiceKey

if TYPE_CHECKING:
    from chatopsd.core.times import Times
    from chatopsd.features.paging.api import PageResult

__all__ = [
    "ESCALATION_PAGER",
    "FOLLOWUP_ROWS",
    "INCIDENTS",
    "INCIDENT_ID",
    "STATUSPAGE_ROLE",
    "Apply",
    "Change",
    "EscalationPager",
    "FollowUpRows",
    "Given",
    "Home",
    "Incident",
    "IncidentHook",
    "IncidentService",
    "given",
    "touch",
    "usage",
]

# The role that may speak to customers: publish to the status page, or post --public text
# (auth.command_roles overrides it per command, or per option: "incident update --public").
STATUSPAGE_ROLE = "statuspage"

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


@dataclass(frozen=True, slots=True)
class Home:
    """Where an incident's conversation happens: a channel of its own, or a thread."""

    platform: str
    channel: str
    thread: str | None

    @property
    def destination(self) -> Destination:
        return Destination(self.platform, self.channel, self.thread)


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


def _is_id(word: str) -> bool:
    return parse_id(word) is not None


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
    args = call.spec.args if call.spec else ()
    tail = next((a.name for a in args if a.name != "id" and not a.option), None)
    return Given(call.text("id"), (call.text(tail) or "") if tail else "")


def usage(call: Call) -> str:
    """The command's usage line, for the hint of a usage error."""
    return f"usage: {call.spec.usage(call.prefix)}" if call.spec else ""


# apply(incident as stored now, the command's tail) -> (new incident, timeline kind, text)
Apply = Callable[[Incident, str], tuple[Incident, str, str]]


class IncidentHook(Protocol):
    async def changed(self, change: Change) -> None:
        """Called after the change is stored. Must not raise for outside failures: it says
        them in the incident's channel itself (the change already happened)."""
        ...

    async def status_fields(self, incident: Incident) -> Sequence[tuple[str, str]]:
        """Extra label/value lines for the pinned status message."""
        ...


class IncidentService(Protocol):
    prefix: str  # the command prefix, for hints that name a command
    times: Times  # how times are shown (chatopsd.timezone)

    def subscribe(self, hook: IncidentHook) -> None:
        """Follow every change from now on (hooks run in the order they subscribed)."""
        ...

    async def find(self, event: Inbound, named: Given | str, usage: str) -> tuple[Incident, str]:
        """The incident named (an id first, or a command's Given), or the one whose channel
        or thread this is, or the only open one; and the rest of the command. UsageError
        (with `usage` as hint) or NotFound otherwise."""
        ...

    async def change(
        self,
        event: Inbound,
        named: Given | str,
        usage: str,
        apply: Apply,
        public: str | None = None,
    ) -> tuple[Incident, Incident, str]:
        """Find the incident, change and store it with its timeline entry in one step (on the
        incident as stored now), tell the hooks, refresh the pinned status: (before, after,
        the rest of the command)."""
        ...

    async def refresh_status(self, incident_id: str) -> None:
        """Re-render the pinned status (a hook's own state changed, e.g. published)."""
        ...

    async def home(self, incident_id: str) -> Home | None:
        """Its channel or thread, if it has one."""
        ...

    async def incident_at(self, platform: str, channel: str, thread: str | None) -> str | None:
        """The incident whose channel or thread this is."""
        ...

    async def link_page(
        self, call: Call, result: PageResult, incident_id: str | None = None
    ) -> None:
        """A page succeeded: if it ran in an incident's channel or thread (or names the
        incident), record it on the incident (timeline, status and postmortem)."""
        ...


class EscalationPager(Protocol):
    async def escalation_page(self, call: Call, target: str, incident_id: str) -> Reply:
        """`!incident escalate <id> --page <target>`: page a schedule, a person or a team."""
        ...


class FollowUpRows(Protocol):
    async def postmortem_rows(self, incident_id: str) -> Sequence[tuple[str, str, str, str]]:
        """(action, owner, ticket key, ticket URL) rows for the postmortem's follow-ups."""
        ...


INCIDENTS: ServiceKey[IncidentService] = ServiceKey("incidents")
ESCALATION_PAGER: ServiceKey[EscalationPager] = ServiceKey("escalation pager")
FOLLOWUP_ROWS: ServiceKey[FollowUpRows] = ServiceKey("follow-up rows")
