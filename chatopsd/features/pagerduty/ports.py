"""The PagerDuty feature's stores (implemented in cards_store.py over SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from chatopsd.core.messages import Destination


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
    ) -> None:
        """The poll's decision: (incident id, number, status, state) recorded atomically;
        every new incident gets a card owed in each destination, a changed one an edit owed
        in each of its cards. Under the lease token `fence` (ha/fence.py: Superseded)."""
        ...

    async def decide_unfenced(
        self, changes: Sequence[tuple[str, int, str, str]], destinations: Sequence[Destination]
    ) -> None:
        """The same for a click's own update, on whichever instance got the click."""
        ...

    async def owed(self, incident_id: str | None = None) -> list[OwedCard]:
        """Cards still to post or edit (of one incident, or all)."""
        ...

    async def claim(self, card: OwedCard, *, fence: int | None = None) -> str | None:
        """Take the delivery of one card under the poll's lease token (Superseded once it no
        longer holds): the claim's id, or None while another instance is delivering it."""
        ...

    async def claim_unfenced(self, card: OwedCard) -> str | None:
        """The same for a click's own update (not singleton work)."""
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
