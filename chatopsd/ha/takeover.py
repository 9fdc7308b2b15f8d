"""Commands a dead instance claimed and never answered, taken over by the lease holder.

With several instances on PostgreSQL each chat event is claimed by one instance before any
work (store/events.py), and the claim keeps the command until its answer went out. When that
instance dies in between (kill -9, a lost host), nobody else would handle it: every other
instance saw the event already claimed. This job, on the lease holder, finds such claims of
instances whose heartbeat is `lease_seconds` old and handles them again. The dead instance
stopped answering at half that (Lease.alive), so a command is never answered twice by the
two. Commands older than `max_age_s` are not run any more (a 20-minute-old `!ic page` could
page someone for something already solved): they are logged and given up.

A command with outside effects that had STARTED (core/middleware.Started: an ops run, a
channel created, a publish, a ticket) is never run again: running `!deploy production` twice
is worse than once. It is reported instead: its channel is told that the instance died while
running it, that it may or may not have finished, and the exact text to run it again; the
audit gets the row the dead instance never wrote, with the outcome `interrupted`. (If the
dead instance had finished it and only its answer was lost, its audit row says so, and the
channel is told how it ended.) On SQLite the next start does the same for what the previous
run left started.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from chatopsd.core.bus import Bus, new_ref
from chatopsd.core.errors import UserError
from chatopsd.core.grammar import tokenize
from chatopsd.core.messages import Destination, Inbound, Reply, inbound_from_json
from chatopsd.core.outcome import Outcome, audit_cause
from chatopsd.core.ports import AuditEntry, AuditLog, Clock, Orphan, OrphanedClaims
from chatopsd.core.times import UTC_TIMES, Times

log = logging.getLogger("chatopsd.ha.takeover")


class Takeover:
    def __init__(
        self,
        ledger: OrphanedClaims,
        bus: Bus,
        clock: Clock,
        audit: AuditLog,
        *,
        dead_after_s: float,
        max_age_s: float = 600.0,
        lookback_s: float = 3600.0,
        times: Times = UTC_TIMES,
    ) -> None:
        self.ledger, self.bus, self.clock, self.audit = ledger, bus, clock, audit
        self.dead_after_s = dead_after_s
        self.max_age_s = max_age_s
        self.lookback_s = lookback_s
        self.times = times
        self.resumed = 0  # commands handled again here (health, tests)
        self.given_up = 0  # too old or unreadable
        self.interrupted = 0  # started commands reported, not run again

    async def sweep(self) -> None:
        for orphan in await self.ledger.orphans(self.dead_after_s, self.lookback_s):
            age = self.clock.now().timestamp() - orphan.seen_at
            try:
                event = inbound_from_json(orphan.payload)
            except (ValueError, KeyError, TypeError) as exc:
                event, why = None, f"unreadable ({exc.__class__.__name__})"
            else:
                why = ""
                if orphan.started_at is None and age > self.max_age_s:
                    why = f"{age:.0f} s old, too late to run now"
            if event is None or why:
                log.error(
                    "gave up on %s event %s that %s claimed and never answered: %s",
                    orphan.platform,
                    orphan.event_id,
                    orphan.instance,
                    why,
                )
                await self.ledger.abandon(orphan)
                self.given_up += 1
                continue
            if orphan.started_at is not None:
                await self._report(orphan, event, orphan.started_at)
                continue
            if not await self.ledger.adopt(orphan):
                continue  # another survivor took it, or its owner answered after all
            log.warning(
                "taking over %s event %s from %s (claimed %.1f s ago, never answered)",
                orphan.platform,
                orphan.event_id,
                orphan.instance,
                age,
            )
            self.resumed += 1
            self.bus.resume(event, orphan.seen_at)

    async def _report(self, orphan: Orphan, event: Inbound, started_at: float) -> None:
        """Tell the channel and audit it; never run it again. Told at least once: a survivor
        that dies before marking it done leaves it to the next one."""
        started = datetime.fromtimestamp(started_at, UTC)
        recorded = await self.audit.of_event(event.platform, event.event_id, started)
        if not await self.ledger.adopt(orphan, resume=False):
            return  # another survivor reports it
        try:
            await self._tell(orphan, event, started, recorded)
        except Exception:
            await self.ledger.release(orphan)  # the next sweep tries again
            raise
        await self.ledger.abandon(orphan)

    async def _tell(
        self, orphan: Orphan, event: Inbound, started: datetime, recorded: AuditEntry | None
    ) -> None:
        command, again = self._command(event)
        instance = orphan.instance or "(unknown)"
        finished = recorded if recorded and recorded.outcome != Outcome.INTERRUPTED else None
        if recorded is None:
            await self.audit.append(
                AuditEntry(
                    at=self.clock.now(),
                    platform=event.platform,
                    channel=event.channel,
                    thread=event.thread,
                    actor=event.actor.id,
                    actor_name=event.actor.display,
                    kind=event.kind,
                    text=event.text[:2000],
                    command=command,
                    outcome=Outcome.INTERRUPTED,
                    duration_ms=0.0,  # unknown: it never reported an end
                    event_id=event.event_id,
                    ref=new_ref(),
                    cause=audit_cause(
                        f"{instance} stopped while running it (started {started.isoformat()}); "
                        "it may or may not have taken effect; not run again"
                    ),
                )
            )
        log.warning(
            "%s event %s: %s stopped %s %r; telling its channel, not running it again",
            event.platform,
            event.event_id,
            instance,
            "while running" if finished is None else "before answering",
            again,
        )
        self.interrupted += 1
        notice = self._notice(event, instance, started, again, finished)
        if await self.bus.outbox.send(Destination.for_inbound(event), notice) is None:
            log.error("could not tell %s:%s about %r", event.platform, event.channel, again)

    def _command(self, event: Inbound) -> tuple[str, str]:
        """The command's name (for the audit) and the exact text that runs it again."""
        addressed = None if event.kind == "reaction" else self.bus.addressed(event)
        body = (addressed.text if addressed is not None else event.text).strip()
        try:
            name = self.bus.registry.resolve(tokenize(body), self.bus.prefix).spec.name
        except UserError:
            name = body.split(maxsplit=1)[0] if body else ""
        return name, f"{self.bus.prefix}{body}"

    def _notice(
        self,
        event: Inbound,
        instance: str,
        started: datetime,
        again: str,
        finished: AuditEntry | None,
    ) -> Reply:
        who, when = event.actor.display, self.times.hm(started)
        if finished is None:
            return Reply(
                title="A command was interrupted",
                text=(
                    f"chatopsd instance {instance} stopped (killed or crashed) while running "
                    f"this command for {who}, started {when}. It may or may not have finished, "
                    "and it will not run again by itself: check its effect before running it "
                    "again. To run it again, send:"
                ),
                code=again,
            )
        how = finished.outcome + (f" ({finished.cause})" if finished.cause else "")
        return Reply(
            title="A command finished, its answer was lost",
            text=(
                f"chatopsd instance {instance} stopped after running this command for {who} "
                f"(started {when}), before its answer went out. It ended: {how}. "
                "It was not run again."
            ),
            code=again,
        )
