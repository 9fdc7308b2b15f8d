"""PagerDuty incidents followed in chat, and the cards that show them, in SQLite.

The poll decides first (one atomic write: the new state and which cards are owed), then posts
and edits what is owed. A restart between the two finds the owed cards and delivers them once;
a repeated poll finds nothing changed and owes nothing.

Several instances (PostgreSQL):
- The poll runs on the lease holder only, and its writes are fenced (ha/fence.py): `decide`
  and the delivery `claim` take the leader's token and write only while it is still the
  lease's, checked in the same transaction. A leader paused past its lease that wakes up
  decides nothing and claims no card, so it posts nothing. A click's own update is not
  singleton work: `decide_unfenced` and `claim_unfenced`, on whichever instance got it.
- A card is claimed before it is posted or edited (ha/claims.py), so the leader's poll and a
  click's delivery on another instance never post the same card twice. `shown` records the
  message that was really posted and frees the claim.
- A click's PagerDuty write is claimed per (incident, action) in `pd_click_claims`
  (SqlClickClaims), so two clicks on two instances make one write.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence

from chatopsd.core.messages import Destination
from chatopsd.features.pagerduty.ports import OwedCard
from chatopsd.ha.claims import CLAIM_STALE_SECONDS, FREED, DeliveryClaims
from chatopsd.ha.fence import write_fenced
from chatopsd.store.db import Database, Op, placeholders


def _decisions(
    changes: Sequence[tuple[str, int, str, str]], destinations: Sequence[Destination]
) -> list[Op]:
    """Record (incident id, number, status, state) per change; every new incident owes a card
    in each destination, a changed one an edit of each of its cards."""
    now = time.time()
    ops: list[Op] = []
    for incident_id, number, status, state in changes:
        ops.append(
            (
                "INSERT INTO pd_incidents (incident_id, number, status, state, updated) "
                "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (incident_id) DO UPDATE SET "
                "status = excluded.status, state = excluded.state, updated = excluded.updated",
                (incident_id, number, status, state, now),
            )
        )
        # An incident first seen already resolved gets no card (nobody needs to act).
        if status != "resolved":
            for d in destinations:
                ops.append(
                    (
                        "INSERT INTO pd_cards (incident_id, platform, channel, wanted) "
                        "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                        (incident_id, d.platform, d.channel, state),
                    )
                )
        ops.append(("UPDATE pd_cards SET wanted = $1 WHERE incident_id = $2", (state, incident_id)))
    return ops


def _key(card: OwedCard) -> tuple[str, str, str]:
    return card.incident_id, card.destination.platform, card.destination.channel


class SqlIncidentCards:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._claims = DeliveryClaims(db, "pd_cards", ("incident_id", "platform", "channel"))

    async def state(self, incident_id: str) -> str | None:
        row = await self.db.fetchone(
            "SELECT state FROM pd_incidents WHERE incident_id = $1", (incident_id,)
        )
        return None if row is None else str(row[0])

    async def states(self, incident_ids: Sequence[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        ids = list(incident_ids)
        for i in range(0, len(ids), 500):  # SQLite's bound-parameter limit is far above this
            chunk = ids[i : i + 500]
            rows = await self.db.fetchall(
                "SELECT incident_id, state FROM pd_incidents "
                f"WHERE incident_id IN ({placeholders(len(chunk))})",
                chunk,
            )
            found.update((str(r[0]), str(r[1])) for r in rows)
        return found

    async def by_number(self, number: int) -> str | None:
        row = await self.db.fetchone(
            "SELECT incident_id FROM pd_incidents WHERE number = $1 ORDER BY updated DESC",
            (number,),
        )
        return None if row is None else str(row[0])

    async def unresolved(self) -> list[str]:
        rows = await self.db.fetchall(
            "SELECT incident_id FROM pd_incidents WHERE status <> 'resolved'"
        )
        return [str(r[0]) for r in rows]

    async def decide(
        self,
        changes: Sequence[tuple[str, int, str, str]],
        destinations: Sequence[Destination],
        *,
        fence: int | None = None,
    ) -> None:
        """The poll's decision: the changes and the cards they owe, atomically, under its
        lease token (Superseded, nothing written, for a leader that was superseded)."""
        await write_fenced(self.db, _decisions(changes, destinations), fence)

    async def decide_unfenced(
        self, changes: Sequence[tuple[str, int, str, str]], destinations: Sequence[Destination]
    ) -> None:
        """A click's own decision, on whichever instance got the click (claimed once)."""
        ops = _decisions(changes, destinations)
        if ops:
            await self.db.write_many(ops)

    async def owed(self, incident_id: str | None = None) -> list[OwedCard]:
        one = "" if incident_id is None else "AND incident_id = $1 "
        rows = await self.db.fetchall(
            "SELECT incident_id, platform, channel, message_id, wanted FROM pd_cards "
            f"WHERE (shown IS NULL OR shown <> wanted) {one}ORDER BY incident_id",
            () if incident_id is None else (incident_id,),
        )
        return [
            OwedCard(str(r[0]), Destination(str(r[1]), str(r[2])), r[3], str(r[4])) for r in rows
        ]

    async def claim(
        self, card: OwedCard, *, fence: int | None = None, now: float | None = None
    ) -> str | None:
        """The poll's claim of one card's delivery, before posting or editing it, under its
        lease token (Superseded once that no longer holds: post nothing). The claim's id
        (pass it to `shown` or `release`), or None: another instance is delivering it."""
        return await self._claims.claim(_key(card), fence=fence, now=now)

    async def claim_unfenced(self, card: OwedCard, *, now: float | None = None) -> str | None:
        """The same, for a click's own card update, on whichever instance got the click."""
        return await self._claims.claim_unfenced(_key(card), now=now)

    async def release(self, card: OwedCard, claim: str) -> None:
        """Give a claimed card back (nothing was posted): only our own claim."""
        await self._claims.release(_key(card), claim)

    async def shown(self, card: OwedCard, message_id: str) -> None:
        """The card now shows `card.wanted` in `message_id`. Written whoever delivered it: it
        is what chat shows, and forgetting a posted message would post the card again."""
        d = card.destination
        await self.db.write(
            f"UPDATE pd_cards SET message_id = $1, shown = $2, {FREED} "
            "WHERE incident_id = $3 AND platform = $4 AND channel = $5",
            (message_id, card.wanted, card.incident_id, d.platform, d.channel),
        )


