"""The bus middleware, in the order the bus runs it: dedupe → audit → rate limit → authorize.

Why this order:
- dedupe first: a redelivered event is nobody's doing; it costs no token and no audit row.
- audit next, around everything else: every attempt leaves one row with its real outcome
  (ran, refused, rate limited), whatever the inbound kind (message, slash, button, reaction).
- rate limit before authorize: refusals cost a token too, so 10,000 denied `!ic page` get at
  most `burst` refusals and one "easy there" back, not 10,000 replies.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from chatopsd.core.bus import Next
from chatopsd.core.context import Call
from chatopsd.core.errors import Forbidden, RateLimited, UserError
from chatopsd.core.messages import Actor, Inbound, Reply, inbound_to_json
from chatopsd.core.outcome import Outcome, outcome_of, short_cause
from chatopsd.core.ports import AuditEntry, AuditLog, ClaimUnavailable, Clock, EventLedger

log = logging.getLogger("chatopsd.bus")


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
        call.settle_claim(True)  # recorded (by us or before): the platform may forget it
        if not won:
            log.info(
                "dropped redelivered event platform=%s event=%s", event.platform, event.event_id
            )
            return []
        if self.durable:
            call.claim = _Claim(self.ledger, event.platform, event.event_id)
        return await nxt(call)


class _Claim:
    """core/ports.AnswerClaim over the event ledger."""

    __slots__ = ("event_id", "ledger", "platform")

    def __init__(self, ledger: EventLedger, platform: str, event_id: str) -> None:
        self.ledger, self.platform, self.event_id = ledger, platform, event_id

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
    """

    roles: Mapping[str, frozenset[str]] = field(default_factory=dict)
    command_roles: Mapping[str, str] = field(default_factory=dict)
    paging_channels: frozenset[str] = frozenset()
    mutating_channels: frozenset[str] = frozenset()
    # "platform:user_id" → email: links a person's chat identities (a Discord user has no
    # email we can see), so roles, self-approval and vote counting treat them as one person
    identities: Mapping[str, str] = field(default_factory=dict)

    def email_of(self, platform: str, actor: Actor) -> str | None:
        """The person behind a chat identity: the linked email first, then the platform's."""
        linked = self.identities.get(f"{platform}:{actor.id}")
        email = linked or actor.email
        return email.lower() if email else None

    def holds(self, call: Call, role: str) -> bool:
        actor = call.event.actor
        ids = {f"{call.event.platform}:{actor.id}", "*"}
        email = self.email_of(call.event.platform, actor)
        if email:
            ids.add(email)
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

    def check(self, call: Call, *, channel_allowed: bool = False) -> None:
        """Raise Forbidden if the actor may not run this here. `channel_allowed` lifts the
        channel lists (the channel is one the daemon made for an incident)."""
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
        role = self.command_roles.get(spec.name, spec.role)
        if role and not self.holds(call, role):
            raise Forbidden(
                f"{call.prefix}{spec.name} needs the role {role!r}",
                hint="ask an admin to add you under [roles] in the config",
            )
        for arg in spec.args:
            # an option with a role of its own ("incident update --public"), when given
            if arg.option and arg.role is not None and call.args.get(arg.name) is not None:
                given = f"{spec.name} --{arg.name}"
                role = self.command_roles.get(given, arg.role)
                if role and not self.holds(call, role):
                    raise Forbidden(
                        f"{call.prefix}{given} needs the role {role!r}",
                        hint="ask an admin to add you under [roles] in the config",
                    )


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
        cause=short_cause(cause),
    )


class Authorize:
    """Refuse commands the actor may not run here (the Audit middleware around it records it).

    `incident_channel(platform, channel)` says whether a channel is one the daemon created for
    an incident that is still open: incident and paging commands are allowed there even when
    the channel lists in config do not name it (they cannot: it did not exist when the config
    was written). Nothing else is (an ops command stays where the lists say), and once the
    incident is closed the lists apply to everything again.
    """

    def __init__(
        self,
        policy: AccessPolicy,
        incident_channel: Callable[[str, str], Awaitable[bool]] | None = None,
    ) -> None:
        self.policy = policy
        self.incident_channel = incident_channel

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
        self.policy.check(call, channel_allowed=allowed)
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
            outcome, cause = Outcome.ERROR, f"{type(exc).__name__} ref={call.ref}"
            raise
        finally:
            elapsed = (self.clock.monotonic() - start) * 1000
            await self.audit.append(audit_entry(call, self.clock, outcome, elapsed, cause))


class RateLimit:
    """A token bucket per actor: `burst` commands at once, refilled at `per_minute`.

    The first refusal gets a polite reply; further ones in the same dry spell are refused
    quietly (audited, no reply) so a flood cannot make the bot flood the channel back.
    `exempt(event)` names events that are not the actor's own doing now: an approved
    command re-dispatched as its requester must run even if the requester is out of tokens.
    """

    def __init__(
        self,
        clock: Clock,
        per_minute: float = 30,
        burst: int = 10,
        exempt: Callable[[Inbound], bool] | None = None,
    ) -> None:
        self.clock, self.rate, self.burst = clock, per_minute / 60.0, burst
        self.exempt = exempt
        self._buckets: dict[tuple[str, str], tuple[float, float, bool]] = {}

    async def __call__(self, call: Call, nxt: Next) -> list[Reply]:
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
