"""Handoff state and the posts it owes, in the database.

`decide()` writes the new state of each watch and the posts it causes in ONE transaction, each
post under an idempotency key: a crash after deciding finds the post owed at the next start and
sends it (not lost); the state already moved, so it is never decided twice (not duplicated).
The one window left is a crash between the platform accepting a post and `sent()` being
recorded: chat APIs take no idempotency key, so that post would be sent again.

Several instances (PostgreSQL): handoffs, reminders, topics and user groups are singleton
work (the lease holder's `pagerduty-refresh` job). Their writes take the leader's fencing
token and happen only while it is still the lease's, checked in the same transaction
(ha/fence.py: Superseded otherwise): `decide`, `remind`, `claim` (a post is claimed before it
is sent, ha/claims.py, so a leader paused past its lease that wakes up sends nothing) and the
kept-true `record`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from chatopsd.core.messages import Destination
from chatopsd.features.oncall.handoff_rules import Holders, OwedPost, Step, Watched
from chatopsd.ha import fence as fencing
from chatopsd.ha.claims import FREED, DeliveryClaims
from chatopsd.ha.fence import write_fenced
from chatopsd.store.db import Database, Op, placeholders


class SqlOnCallPosts:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._claims = DeliveryClaims(db, "oncall_posts", ("key",), owed="sent IS NULL")

    async def watched(self) -> dict[str, Watched]:
        rows = await self.db.fetchall("SELECT watch, announced, pending, seq FROM oncall_announced")
        return {
            str(r[0]): Watched(
                Holders.decode(r[1]), Holders.decode(r[2]) if r[2] else None, int(r[3])
            )
            for r in rows
        }

    async def decide(
        self,
        steps: Sequence[Step],
        destinations: Sequence[Destination],
        *,
        fence: int | None = None,
    ) -> None:
        """Each watch's new state and the announcements it owes, atomically, under the lease
        token `fence` (Superseded, nothing written, once it no longer holds)."""
        now = time.time()
        ops: list[Op] = []
        for s in steps:
            ops.append(
                (
                    "INSERT INTO oncall_announced (watch, announced, pending, seq, updated) "
                    "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (watch) DO UPDATE SET "
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
                        "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (key) DO NOTHING",
                        (
                            f"handoff:{s.watch}:{s.seq}:{d.platform}:{d.channel}",
                            d.platform,
                            d.channel,
                            s.text,
                            now,
                        ),
                    )
                )
        await write_fenced(self.db, ops, fence)

    async def owe(self, key: str, destination: Destination, text: str) -> None:
        """Record one post under its idempotency key; a key owed before is left as it is."""
        await self.db.write(
            "INSERT INTO oncall_posts (key, platform, channel, text, decided) "
            "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (key) DO NOTHING",
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
                f"SELECT key FROM oncall_reminded WHERE key IN ({placeholders(len(chunk))})",
                chunk,
            )
            found.update(str(r[0]) for r in rows)
        return found

    async def remind(
        self,
        handled: Sequence[str],
        dms: Sequence[tuple[str, str, str, str]],
        *,
        fence: int | None = None,
    ) -> None:
        """Record handled keys and the DMs they owe, (key, platform, user id, text), at once,
        under the lease token `fence` (Superseded, nothing written)."""
        now = time.time()
        ops: list[Op] = [
            (
                "INSERT INTO oncall_reminded (key, at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                (k, now),
            )
            for k in handled
        ]
        ops += [
            (
                "INSERT INTO oncall_posts (key, platform, channel, text, decided, dm) "
                "VALUES ($1, $2, $3, $4, $5, 1) ON CONFLICT (key) DO NOTHING",
                (f"{key}:{platform}:{user}", platform, user, text, now),
            )
            for key, platform, user, text in dms
        ]
        await write_fenced(self.db, ops, fence)

    async def claim(
        self, post: OwedPost, *, fence: int | None = None, now: float | None = None
    ) -> str | None:
        """Take the sending of one owed post before it goes out, under the lease token
        `fence` (Superseded once it no longer holds: send nothing). The claim's id (pass it to
        `sent` or `release`), or None: the post was sent meanwhile, or another instance is
        sending it right now."""
        return await self._claims.claim((post.key,), fence=fence, now=now)

    async def release(self, key: str, claim: str) -> None:
        """Give a claimed post back (it could not be sent): only our own claim."""
        await self._claims.release((key,), claim)

    async def sent(self, key: str, message_id: str) -> None:
        """The post went out as `message_id`. Written whoever sent it: it is what chat shows,
        and forgetting a sent post would send it again."""
        await self.db.write(
            f"UPDATE oncall_posts SET sent = $1, message_id = $2, {FREED} WHERE key = $3",
            (time.time(), message_id, key),
        )


class SqlKeptState:
    """What was last written to each topic and user group kept true (oncall_kept)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def written(self) -> dict[str, str]:
        rows = await self.db.fetchall("SELECT target, written FROM oncall_kept")
        return {str(r[0]): str(r[1]) for r in rows}

    async def holds(self, fence: int | None) -> bool:
        """Whether this instance may write topics and user groups now (checked before each
        write, so a leader paused past its lease writes nothing stale)."""
        return await fencing.holds(self.db, fence)

    async def record(self, target: str, value: str, *, fence: int | None = None) -> None:
        """What was written, under the lease token `fence` (Superseded, nothing recorded)."""
        await write_fenced(
            self.db,
            [
                (
                    "INSERT INTO oncall_kept (target, written, at) VALUES ($1, $2, $3) "
                    "ON CONFLICT (target) DO UPDATE SET written = excluded.written, "
                    "at = excluded.at",
                    (target, value, time.time()),
                )
            ],
            fence,
        )

    async def forget(self, target: str) -> None:
        """A write went out but could not be recorded (the lease moved meanwhile): forget
        what was recorded, so whoever leads writes the target again at its next refresh
        rather than trust a value this write may have overwritten."""
        await self.db.write("DELETE FROM oncall_kept WHERE target = $1", (target,))