class SqlClickClaims:
    """One PagerDuty write per (incident, action), whichever instance got the click."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def claim(
        self, incident_id: str, action: str, holder: str, now: float, event: str = ""
    ) -> str | None:
        """The claim's id if this click won; None if someone else's write is under way.
        `event` ("platform:event id"): the same event handled again (taken over from an
        instance that died) takes its own claim over at once."""
        nonce = uuid.uuid4().hex
        won = await self.db.execute(
            "INSERT INTO pd_click_claims (incident_id, action, holder, nonce, claimed_at, event) "
            "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (incident_id, action) DO UPDATE SET "
            "holder = excluded.holder, nonce = excluded.nonce, claimed_at = excluded.claimed_at, "
            "event = excluded.event "
            "WHERE pd_click_claims.claimed_at < $7 OR pd_click_claims.event = excluded.event",
            (incident_id, action, holder, nonce, now, event or None, now - CLAIM_STALE_SECONDS),
        )
        return nonce if won else None

    async def holder(self, incident_id: str, action: str) -> str | None:
        row = await self.db.fetchone(
            "SELECT holder FROM pd_click_claims WHERE incident_id = $1 AND action = $2",
            (incident_id, action),
        )
        return None if row is None else str(row[0])

    async def release(self, incident_id: str, action: str, claim: str) -> None:
        await self.db.write(
            "DELETE FROM pd_click_claims WHERE incident_id = $1 AND action = $2 AND nonce = $3",
            (incident_id, action, claim),
        )
