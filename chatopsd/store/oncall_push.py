"""Handoff state and the posts it owes, in SQLite (issue 18).

`decide()` writes the new state of each watch and the posts it causes in ONE transaction, each
post under an idempotency key: a crash after deciding finds the post owed at the next start and
sends it (not lost); the state already moved, so it is never decided twice (not duplicated).
The one window left is a crash between the platform accepting a post and `sent()` being
recorded: chat APIs take no idempotency key, so that post would be sent again.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from chatopsd.core.handoff import Holders, OwedPost, Step, Watched
from chatopsd.core.messages import Destination
from chatopsd.store.db import Database, Op


class SqliteOnCallPush:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def watched(self) -> dict[str, Watched]:
        rows = await self.db.fetchall("SELECT watch, announced, pending, seq FROM oncall_announced")
        return {
            str(r[0]): Watched(
                Holders.decode(r[1]), Holders.decode(r[2]) if r[2] else None, int(r[3])
            )
            for r in rows
        }

    async def decide(self, steps: Sequence[Step], destinations: Sequence[Destination]) -> None:
        now = time.time()
        ops: list[Op] = []
        for s in steps:
            ops.append(
                (
                    "INSERT INTO oncall_announced (watch, announced, pending, seq, updated) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (watch) DO UPDATE SET "
                    "announced = excluded.announced, pending = excluded.pending, "
                    "seq = excluded.seq, updated = excluded.updated",
                    (
                        s.watch,
                        s.announced.encode(),
                        s.pending.encode() if s.pending else None,
                        s.seq,
                        now,
                    ),
                )
            )
            if s.text is None:
                continue
            for d in destinations:
                ops.append(
                    (
                        "INSERT INTO oncall_posts (key, platform, channel, text, decided) "
                        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (key) DO NOTHING",
                        (
                            f"handoff:{s.watch}:{s.seq}:{d.platform}:{d.channel}",
                            d.platform,
                            d.channel,
                            s.text,
                            now,
                        ),
                    )
                )
        if ops:
            await self.db.write_many(ops)

    async def owe(self, key: str, destination: Destination, text: str) -> None:
        """Record one post under its idempotency key; a key owed before is left as it is."""
        await self.db.write(
            "INSERT INTO oncall_posts (key, platform, channel, text, decided) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (key) DO NOTHING",
            (key, destination.platform, destination.channel, text, time.time()),
        )

    async def owed(self) -> list[OwedPost]:
        rows = await self.db.fetchall(
            "SELECT key, platform, channel, text, dm FROM oncall_posts WHERE sent IS NULL "
            "ORDER BY decided, key"
        )
        return [
            OwedPost(str(r[0]), Destination(str(r[1]), str(r[2])), str(r[3]), bool(r[4]))
            for r in rows
        ]

    async def reminded(self, keys: Sequence[str]) -> set[str]:
        """The (shift, threshold) keys already handled."""
        found: set[str] = set()
        ids = list(keys)
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            rows = await self.db.fetchall(
                f"SELECT key FROM oncall_reminded WHERE key IN ({', '.join('?' * len(chunk))})",
                chunk,
            )
            found.update(str(r[0]) for r in rows)
        return found

    async def remind(
        self, handled: Sequence[str], dms: Sequence[tuple[str, str, str, str]]
    ) -> None:
        """Record handled keys and the DMs they owe, (key, platform, user id, text), at once."""
        now = time.time()
        ops: list[Op] = [
            ("INSERT INTO oncall_reminded (key, at) VALUES (?, ?) ON CONFLICT DO NOTHING", (k, now))
            for k in handled
        ]
        ops += [
            (
                "INSERT INTO oncall_posts (key, platform, channel, text, decided, dm) "
                "VALUES (?, ?, ?, ?, ?, 1) ON CONFLICT (key) DO NOTHING",
                (f"{key}:{platform}:{user}", platform, user, text, now),
            )
            for key, platform, user, text in dms
        ]
        if ops:
            await self.db.write_many(ops)

    async def sent(self, key: str, message_id: str) -> None:
        await self.db.write(
            "UPDATE oncall_posts SET sent = ?, message_id = ? WHERE key = ?",
            (time.time(), message_id, key),
        )


class SqliteKeptState:
    """What was last written to each topic and user group kept true (oncall_kept)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def written(self) -> dict[str, str]:
        rows = await self.db.fetchall("SELECT target, written FROM oncall_kept")
        return {str(r[0]): str(r[1]) for r in rows}

    async def record(self, target: str, value: str) -> None:
        await self.db.write(
            "INSERT INTO oncall_kept (target, written, at) VALUES (?, ?, ?) "
            "ON CONFLICT (target) DO UPDATE SET written = excluded.written, at = excluded.at",
            (target, value, time.time()),
        )
