"""The `pagerduty-incidents` job: PagerDuty incidents followed in chat, with no inbound HTTP.

Each poll reads the open incidents on the followed services, the ones opened since the last
poll and already resolved (so a short-lived one is not mistaken for news later) and, one by
one, the incidents we show as open that are no longer in the open list (resolved out of band:
PagerDuty's app, a phone call). It decides what changed in one durable write, then posts or
edits the owed cards. Webhooks would be cheaper but need a public endpoint, which this daemon
never opens.

A failed read or a card that could not be posted makes the job raise, so the scheduler counts
it and health shows it; a later poll delivers what is still owed.

Several instances: the poll runs on the lease holder, and it reads the lease's token once, at
its start. Its decision and each card's delivery claim are written only while that token is
still the lease's (ha/fence.py), so a leader paused past its lease that wakes up mid-poll
decides nothing and posts nothing; the new leader's poll does it, once. A click's own card
update (`record`) runs on whichever instance got the click, unfenced (the click was claimed
once), and claims each card in the database like the poll does (ha/claims.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta

from chatopsd.core.messages import Destination, Sent
from chatopsd.core.ports import Clock, KeyValue, ReplySink
from chatopsd.core.times import UTC_TIMES, Times
from chatopsd.features.pagerduty import rules as core
from chatopsd.features.pagerduty.ports import IncidentCards, OwedCard
from chatopsd.features.pagerduty.rules import IncidentApi, PdIncident
from chatopsd.ha.fence import Lease, Superseded, read_fence

log = logging.getLogger("chatopsd.pd_sync")

CURSOR = "pagerduty.incidents.since"
# The claim of one card's delivery: the poll's (fenced) or a click's (ha/claims.py).
Claim = Callable[[OwedCard], Awaitable[str | None]]


class IncidentSync:
    def __init__(
        self,
        api: IncidentApi,
        cards: IncidentCards,
        kv: KeyValue,
        outbox: ReplySink,
        clock: Clock,
        *,
        service_ids: Sequence[str],
        destinations: Sequence[Destination],
        overlap_seconds: float = 60.0,
        times: Times = UTC_TIMES,
        lease: Lease | None = None,
    ) -> None:
        self.times = times
        self.lease = lease  # None: the only instance (always leads, nothing to fence)
        self.api, self.cards, self.kv, self.outbox, self.clock = api, cards, kv, outbox, clock
        self.service_ids = tuple(service_ids)
        self.destinations = tuple(destinations)
        self.overlap = timedelta(seconds=overlap_seconds)
        # Decisions one at a time (a poll's and a click's). Deliveries run outside it, one at a
        # time per card: a long first poll (hundreds of posts at Slack's pace) never holds up
        # the card edit of a click, and no card is posted twice.
        self._lock = asyncio.Lock()
        self._busy: set[tuple[str, str, str]] = set()  # cards being posted or edited
        self._again: set[tuple[str, str, str]] = set()  # ...that changed again meanwhile
        self.polls = 0

    async def poll(self) -> None:
        """The scheduled job: read, decide, then deliver. Raises when any of it failed.

        PagerDuty is read outside the lock, so a slow PagerDuty never holds up a click's card
        edit; what was read is then checked against newer states recorded meanwhile."""
        self.polls += 1
        leading, fence = read_fence(self.lease)
        if not leading:
            return
        now, found = await self._read()
        async with self._lock:
            if not await self._decide(now, found, fence):
                return
        await self._deliver(self._fenced(fence))

    async def decide(self) -> None:
        """Read PagerDuty and record what changed, without posting (the first half of a poll)."""
        leading, fence = read_fence(self.lease)
        if not leading:
            return
        now, found = await self._read()
        async with self._lock:
            await self._decide(now, found, fence)

    async def deliver(self) -> None:
        leading, fence = read_fence(self.lease)
        if leading:
            await self._deliver(self._fenced(fence))

    async def record(self, incident: PdIncident) -> None:
        """An action from chat changed an incident: show it now, not at the next poll."""
        async with self._lock:
            old = await self.cards.state(incident.id)
            if old is None and incident.service_id not in self.service_ids:
                return  # not a followed incident (`!pd incidents --all`)
            change = _change(incident, old)
            if change is not None:
                await self.cards.decide_unfenced([change], self.destinations)
        await self._deliver(self.cards.claim_unfenced, incident.id)

    async def current(self, incident_id: str) -> PdIncident | None:
        state = await self.cards.state(incident_id)
        return None if state is None else PdIncident.from_digest(state)

    async def _read(self) -> tuple[datetime, dict[str, PdIncident]]:
        now = self.clock.now()
        raw = await self.kv.get(CURSOR)
        since = datetime.fromisoformat(raw) if raw else now - timedelta(hours=1)
        found: dict[str, PdIncident] = {}
        for inc in await self.api.resolved_since(since - self.overlap, self.service_ids):
            found[inc.id] = inc
        for inc in await self.api.open_incidents(self.service_ids):
            found[inc.id] = inc
        for incident_id in await self.cards.unresolved():
            if incident_id not in found:
                found[incident_id] = await self.api.get(incident_id)
        return now, found

    async def _decide(
        self, now: datetime, found: dict[str, PdIncident], fence: int | None = None
    ) -> bool:
        decided = await self.cards.states(list(found))
        changes = []
        for inc in found.values():
            old = decided.get(inc.id)
            if old is None and not inc.open:
                continue  # opened and closed between two polls: nothing for anyone to do
            change = _change(inc, old)
            if change is not None:
                changes.append(change)
        try:
            await self.cards.decide(changes, self.destinations, fence=fence)
        except Superseded:
            log.warning(
                "pagerduty incidents: the lease moved on (token %s superseded); "
                "this instance records and posts nothing",
                fence,
            )
            return False
        await self.kv.put(CURSOR, now.isoformat())
        if changes:
            log.info("pagerduty incidents: %d changed", len(changes))
        return True

    def _fenced(self, fence: int | None) -> Claim:
        """The poll's claims: under its lease token."""

        async def claim(card: OwedCard) -> str | None:
            return await self.cards.claim(card, fence=fence)

        return claim

    async def _deliver(self, claim: Claim, incident_id: str | None = None) -> None:
        failed = 0
        for owed in await self.cards.owed(incident_id):
            try:
                failed += await self._deliver_card(owed, claim)
            except Superseded:
                break  # the lease moved on: the new leader delivers what is still owed
        if failed:
            raise RuntimeError(f"{failed} PagerDuty incident card(s) could not be posted")

    async def _deliver_card(self, owed: OwedCard, claim_card: Claim) -> int:
        """Post or edit one card; 1 if the post failed. A card already being delivered is
        marked to go once more when that delivery ends, with whatever is owed then."""
        key = (owed.incident_id, owed.destination.platform, owed.destination.channel)
        if key in self._busy:
            self._again.add(key)
            return 0
        self._busy.add(key)
        try:
            while True:
                self._again.discard(key)
                # Claimed in the database first: a superseded leader gets no claim (it posts
                # nothing), and another instance delivering this card keeps it.
                claim = await claim_card(owed)
                if claim is None:
                    return 0
                shown = False
                try:
                    # Read again now that this card is ours: the list we came from may
                    # predate another delivery that posted it meanwhile.
                    still = [
                        o
                        for o in await self.cards.owed(owed.incident_id)
                        if o.destination == owed.destination
                    ]
                    if not still:
                        return 0
                    if not await self._show(still[0]):
                        return 1
                    shown = True  # `shown` freed the claim with the message it records
                finally:
                    if not shown:
                        await self.cards.release(owed, claim)
                if key not in self._again:
                    return 0
        finally:
            self._busy.discard(key)

    async def _show(self, owed: OwedCard) -> bool:
        reply = core.card(PdIncident.from_digest(owed.wanted), self.times)
        if owed.message_id is None:
            sent = await self.outbox.send(owed.destination, reply)
            if sent is None:
                return False
            await self.cards.shown(owed, sent.message_id)
        else:
            await self.outbox.edit(Sent(owed.destination, owed.message_id), reply)
            await self.cards.shown(owed, owed.message_id)
        return True


def _change(inc: PdIncident, old: str | None) -> tuple[str, int, str, str] | None:
    """(id, number, status, state) when the incident differs from what was decided before.
    An escalation level only we know (PagerDuty's incident has none) is kept until the
    incident leaves the open states. A read older than the decided state (a click recorded
    while the poll was reading) changes nothing."""
    if old is not None:
        before = PdIncident.from_digest(old)
        if (
            inc.changed_at
            and before.changed_at
            and _when(inc.changed_at) < _when(before.changed_at)
        ):
            return None
        if inc.level is None and inc.open:
            inc = inc.with_level(before.level)
    state = inc.digest()
    if state == old:
        return None
    return inc.id, inc.number, inc.status, state


def _when(iso: str) -> datetime:
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)
