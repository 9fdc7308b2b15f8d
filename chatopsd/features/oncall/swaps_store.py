"""`!ic swap` requests in the database."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from chatopsd.features.oncall.swap_rules import Swap
from chatopsd.store.db import Database, Tx

_COLS = (
    "id, schedule_id, start, until, reason, requester, req_name, platform, channel, "
    "message_id, expires, taker, taker_name"
)


class SqlSwaps:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def open(self, swap: Swap) -> int:
        async def run(tx: Tx) -> int:
            row = await tx.fetchone(
                "INSERT INTO oncall_swaps (schedule_id, start, until, reason, requester, "
                "req_name, platform, channel, expires) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) "
                "RETURNING id",
                (
                    swap.schedule_id,
                    swap.start.isoformat(),
                    swap.until.isoformat(),
                    swap.reason,
                    swap.requester,
                    swap.requester_name,
                    swap.platform,
                    swap.channel,
                    swap.expires.isoformat(),
                ),
            )
            assert row is not None
            return int(row[0])

        return await self.db.transaction(run)

    async def posted(self, swap_id: int, message_id: str) -> None:
        await self.db.write(
            "UPDATE oncall_swaps SET message_id = $1 WHERE id = $2", (message_id, swap_id)
        )

    async def get(self, swap_id: int) -> Swap | None:
        row = await self.db.fetchone(f"SELECT {_COLS} FROM oncall_swaps WHERE id = $1", (swap_id,))
        return None if row is None else _swap(row)

    async def claim(self, swap_id: int, taker: str, taker_name: str, now: datetime) -> bool:
        changed = await self.db.execute(
            "UPDATE oncall_swaps SET taker = $1, taker_name = $2 "
            "WHERE id = $3 AND taker IS NULL AND expires > $4",
            (taker, taker_name, swap_id, now.isoformat()),
        )
        return changed == 1

    async def release(self, swap_id: int, taker: str) -> None:
        await self.db.write(
            "UPDATE oncall_swaps SET taker = NULL, taker_name = NULL WHERE id = $1 AND taker = $2",
            (swap_id, taker),
        )

    async def expired(self, now: datetime) -> list[Swap]:
        rows = await self.db.fetchall(
            f"SELECT {_COLS} FROM oncall_swaps "
            "WHERE taker IS NULL AND closed = 0 AND expires <= $1",
            (now.isoformat(),),
        )
        return [_swap(r) for r in rows]

    async def close(self, swap_id: int) -> None:
        await self.db.write("UPDATE oncall_swaps SET closed = 1 WHERE id = $1", (swap_id,))


def _swap(r: Any) -> Swap:
    return Swap(
        int(r[0]),
        str(r[1]),
        datetime.fromisoformat(r[2]),
        datetime.fromisoformat(r[3]),
        str(r[4]),
        str(r[5]),
        str(r[6]),
        str(r[7]),
        str(r[8]),
        None if r[9] is None else str(r[9]),
        datetime.fromisoformat(r[10]),
        None if r[11] is None else str(r[11]),
        None if r[12] is None else str(r[12]),
    )
