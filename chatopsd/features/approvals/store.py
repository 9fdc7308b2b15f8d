"""Approval requests and votes (SQLite or PostgreSQL, see store/db.py)."""

from __future__ import annotations

from datetime import UTC, datetime

from chatopsd.features.approvals.rules import Action, Person, State
from chatopsd.store.db import Database, Row, placeholders

_COLS = (
    "id, kind, command, summary, platform, channel, thread, requester, requester_name, "
    "requester_email, role, needed, state, created_at, expires_at, message_id"
)


def _ts(at: datetime) -> float:
    return at.timestamp()


class SqlApprovals:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(self, a: Action) -> None:
        await self.db.write(
            f"INSERT INTO approvals ({_COLS}) VALUES ({placeholders(16)})",
            (
                a.id,
                a.kind,
                a.command,
                a.summary,
                a.platform,
                a.channel,
                a.thread,
                a.requester.id,
                a.requester_name,
                a.requester.email,
                a.role,
                int(a.needed),
                a.state,
                _ts(a.created_at),
                _ts(a.expires_at),
                a.message_id,
            ),
        )

    async def set_message(self, action_id: str, message_id: str) -> None:
        await self.db.write(
            "UPDATE approvals SET message_id = $1 WHERE id = $2", (message_id, action_id)
        )

    async def get(self, action_id: str) -> Action | None:
        row = await self.db.fetchone(
            f"SELECT {_COLS} FROM approvals WHERE id = $1", (action_id.lower(),)
        )
        return None if row is None else await self._action(row)

    async def by_message(self, platform: str, message_id: str) -> Action | None:
        row = await self.db.fetchone(
            f"SELECT {_COLS} FROM approvals WHERE platform = $1 AND message_id = $2",
            (platform, message_id),
        )
        return None if row is None else await self._action(row)

    async def pending_due(self, now: datetime) -> list[Action]:
        rows = await self.db.fetchall(
            f"SELECT {_COLS} FROM approvals WHERE state = 'pending' AND expires_at <= $1",
            (_ts(now),),
        )
        return [await self._action(r) for r in rows]

    async def pending(self) -> list[Action]:
        rows = await self.db.fetchall(
            f"SELECT {_COLS} FROM approvals WHERE state = 'pending' ORDER BY created_at"
        )
        return [await self._action(r) for r in rows]

    async def undispatched(self) -> list[Action]:
        rows = await self.db.fetchall(
            f"SELECT {_COLS} FROM approvals WHERE state = 'approved' AND dispatched = 0"
        )
        return [await self._action(r) for r in rows]

    async def vote(self, action_id: str, voter: Person, name: str, vote: str, at: datetime) -> None:
        await self.db.write(
            "INSERT INTO approval_votes (approval_id, platform, actor, actor_name, vote, at) "
            "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (approval_id, platform, actor) DO UPDATE "
            "SET actor_name = excluded.actor_name, vote = excluded.vote, at = excluded.at",
            (action_id, voter.platform, voter.id, name, vote, _ts(at)),
        )

    async def decide(self, action_id: str, state: State, by: str, at: datetime) -> bool:
        return (
            await self.db.execute(
                "UPDATE approvals SET state = $1, decided_by = $2, decided_at = $3 "
                "WHERE id = $4 AND state = 'pending'",
                (state, by, _ts(at), action_id),
            )
            == 1
        )

    async def mark_dispatched(self, action_id: str) -> bool:
        return (
            await self.db.execute(
                "UPDATE approvals SET dispatched = 1 WHERE id = $1 AND dispatched = 0", (action_id,)
            )
            == 1
        )

    async def set_result(self, action_id: str, result: str) -> None:
        await self.db.write("UPDATE approvals SET result = $1 WHERE id = $2", (result, action_id))

    async def result(self, action_id: str) -> str | None:
        row = await self.db.fetchone("SELECT result FROM approvals WHERE id = $1", (action_id,))
        return None if row is None else row[0]

    async def _action(self, r: Row) -> Action:
        votes = await self.db.fetchall(
            "SELECT actor_name FROM approval_votes WHERE approval_id = $1 AND vote = 'approve' "
            "ORDER BY at",
            (r["id"],),
        )
        return Action(
            id=r["id"],
            kind=r["kind"],
            command=r["command"],
            summary=r["summary"],
            platform=r["platform"],
            channel=r["channel"],
            thread=r["thread"],
            requester=Person(r["platform"], r["requester"], r["requester_email"]),
            requester_name=r["requester_name"],
            role=r["role"],
            needed=r["needed"],
            state=r["state"],
            created_at=datetime.fromtimestamp(r["created_at"], UTC),
            expires_at=datetime.fromtimestamp(r["expires_at"], UTC),
            message_id=r["message_id"],
            approvers=tuple(v[0] for v in votes),
        )
