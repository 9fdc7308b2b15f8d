"""Delivery claims: who is posting an owed message right now (a PagerDuty incident card, a
handoff announcement, a shift reminder's DM), so that two instances never post it twice.

The message is owed in a table (a row per message, keyed by `key`) with the columns
`claimed_by` (the claim's id), `claimed_at` (epoch seconds) and `claimed_token` (the lease
token it was claimed under). A claim is taken in the database before posting; the record of
what was posted frees it (`FREED` in the same UPDATE), a failed post gives it back
(`release`). A claim left by a dead instance is taken over at once by a newer leader, or by
anyone once it is stale.

On one instance (SQLite) the process's own bookkeeping already keeps one delivery per
message: a claim only checks the fence.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence

from chatopsd.ha.fence import check
from chatopsd.store.db import Database, Tx

# A delivery (or a PagerDuty write) takes seconds, never this long: a claim this old was left
# by an instance that died.
CLAIM_STALE_SECONDS = 120.0
# What the UPDATE recording a delivery sets besides its own columns: the claim is freed.
FREED = "claimed_by = NULL, claimed_at = NULL, claimed_token = NULL"


class DeliveryClaims:
    def __init__(self, db: Database, table: str, key: Sequence[str], *, owed: str = "") -> None:
        """`key`: the columns that name one message; `owed`: an SQL condition it must still
        meet to be claimed (e.g. "sent IS NULL")."""
        self.db = db
        self._key_columns = tuple(key)
        self._owed = owed
        self._table = table

    def _key(self, first: int) -> str:
        """The key's condition, its values numbered from `$first`."""
        return " AND ".join(
            f"{column} = ${first + n}" for n, column in enumerate(self._key_columns)
        )

    async def claim(
        self, key: Sequence[object], *, fence: int | None, now: float | None = None
    ) -> str | None:
        """Singleton work's claim, under the lease token `fence` (ha/fence.py: Superseded if
        it no longer holds). The claim's id, or None: another instance is delivering it, or
        it is no longer owed."""
        return await self._claim(key, fence, now, fenced=True)

    async def claim_unfenced(
        self, key: Sequence[object], *, now: float | None = None
    ) -> str | None:
        """A claim for work any instance may do (an action from chat): checked only against
        the other deliveries of the message."""
        return await self._claim(key, None, now, fenced=False)

    async def _claim(
        self, key: Sequence[object], fence: int | None, now: float | None, *, fenced: bool
    ) -> str | None:
        nonce = uuid.uuid4().hex
        shared = self.db.shared
        if not shared and fence is None:
            return nonce  # the only instance, nothing to fence
        at = time.time() if now is None else now
        stale = 4 + len(key)
        takeover = f"claimed_by IS NULL OR claimed_at < ${stale}"
        params = (nonce, at, fence, *key, at - CLAIM_STALE_SECONDS)
        if fence is not None:
            takeover += " OR claimed_token < $3"  # an older leader's: it no longer leads
        where = f"{self._key(4)} AND {self._owed}" if self._owed else self._key(4)

        async def claim(tx: Tx) -> str | None:
            if fenced:
                await check(tx, shared, fence)
            if not shared:
                return nonce
            taken = await tx.execute(
                f"UPDATE {self._table} SET claimed_by = $1, claimed_at = $2, claimed_token = $3 "
                f"WHERE {where} AND ({takeover})",
                params,
            )
            return nonce if taken else None

        return await self.db.transaction(claim)

    async def release(self, key: Sequence[object], claim: str) -> None:
        """Give a claimed message back (nothing was posted): only our own claim."""
        await self.db.write(
            f"UPDATE {self._table} SET {FREED} "
            f"WHERE {self._key(1)} AND claimed_by = ${len(key) + 1}",
            (*key, claim),
        )
