"""`Call`: one command being handled, as handlers and middleware see it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from chatopsd.core.commands import CommandSpec
from chatopsd.core.errors import UsageError
from chatopsd.core.identity import Identity
from chatopsd.core.messages import Destination, Inbound, Reply, Sent
from chatopsd.core.outcome import Outcome, audit_cause
from chatopsd.core.ports import AnswerClaim, ReplySink

log = logging.getLogger("chatopsd.bus")

# Told, at the moment a claim is settled, whether it was recorded (Bus.admit_soon). It may
# return a future the command waits for before it goes on (the platform's ack being sent).
OnClaimed = Callable[[bool], "asyncio.Future[None] | None"]


@dataclass(slots=True)
class Call:
    """The event, the matched spec (None when the words matched nothing) and its arguments.

    `ref` is a short id for this command, quoted in internal-error replies and logs.
    `error` holds a parse error, raised only after dedupe/authorize/audit/rate-limit ran, so
    bad commands are audited and rate-limited like good ones.
    """

    event: Inbound
    spec: CommandSpec | None
    args: Mapping[str, str | int | None]
    prefix: str
    ref: str
    outbox: ReplySink
    error: UsageError | None = None
    words: tuple[str, ...] = field(default=())
    # What the handler says happened (None: middleware decides from how it returned), and a
    # short cause for the audit row.
    outcome: Outcome | None = None
    cause: str = ""
    # A message posted early ("Paging…") that the bus edits into the handler's first reply.
    replaces: Sent | None = None
    # Set by Dedupe when the claim is shared by several instances (see core/ports.AnswerClaim).
    claim: AnswerClaim | None = None
    # Resolved once the event's claim is recorded (True) or could not be (False): a
    # connector that acknowledges events (Slack) waits on it (Bus.admit).
    claimed: asyncio.Future[bool] | None = None
    # Called synchronously when `claimed` is settled: a connector that acknowledges a burst
    # of events sends the acks of one commit's claims before those commands go on.
    on_claimed: OnClaimed | None = None
    # Who the actor is (core/identity), resolved on first need by the identity service.
    identity: Identity | None = None
    # Commands this one handed to the bus to run as themselves (a plain-language request
    # re-dispatched as the command it reads as): their answers count as this event's.
    handed_over: list[asyncio.Task[object]] = field(default_factory=list)

    @property
    def command(self) -> str:
        if self.spec is not None:
            return self.spec.name
        return self.words[0] if self.words else ""

    @property
    def destination(self) -> Destination:
        return Destination.for_inbound(self.event)

    @property
    def key(self) -> str:
        """A stable key for this command, for idempotent side effects (PagerDuty dedup keys)."""
        return f"chatopsd/{self.event.platform}/{self.event.event_id or self.ref}"

    def text(self, name: str) -> str | None:
        value = self.args.get(name)
        return None if value is None else str(value)

    def settle_claim(self, recorded: bool) -> asyncio.Future[None] | None:
        """Settle the claim; returns what the command should wait for before going on
        (its acknowledgement being sent), if anything."""
        return settle_claim(self.claimed, self.on_claimed, recorded)

    def set_outcome(self, outcome: Outcome, cause: str = "") -> None:
        """State what happened, e.g. `failed` with "PagerDuty server error (500)"."""
        self.outcome, self.cause = outcome, audit_cause(cause)

    def hand_over(self, task: asyncio.Task[object]) -> None:
        """The answer to this event is another command's, submitted to the bus as `task`:
        the event is done when that one is, and its replies are the event's (so whoever
        waits for the event, the console, sees it answered)."""
        self.handed_over.append(task)

    def respond(self, reply: Reply) -> None:
        """Post an interim reply now (e.g. "paging..."), before the handler returns."""
        self.outbox.enqueue(self.destination, reply)


def settle_claim(
    claimed: asyncio.Future[bool] | None, on_claimed: OnClaimed | None, recorded: bool
) -> asyncio.Future[None] | None:
    """Settle a claim once: its future, then (at once, not on a later turn of the loop) the
    one who asked to be told; returns what that one asks the command to wait for."""
    if claimed is None or claimed.done():
        return None
    claimed.set_result(recorded)
    if on_claimed is None:
        return None
    try:
        return on_claimed(recorded)
    except Exception:  # the connector's; it must not fail the command
        log.exception("a claim's listener failed")
        return None
