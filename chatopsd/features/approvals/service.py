"""Approval and confirmation requests: post them, count votes, expire them, run what was granted.

Everything lives in SQLite (store/approvals.py), so a restart loses nothing: `!approve <id>`
and reactions on the old message keep working, the "approvals-expire" job finds what expired
while we were down, and a granted request that was not yet handed to the bus is handed over on
the next sweep. The granted command is re-dispatched through the bus as the REQUESTER, with
event id "approval:<id>": the bus dedupes on it (so it runs at most once, even across
restarts), authorizes the requester again and audits it like any command.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import timedelta

from chatopsd.core.commands import Arg, CommandSpec
from chatopsd.core.context import Call
from chatopsd.core.errors import Forbidden, NotFound
from chatopsd.core.messages import Actor, Button, Destination, Inbound, Reply, Sent
from chatopsd.core.middleware import AccessPolicy
from chatopsd.core.outcome import Outcome
from chatopsd.core.ports import ApprovalStore, AuditEntry, AuditLog, Clock, ReplySink
from chatopsd.core.times import UTC_TIMES, Times
from chatopsd.features.approvals.rules import (
    Action,
    ActionKind,
    Person,
    State,
    Vote,
    new_id,
    refusal,
    vote_for_emoji,
)
from chatopsd.identity.service import IdentityService

log = logging.getLogger("chatopsd.approvals")

Submit = Callable[[Inbound], "asyncio.Task[object] | None"]
GRANT_PREFIX = "approval:"


class ApprovalService:
    def __init__(
        self,
        store: ApprovalStore,
        audit: AuditLog,
        clock: Clock,
        policy: Callable[[], AccessPolicy],
        outbox: ReplySink,
        identities: IdentityService,
        *,
        expire_seconds: float = 900.0,
        prefix: str = "!",
        times: Times = UTC_TIMES,
    ) -> None:
        self.times = times
        self.store, self.audit, self.clock = store, audit, clock
        # read at every vote, never copied: a reload that revokes an approver applies at once
        self.policy, self.outbox = policy, outbox
        self.identities = identities  # who is who, asked again at every decision
        self.expire_seconds, self.prefix = expire_seconds, prefix
        self.submit: Submit | None = None  # the bus's submit; set by app.py once the bus exists
        self._lock = asyncio.Lock()  # one decision at a time: two approvers must not race
        # event ids of granted commands this process handed to the bus (see is_grant)
        self._granted: set[str] = set()
        self._watchers: set[asyncio.Task[None]] = set()  # strong references (see _settle)

    # -- requests --------------------------------------------------------------------------

    async def request(
        self,
        call: Call,
        *,
        kind: ActionKind,
        command: str,
        summary: str,
        needed: int = 1,
        role: str | None = None,
    ) -> Action:
        """Store a request and post it; the command runs once it is granted."""
        e = call.event
        now = self.clock.now()
        action = Action(
            id=new_id(),
            kind=kind,
            command=command,
            summary=summary,
            platform=e.platform,
            channel=e.channel,
            thread=e.thread,
            requester=await self._person(e),
            requester_name=e.actor.display,
            role=role,
            needed=needed if kind == "approval" else 1,
            state="pending",
            created_at=now,
            expires_at=now + timedelta(seconds=self.expire_seconds),
        )
        await self.store.create(action)  # before posting: a fast reaction must find it
        sent = await self.outbox.send(_where(action), self._request_reply(action))
        if sent is not None:
            await self.store.set_message(action.id, sent.message_id)
        await self._audit(
            action, e.actor, "request", Outcome.PENDING, f"requested {kind} {action.id}", e.event_id
        )
        return action

    def _request_reply(self, a: Action) -> Reply:
        p = self.prefix
        minutes = max(1, round(self.expire_seconds / 60))
        if a.kind == "confirm":
            return Reply(
                title=f"Confirm: {p}{a.command}",
                text=(
                    f"{a.requester_name}, {a.summary}. Click Confirm or react ✅ to run it, "
                    f"❌ to cancel (or {p}approve {a.id} / {p}reject {a.id}). "
                    f"Expires in {minutes} min."
                ),
                buttons=(
                    Button("Confirm", f"approve {a.id}", "primary"),
                    Button("Cancel", f"reject {a.id}", "danger"),
                ),
                thread=a.thread,
            )
        plural = "approval" if a.needed == 1 else "approvals"
        return Reply(
            title=f"Approval needed: {p}{a.command}",
            text=(
                f"{a.requester_name} asks to run this ({a.summary}). It needs {a.needed} "
                f"{plural} from someone with the role {a.role!r} other than the requester. "
                f"React ✅ to approve or ❌ to reject, or {p}approve {a.id} / {p}reject {a.id}. "
                f"Expires in {minutes} min."
            ),
            fields=(("request", a.id),),
            buttons=(
                Button("Approve", f"approve {a.id}", "primary"),
                Button("Reject", f"reject {a.id}", "danger"),
            ),
            thread=a.thread,
        )

    async def grant_for(self, call: Call, command: str) -> Action | None:
        """The granted request this call carries out, if it is one (see module doc)."""
        event_id = call.event.event_id
        if not event_id.startswith(GRANT_PREFIX):
            return None
        action = await self.store.get(event_id[len(GRANT_PREFIX) :])
        e = call.event
        if (
            action is None
            or action.state != "approved"
            or action.command != command
            or (e.platform, e.actor.id) != (action.requester.platform, action.requester.id)
        ):
            return None
        return action

    async def record_result(self, action: Action, result: str) -> None:
        await self.store.set_result(action.id, result)

    # -- votes -----------------------------------------------------------------------------

    async def reaction_command(self, event: Inbound) -> str | None:
        """✅/❌ on a request message stands for `approve <id>` / `reject <id>`: the bus runs
        that through the same middleware as the typed command."""
        vote = vote_for_emoji(event.text)
        if vote is None or not event.message_id:
            return None
        action = await self.store.by_message(event.platform, event.message_id)
        if action is None:
            return None
        return f"{vote} {action.id}"

    async def vote(self, action_id: str, event: Inbound, vote: Vote) -> str | None:
        """Count a vote; returns why it was refused, or None when it counted."""
        async with self._lock:
            action = await self.store.get(action_id)
            if action is None:
                return f"no request {action_id}"
            now = self.clock.now()
            # Who votes, and who asked, as the identity service knows them NOW: an address
            # unknown when the request was made (a failed lookup, a link confirmed since)
            # still makes the requester's other accounts the requester.
            voter_id = await self.identities.of(event.platform, event.actor)
            voter = Person(event.platform, event.actor.id, voter_id.email)
            asked = action.requester
            requester_id = await self.identities.of_chat(asked.platform, asked.id)
            holds = action.role is not None and self.policy().holds(voter_id, action.role)
            why = refusal(
                action,
                voter,
                vote,
                holds,
                now,
                requester_now=Person(asked.platform, asked.id, requester_id.email),
                sure=voter_id.complete and requester_id.complete,
            )
            if why is not None:
                if now >= action.expires_at and action.state == "pending":
                    await self._expire(action)
                await self._audit(
                    action, event.actor, vote, Outcome.DENIED, f"refused: {why}", event.event_id
                )
                return why
            # one vote per PERSON: two chat identities of one human are one approver
            ballot = Person("person", voter.email, voter.email) if voter.email else voter
            await self.store.vote(action.id, ballot, event.actor.display, vote, now)
            if vote == "reject":
                await self._decide(action, "rejected", event.actor, event.event_id)
                return None
            counted = await self.store.get(action.id)
            count = len(counted.approvers) if counted else 0  # one vote per person, by id
            if count < action.needed:
                await self._audit(
                    action,
                    event.actor,
                    vote,
                    Outcome.PENDING,
                    f"approved {count} of {action.needed}",
                    event.event_id,
                )
                await self._edit(action, f"{count} of {action.needed} approvals so far")
                return None
            await self._decide(action, "approved", event.actor, event.event_id)
            return None

    async def _decide(self, action: Action, state: State, actor: Actor, event_id: str) -> None:
        now = self.clock.now()
        if not await self.store.decide(action.id, state, actor.display, now):
            # Decided already: by a vote counted at the same moment on another instance
            # (each saw the other's vote), or by expiry. That one announces and dispatches.
            return
        verb: str = state
        if action.kind == "confirm" and state == "approved":
            verb = "confirmed"
        if action.kind == "confirm" and state == "rejected":
            verb = "cancelled"
        await self._audit(action, actor, "decide", Outcome.OK, f"{verb} {action.id}", event_id)
        await self._edit(action, f"{verb} by {actor.display}")
        if state != "approved":
            self.outbox.enqueue(
                _where(action),
                Reply(
                    text=f"Request {action.id} ({self.prefix}{action.command}) was {verb} by "
                    f"{actor.display}.",
                    thread=action.thread,
                ),
            )
            return
        fresh = await self.store.get(action.id)
        if fresh is not None:
            await self._dispatch(fresh)

    def is_grant(self, event: Inbound) -> bool:
        """Whether this event is a granted command we dispatched (not something a connector
        can fake: only ids we handed to the bus count). The rate limiter lets it through: it
        is not the requester acting now, and an approved command must never be lost."""
        return event.event_id in self._granted

    async def _dispatch(self, action: Action) -> None:
        if self.submit is None:
            return
        event_id = f"{GRANT_PREFIX}{action.id}"
        self._granted.add(event_id)
        task = self.submit(
            Inbound(
                platform=action.platform,
                channel=action.channel,
                # No email: who the requester is gets resolved again when the command runs.
                actor=Actor(action.requester.id, action.requester_name),
                text=action.command,
                kind="slash",
                event_id=event_id,
                thread=action.thread,
                message_id=action.message_id,
            )
        )
        if task is None:
            self._granted.discard(event_id)
            return
        task.add_done_callback(lambda _t: self._granted.discard(event_id))
        await self.store.mark_dispatched(action.id)
        watcher = asyncio.get_running_loop().create_task(
            self._settle(action.id, task), name=f"approval-result:{action.id}"
        )
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)

    async def _settle(self, action_id: str, task: asyncio.Task[object]) -> None:
        """A granted command that ended without running (refused when it came to run: the
        requester lost the role, the channel became restricted) must not look pending or
        done: its request records that it did not run. (A run records its exit itself.)"""
        await asyncio.wait([task])
        if task.cancelled():
            return  # shutting down mid-command: nothing certain to record
        try:
            if await self.store.result(action_id) is None:
                await self.store.set_result(
                    action_id, f"not run: see the audit row of event {GRANT_PREFIX}{action_id}"
                )
        except Exception:
            log.warning("could not record the result of request %s", action_id, exc_info=True)

    async def _person(self, event: Inbound) -> Person:
        """The human behind the event: the identity service's usable address, if any."""
        who = await self.identities.of(event.platform, event.actor)
        return Person(event.platform, event.actor.id, who.email)

    # -- expiry (the "approvals-expire" job) -------------------------------------------------

    async def sweep(self) -> None:
        """Expire what is due, and hand over granted requests a restart interrupted."""
        async with self._lock:
            for action in await self.store.pending_due(self.clock.now()):
                await self._expire(action)
            for action in await self.store.undispatched():
                log.info("resuming granted request %s", action.id)
                await self._dispatch(action)

    async def _expire(self, action: Action) -> None:
        await self.store.decide(action.id, "expired", "(expiry)", self.clock.now())
        got = len(action.approvers)
        minutes = max(1, round((action.expires_at - action.created_at).total_seconds() / 60))
        await self._audit(
            action,
            Actor("chatopsd", "chatopsd"),
            "expire",
            Outcome.FAILED,  # the request did not get what it asked for
            f"expired {action.id} with {got} of {action.needed}",
            "",
        )
        await self._edit(action, "expired")
        self.outbox.enqueue(
            _where(action),
            Reply(
                text=(
                    f"Request {action.id} ({self.prefix}{action.command}) expired after "
                    f"{minutes} min with {got} of {action.needed} "
                    f"{'confirmation' if action.kind == 'confirm' else 'approvals'}; "
                    "nothing was run. Ask again if it is still needed."
                ),
                thread=action.thread,
            ),
        )

    async def _edit(self, action: Action, status: str) -> None:
        if not action.message_id:
            return
        reply = Reply(
            title=f"{self.prefix}{action.command}",
            text=f"Request {action.id}: {status}.",
            thread=action.thread,
        )
        try:
            await self.outbox.edit(Sent(_where(action), action.message_id), reply)
        except Exception:
            log.warning("could not edit request message %s", action.id, exc_info=True)

    async def _audit(
        self, action: Action, actor: Actor, kind: str, outcome: Outcome, cause: str, event_id: str
    ) -> None:
        await self.audit.append(
            AuditEntry(
                at=self.clock.now(),
                platform=action.platform,
                channel=action.channel,
                thread=action.thread,
                actor=actor.id,
                actor_name=actor.display,
                kind=kind,
                text=action.command,
                command=f"approval {action.id}",
                outcome=outcome,
                duration_ms=0.0,
                event_id=event_id,
                ref=action.id,
                cause=cause,
            )
        )

    # -- commands --------------------------------------------------------------------------

    def commands(self) -> list[CommandSpec]:
        rid = Arg("id", "the request id shown on the request")
        return [
            CommandSpec(
                ("approve",),
                "approve (or confirm) a pending request",
                self.approve,
                (rid,),
                examples=("approve k7m2q",),
            ),
            CommandSpec(
                ("reject",),
                "reject (or cancel) a pending request",
                self.reject,
                (rid,),
                examples=("reject k7m2q",),
            ),
            CommandSpec(("approvals",), "pending approval requests", self.list_pending),
        ]

    async def approve(self, call: Call) -> Reply:
        return await self._vote_command(call, "approve")

    async def reject(self, call: Call) -> Reply:
        return await self._vote_command(call, "reject")

    async def _vote_command(self, call: Call, vote: Vote) -> Reply:
        action_id = (call.text("id") or "").lower()
        if await self.store.get(action_id) is None:
            raise NotFound(f"no request {action_id}", hint=f"see {self.prefix}approvals")
        why = await self.vote(action_id, call.event, vote)
        if why is not None:
            raise Forbidden(why)
        return Reply(text=f"Noted: {vote} {action_id}.", ephemeral=True)

    async def list_pending(self, call: Call) -> Reply:
        pending = await self.store.pending()
        if not pending:
            return Reply(text="No pending requests.")
        return Reply(
            title="Pending requests",
            fields=tuple(
                (
                    a.id,
                    f"{self.prefix}{a.command} by {a.requester_name}, "
                    f"{len(a.approvers)} of {a.needed}, expires {self.times.hm(a.expires_at)}",
                )
                for a in pending
            ),
        )


def _where(action: Action) -> Destination:
    return Destination(action.platform, action.channel, action.thread)
