"""The bus middleware, in the order the bus runs it: dedupe → audit → rate limit → authorize
→ started (the last step before the handler, for commands with outside effects only).

Why this order:
- dedupe first: a redelivered event is nobody's doing; it costs no token and no audit row.
- audit next, around everything else: every attempt leaves one row with its real outcome
  (ran, refused, rate limited), whatever the inbound kind (message, slash, button, reaction).
- rate limit before authorize: refusals cost a token too, so 10,000 denied `!ic page` get at
  most `burst` refusals and one "easy there" back, not 10,000 replies.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from chatopsd.core.bus import Next
from chatopsd.core.context import Call
from chatopsd.core.errors import Forbidden, RateLimited, Unavailable, UserError
from chatopsd.core.identity import Identity, chat_id, unknown_reason
from chatopsd.core.messages import Inbound, Reply, inbound_to_json
from chatopsd.core.outcome import Outcome, audit_cause, outcome_of
from chatopsd.core.ports import AuditEntry, AuditLog, ClaimUnavailable, Clock, EventLedger

log = logging.getLogger("chatopsd.bus")

# The longest a claimed command waits for its platform acknowledgement to be sent.
_ACK_WAIT_S = 1.0


class Dedupe:
    """Drop an event whose (platform, event_id) was claimed before, in this run or an earlier.

    With `durable` (several instances on one database) the claim keeps the command until it
    was answered, and the bus reports the answer (`call.claim`): an instance that dies in
    between leaves it for a survivor to take over instead of losing it."""

    def __init__(self, ledger: EventLedger, *, durable: bool = False) -> None:
        self.ledger = ledger
        self.durable = durable

    async def __call__(self, call: Call, nxt: Next) -> list[Reply]:
        event = call.event
        if not event.event_id:
            return await nxt(call)
        payload = inbound_to_json(event) if self.durable else None
        try:
            won = await self.ledger.claim(event.platform, event.event_id, payload)
        except ClaimUnavailable:
            # Not ours (logged by the ledger). Answering "internal error" would be a second,
            # wrong answer where another instance claims it.
            call.settle_claim(False)
            return []
        # recorded (by us or before): the platform may forget it
        acked = call.settle_claim(True)
        if acked is not None:
            # The command goes on once the connector lets it (Slack: once its ack, and those
            # of the rest of the burst, are sent): the acks of claims committed together then
            # leave together, instead of each waiting behind the work of every command
            # before it. Bounded: a stuck socket or an endless burst must not hold it.
            await asyncio.wait([acked], timeout=_ACK_WAIT_S)
        if not won:
            log.info(
                "dropped redelivered event platform=%s event=%s", event.platform, event.event_id
            )
            return []
        if self.durable:
            call.claim = _Claim(self.ledger, event.platform, event.event_id, keyed=True)
        return await nxt(call)


class Started:
    """Before a command with outside effects runs (CommandSpec.effects: an ops run, a
    channel created, a publish, a ticket), record durably that it started, with the command
    itself, until the bus reports it answered. An instance that dies in between leaves it
    started: whoever finds it (a survivor, or the next start on SQLite) tells its channel
    that it may or may not have finished and audits it as `interrupted`; it never runs it
    again (chatopsd/ha/takeover.py). Last in the chain: a refused command never starts. Every
    other command passes through untouched (one attribute read)."""

    def __init__(self, ledger: EventLedger) -> None:
        self.ledger = ledger

    async def __call__(self, call: Call, nxt: Next) -> list[Reply]:
        spec = call.spec
        if spec is None or not spec.effects or call.error is not None:
            return await nxt(call)
        event = call.event
        event_id = event.event_id or f"ref:{call.ref}"  # (an event without an id: its own)
        try:
            ours = await self.ledger.started(event.platform, event_id, inbound_to_json(event))
        except Exception as exc:
            log.error("cannot record %s as started (database: %s)", call.command, exc)
            raise Unavailable(
                f"{call.prefix}{call.command} did not run: the database could not record that "
                "it started (it records that first, so that a crash can never run it twice)",
                hint="try again in a minute",
            ) from exc
        if not ours:
            raise Unavailable(
                f"{call.prefix}{call.command} did not run here: another instance took it over"
            )
        if call.claim is None:
            call.claim = _Claim(self.ledger, event.platform, event_id, keyed=False)
        return await nxt(call)


class _Claim:
    """core/ports.AnswerClaim over the event ledger."""

    __slots__ = ("event_id", "keyed", "ledger", "platform")

    def __init__(self, ledger: EventLedger, platform: str, event_id: str, *, keyed: bool) -> None:
        self.ledger, self.platform, self.event_id = ledger, platform, event_id
        self.keyed = keyed

    def answerable(self) -> bool:
        return self.ledger.answerable()

    async def answered(self) -> None:
        await self.ledger.answered(self.platform, self.event_id)

    async def take_answer(self) -> bool:
        return await self.ledger.take_answer(self.platform, self.event_id)


@dataclass(frozen=True)
class AccessPolicy:
    """Who may run what, where. Built from config; pure.

    `roles` maps a role to identities: "platform:user_id", an email address, or "*".
    Members of "admin" hold every role. `command_roles` overrides a spec's role by command
    name ("ic page" = "oncall"), and an option's by "<command> --<option>". Paging/mutating
    commands are limited to the listed "platform:channel" entries when a list is non-empty.
    Who someone is (their email, and whether it can be trusted) is the identity service's
    answer (core/identity.py): a role given to an email applies only to an identity whose
    email is at a usable level.
    """

    roles: Mapping[str, frozenset[str]] = field(default_factory=dict)
    command_roles: Mapping[str, str] = field(default_factory=dict)
    paging_channels: frozenset[str] = frozenset()
    mutating_channels: frozenset[str] = frozenset()

    def holds(self, who: Identity, role: str) -> bool:
        ids = {who.chat, "*"}
        if who.email:
            ids.add(who.email)
        return any(ids & self.roles.get(r, frozenset()) for r in (role, "admin"))

    def restricted_here(self, call: Call) -> bool:
        """True when the channel lists would refuse this command in this channel."""
        spec = call.spec
        if spec is None:
            return False
        where = f"{call.event.platform}:{call.event.channel}"
        return (
            spec.pages and bool(self.paging_channels) and where not in self.paging_channels
        ) or (spec.mutates and bool(self.mutating_channels) and where not in self.mutating_channels)

    def check_channel(self, call: Call, *, channel_allowed: bool = False) -> None:
        """Raise Forbidden if this command may not run in this channel. `channel_allowed`
        lifts the channel lists (the channel is one the daemon made for an incident)."""
        spec = call.spec
        if spec is None:
            return
        where = f"{call.event.platform}:{call.event.channel}"
        limited = not channel_allowed
        if limited and spec.pages and self.paging_channels and where not in self.paging_channels:
            raise Forbidden(
                f"{call.prefix}{spec.name} pages people and is not allowed here",
                hint="use one of the channels set in auth.paging_channels",
            )
        if (
            limited
            and spec.mutates
            and self.mutating_channels
            and where not in self.mutating_channels
        ):
            raise Forbidden(
                f"{call.prefix}{spec.name} is not allowed in this channel",
                hint="use one of the channels set in auth.mutating_channels",
            )

    def roles_needed(self, call: Call) -> list[tuple[str, str]]:
        """(what, role) pairs the actor must hold: the command's role, and the role of each
        option given that has one of its own ("incident update --public")."""
        spec = call.spec
        if spec is None:
            return []
        needed = []
        if role := self.command_roles.get(spec.name, spec.role):
            needed.append((spec.name, role))
        for arg in spec.args:
            if arg.option and arg.role is not None and call.args.get(arg.name) is not None:
                given = f"{spec.name} --{arg.name}"
                if role := self.command_roles.get(given, arg.role):
                    needed.append((given, role))
        return needed

    def check_roles(self, call: Call, who: Identity) -> None:
        """Raise Forbidden if `who` lacks a role the command needs, saying what to do."""
        for what, role in self.roles_needed(call):
            if self.holds(who, role):
                continue
            hint = "ask an admin to add you under [roles] in the config"
            unsure = who.claimed is not None or who.unverified or not who.complete
            if who.email is None and unsure:
                why, todo = unknown_reason(who, call.prefix)
                hint = f"{why}: {todo}"
            raise Forbidden(f"{call.prefix}{what} needs the role {role!r}", hint=hint)


def audit_entry(
    call: Call, clock: Clock, outcome: Outcome, duration_ms: float, cause: str = ""
) -> AuditEntry:
    e = call.event
    return AuditEntry(
        at=clock.now(),
        platform=e.platform,
        channel=e.channel,
        thread=e.thread,
        actor=e.actor.id,
        actor_name=e.actor.display,
        kind=e.kind,
        text=e.text[:2000],
        command=call.command,
        outcome=outcome,
        duration_ms=round(duration_ms, 3),
        event_id=e.event_id,
        ref=call.ref,
        cause=audit_cause(cause),
    )


class Authorize:
    """Refuse commands the actor may not run here (the Audit middleware around it records it).

    `incident_channel(platform, channel)` says whether a channel is one the daemon created for
    an incident that is still open: incident and paging commands are allowed there even when
    the channel lists in config do not name it (they cannot: it did not exist when the config
    was written). Nothing else is (an ops command stays where the lists say), and once the
    incident is closed the lists apply to everything again. `identify` is the identity
    service's `of_call`: asked only when the chat id alone does not hold a needed role
    (without it, only chat ids and "*" grant roles).
    """

    def __init__(
        self,
        policy: AccessPolicy,
        incident_channel: Callable[[str, str], Awaitable[bool]] | None = None,
        *,
        identify: Callable[[Call], Awaitable[Identity]] | None = None,
    ) -> None:
        self.policy = policy
        self.incident_channel = incident_channel
        self.identify = identify

    async def __call__(self, call: Call, nxt: Next) -> list[Reply]:
        allowed = False
        spec = call.spec
        incident_work = spec is not None and (spec.pages or spec.incident_work)
        if (
            self.incident_channel is not None
            and incident_work
            and self.policy.restricted_here(call)
        ):
            allowed = await self.incident_channel(call.event.platform, call.event.channel)
        self.policy.check_channel(call, channel_allowed=allowed)
        needed = self.policy.roles_needed(call)
        if needed:
            who = call.identity or Identity(chat_id(call.event.platform, call.event.actor.id))
            held = all(self.policy.holds(who, role) for _, role in needed)
            if not held and self.identify is not None:
                who = await self.identify(call)
            self.policy.check_roles(call, who)
        return await nxt(call)


class Audit:
    """Write one audit row per command, durable before the bus sends any reply."""

    def __init__(self, audit: AuditLog, clock: Clock) -> None:
        self.audit, self.clock = audit, clock

    async def __call__(self, call: Call, nxt: Next) -> list[Reply]:
        start = self.clock.monotonic()
        outcome, cause = Outcome.OK, ""
        try:
            replies = await nxt(call)
            # The handler says what happened (a failed page is `failed`, not `ok`).
            outcome, cause = call.outcome or Outcome.OK, call.cause
            return replies
        except UserError as exc:
            outcome, cause = outcome_of(exc), f"{type(exc).__name__}: {exc}"
            raise
        except BaseException as exc:
            outcome, cause = outcome_of(exc), f"{type(exc).__name__} ref={call.ref}"
            if outcome is Outcome.INTERRUPTED:
                cause = "cut short before it finished (shutdown): its effect is unknown"
            raise
        finally:
            elapsed = (self.clock.monotonic() - start) * 1000
            await self.audit.append(audit_entry(call, self.clock, outcome, elapsed, cause))


# The platforms whose input is the operator's own: never rate limited (RateLimit).
OPERATOR_PLATFORMS = frozenset({"console"})


class RateLimit:
    """A token bucket per actor: `burst` commands at once, refilled at `per_minute`.

    The first refusal gets a polite reply; further ones in the same dry spell are refused
    quietly (audited, no reply) so a flood cannot make the bot flood the channel back.
    `exempt(event)` names events that are not the actor's own doing now: an approved
    command re-dispatched as its requester must run even if the requester is out of tokens.
    `unlimited` names platforms whose every event comes from the operator: the local console
    (a terminal, a pipe, a jsonl script on the daemon's own stdin) is the person running the
    daemon, not a chat user, so a script of 15 commands gets 15 answers.
    """

    def __init__(
        self,
        clock: Clock,
        per_minute: float = 30,
        burst: int = 10,
        exempt: Callable[[Inbound], bool] | None = None,
        unlimited: frozenset[str] = OPERATOR_PLATFORMS,
    ) -> None:
        self.clock, self.rate, self.burst = clock, per_minute / 60.0, burst
        self.exempt = exempt
        self.unlimited = unlimited
        self._buckets: dict[tuple[str, str], tuple[float, float, bool]] = {}

    async def __call__(self, call: Call, nxt: Next) -> list[Reply]:
        if call.event.platform in self.unlimited:
            return await nxt(call)
        if self.exempt is not None and self.exempt(call.event):
            return await nxt(call)
        key = (call.event.platform, call.event.actor.id)
        now = self.clock.monotonic()
        tokens, last, warned = self._buckets.get(key, (float(self.burst), now, False))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now, True)
            wait = (1.0 - tokens) / self.rate
            raise RateLimited(
                f"Easy there, {call.event.actor.display}: you can send another command in "
                f"{wait:.0f} s.",
                retry_after=wait,
                quiet=warned,
            )
        self._buckets[key] = (tokens - 1.0, now, False)
        if len(self._buckets) > 10_000:
            self._forget_full(now)
        return await nxt(call)

    def _forget_full(self, now: float) -> None:
        # Buckets that have refilled completely carry no information; keep memory bounded.
        full = [
            k
            for k, (t, last, _) in self._buckets.items()
            if t + (now - last) * self.rate >= self.burst
        ]
        for k in full:
            del self._buckets[k]
