"""The demo ticket tracker: used only when nothing real is configured (`Config.demo`), so
`!incident tickets` and the export at close can be tried. Tickets are numbered in memory;
their links are on the reserved `.invalid` domain and say "demo"."""

from __future__ import annotations

import itertools

from chatopsd.features.followups.trackers import Ticket, TicketDraft


class DemoTracker:
    name = "Demo tracker"

    def __init__(self) -> None:
        self._numbers = itertools.count(1)
        self.created: list[TicketDraft] = []

    async def create(self, draft: TicketDraft) -> Ticket:
        n = next(self._numbers)
        self.created.append(draft)
        return Ticket(f"DEMO-{n}", f"https://tickets.demo.invalid/DEMO-{n}")
