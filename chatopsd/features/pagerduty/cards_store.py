"""PagerDuty incidents followed in chat, and the cards that show them, in SQLite.

The poll decides first (one atomic write: the new state and which cards are owed), then posts
and edits what is owed. A restart between the two finds the owed cards and delivers them once;
a repeated poll finds nothing changed and owes nothing.

Several instances (PostgreSQL, issue 19):
- The poll runs on the lease holder only, and its writes are fenced: `decide` and the
  delivery `claim` take the leader's token and write only while it is still the lease's,
  checked in the same transaction (stalkers.fence_holds). A leader paused past its lease that
  wakes up decides nothing and claims no card, so it posts nothing.
- A card is claimed in the database before it is posted or edited (`claimed_by`), so the
  leader's poll and a click's delivery on another instance never post the same card twice.
  `shown` records the message that was really posted and frees the claim; a claim left by a
  dead instance is taken over by a newer leader at once, or by anyone once it is stale.
- A click's PagerDuty write is claimed per (incident, action) in `pd_click_claims`
  (SqlClickClaims), so two clicks on two instances make one write.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence

from chatopsd.core.messages import Destination
from chatopsd.core.ports import OwedCard
from chatopsd.features.status.store import fence_holds, write_fenced
from chatopsd.store.db import Database, Op, Tx, placeholders

CLAIM_STALE_SECONDS = 120.0  # a delivery or a PagerDuty write takes seconds, never this long


class SqliteIncidentCards:
    def __init__(self, db: Database) -> None:
        self.db = db

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
    ) -> bool:
        """Record the changes and the cards they owe, atomically. With `fence` (the poll on
        the lease holder), only while that token is still the lease's: False, and nothing
        written, for a leader that was superseded."""
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
            ops.append(
                ("UPDATE pd_cards SET wanted = $1 WHERE incident_id = $2", (state, incident_id))
            )
        if fence is None:
            if ops:
                await self.db.write_many(ops)
            return True
        return await write_fenced(self.db, ops, fence)

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
        """Take the delivery of one card before posting or editing it. Returns the claim's id
        (pass it to `shown` or `release`), or None: the fence no longer holds (a superseded
        leader: post nothing), or another instance is delivering this card right now.

        On SQLite (one process) only the fence is checked: the process's own bookkeeping
        already keeps one delivery per card."""
        nonce = uuid.uuid4().hex
        if fence is None and not self.db.shared:
            return nonce
        at = time.time() if now is None else now
        d = card.destination
        takeover = "claimed_by IS NULL OR claimed_at < $7"
        params = (
            nonce,
            at,
            fence,
            card.incident_id,
            d.platform,
            d.channel,
            at - CLAIM_STALE_SECONDS,
        )
        if fence is not None:
            takeover += " OR claimed_token < $3"  # an older leader's: it is no longer leading

        async def claim(tx: Tx) -> str | None:
            if fence is not None and not await fence_holds(tx, fence):
                return None
            if not self.db.shared:
                return nonce
            taken = await tx.execute(
                "UPDATE pd_cards SET claimed_by = $1, claimed_at = $2, claimed_token = $3 "
                f"WHERE incident_id = $4 AND platform = $5 AND channel = $6 AND ({takeover})",
                params,
            )
            return nonce if taken else None

        return await self.db.transaction(claim)

    async def release(self, card: OwedCard, claim: str) -> None:
        """Give a claimed card back (nothing was posted): only our own claim."""
        d = card.destination
        await self.db.write(
            "UPDATE pd_cards SET claimed_by = NULL, claimed_at = NULL, claimed_token = NULL "
            "WHERE incident_id = $1 AND platform = $2 AND channel = $3 AND claimed_by = $4",
            (card.incident_id, d.platform, d.channel, claim),
        )

    async def shown(self, card: OwedCard, message_id: str) -> None:
        """The card now shows `card.wanted` in `message_id`. Written whoever delivered it: it
        is what chat shows, and forgetting a posted message would post the card again."""
        d = card.destination
        await self.db.write(
            "UPDATE pd_cards SET message_id = $1, shown = $2, claimed_by = NULL, "
            "claimed_at = NULL, claimed_token = NULL "
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
