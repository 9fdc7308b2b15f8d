"""`!ic swap <from> <until> [reason]`: ask for cover, with a "Take it" button.

The request is posted where it was asked; whoever takes it (the `oncall` role, linked to a
PagerDuty user) gets an override on the schedule for that window, made as them. The take is
one conditional write, so a second taker is refused; an override PagerDuty refuses undoes the
take. The request message is edited to say who took it, and the requester is told. A request
expires when its window starts; the `swap-expire` job edits the message to say so.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta, tzinfo

from chatopsd.core.commands import Arg, CommandSpec
from chatopsd.core.context import Call
from chatopsd.core.errors import Forbidden, NotFound, Unavailable, UsageError
from chatopsd.core.messages import Button, Destination, Reply, Sent
from chatopsd.core.ports import Clock, ReplySink
from chatopsd.features.oncall.handoff_rules import shift_time
from chatopsd.features.oncall.shift_commands import unread
from chatopsd.features.oncall.shift_rules import Lookahead, held_through
from chatopsd.features.oncall.swap_rules import FROM_HELP, UNTIL_HELP, Swap, SwapStore, window
from chatopsd.features.pagerduty.api import ROLE, IncidentApi, PagerDuty

log = logging.getLogger("chatopsd.swaps")


class SwapHandler:
    def __init__(
        self,
        api: IncidentApi,
        pd: PagerDuty,
        store: SwapStore,
        outbox: ReplySink,
        clock: Clock,
        *,
        schedules: Sequence[str],
        tz: tzinfo | None = None,
        lookahead: Callable[[], Lookahead] | None = None,
    ) -> None:
        self.api, self.pd, self.store, self.outbox, self.clock = api, pd, store, outbox, clock
        self.schedules = tuple(schedules)
        self.tz = tz
        # the coming shifts read from PagerDuty (store/shifts.py): a swap offers one you hold
        self.lookahead = lookahead or (lambda: Lookahead((), None))

    def commands(self) -> list[CommandSpec]:
        return [
            CommandSpec(
                ("ic", "swap"),
                "ask for someone to cover your on-call window",
                self.request,
                (
                    Arg("from", FROM_HELP),
                    Arg("until", UNTIL_HELP),
                    Arg("reason", "why (optional)", kind="rest", required=False),
                ),
                role=ROLE,
                mutates=True,
                examples=("ic swap 2026-11-24T08:00 12h dentist", "ic swap 1h 4h"),
            ),
            CommandSpec(
                ("ic", "swap", "take"),
                "take a swap request: an override for you on that window",
                self.take,
                (Arg("id", "the request number", kind="int"),),
                role=ROLE,
                pages=True,
                mutates=True,
            ),
        ]

    async def request(self, call: Call) -> Reply:
        if not self.schedules:
            raise UsageError("no IC schedule configured to swap on")
        now = self.clock.now()
        start, until = window(call.text("from") or "", call.text("until") or "", now)
        await self._holds(call, self.schedules[0], start, until)
        e = call.event
        swap = Swap(
            0,
            self.schedules[0],
            start,
            until,
            call.text("reason") or "",
            f"{e.platform}:{e.actor.id}",
            e.actor.display,
            e.platform,
            e.channel,
            None,
            expires=max(start, now + timedelta(minutes=1)),
        )
        swap_id = await self.store.open(swap)
        swap = replace(swap, id=swap_id)
        sent = await self.outbox.send(Destination(e.platform, e.channel), self._card(swap, now))
        if sent is None:
            raise RuntimeError("the swap request could not be posted")
        await self.store.posted(swap_id, sent.message_id)
        return Reply(text=f"Swap request #{swap_id} posted; it expires when the window starts.")

    async def _holds(self, call: Call, schedule: str, start: datetime, until: datetime) -> None:
        """Refuse a request for a window the requester is not on call for: a swap gives away
        your own shift, never someone else's."""
        sender = await self.pd.sender(call)  # known, or Forbidden with what to do
        me = await self.api.user_by_email(sender)
        if me is None:
            raise NotFound(f"PagerDuty has no user with the email {sender}")
        known = self.lookahead()
        if known.as_of is None:
            snap = self.pd.snapshot
            raise Unavailable(
                "I cannot check your shifts: "
                + unread(known, (snap.failing_since, snap.error), self.tz),
                hint="try again after the next on-call refresh",
            )
        now = self.clock.now()
        if known.horizon is not None and until > known.horizon:
            raise UsageError(
                f"I can only see shifts until {shift_time(known.horizon, self.tz, now)}",
                hint="ask for a window that ends before then",
            )
        if not held_through(known.shifts, schedule, me.id, start, until):
            window = f"{shift_time(start, self.tz, now)} → {shift_time(until, self.tz, now)}"
            raise Forbidden(
                f"you ({me.name}) are not on call on {schedule} for all of {window}",
                hint=f"a swap offers a shift you hold: see {call.prefix}ic schedule",
            )

    async def take(self, call: Call) -> Reply:
        raw = call.args.get("id")
        swap = await self.store.get(int(raw)) if isinstance(raw, int) else None
        if swap is None:
            raise NotFound(f"no swap request #{raw}")
        sender = await self.pd.sender(call)  # linked, or Forbidden with how to link
        me = await self.api.user_by_email(sender)
        if me is None:
            raise NotFound(f"PagerDuty has no user with the email {sender}")
        e = call.event
        taker = f"{e.platform}:{e.actor.id}"
        now = self.clock.now()
        if not await self.store.claim(swap.id, taker, e.actor.display, now):
            again = await self.store.get(swap.id)
            if again is not None and again.taker:
                raise Forbidden(f"swap #{swap.id} was already taken by {again.taker_name}")
            raise Forbidden(f"swap #{swap.id} has expired")
        try:
            await self.api.add_override(swap.schedule_id, sender, me.id, swap.start, swap.until)
        except Exception:
            await self.store.release(swap.id, taker)
            raise
        done = replace(swap, taker=taker, taker_name=e.actor.display)
        if swap.message_id:
            where = Destination(swap.platform, swap.channel)
            await self.outbox.edit(Sent(where, swap.message_id), self._card(done, now))
        window = f"{shift_time(swap.start, self.tz, now)} → {shift_time(swap.until, self.tz, now)}"
        user = swap.requester.partition(":")[2]
        self.outbox.enqueue(
            Destination(swap.platform, swap.channel, thread=swap.message_id, actor=None),
            Reply(
                text=f"{swap.requester_name}: {e.actor.display} took your swap #{swap.id} "
                f"({window}); the PagerDuty override is in place.",
            ),
        )
        log.info("swap %d taken by %s (requester %s)", swap.id, taker, user)
        return Reply(text=f"You have swap #{swap.id}: {window}, override made in PagerDuty.")

    async def sweep(self) -> None:
        """The `swap-expire` job: edit untaken requests whose window started."""
        now = self.clock.now()
        for swap in await self.store.expired(now):
            if swap.message_id:
                where = Destination(swap.platform, swap.channel)
                await self.outbox.edit(Sent(where, swap.message_id), self._card(swap, now))
            await self.store.close(swap.id)

    def _card(self, swap: Swap, now: datetime) -> Reply:
        window = f"{shift_time(swap.start, self.tz, now)} → {shift_time(swap.until, self.tz, now)}"
        text = f"{swap.requester_name} needs cover on {swap.schedule_id}: {window}"
        if swap.reason:
            text += f" ({swap.reason})"
        if swap.taker:
            return Reply(title=f"🔁 Swap #{swap.id}: taken by {swap.taker_name}", text=text)
        if swap.expires <= now:
            return Reply(title=f"🔁 Swap #{swap.id}: expired, nobody took it", text=text)
        return Reply(
            title=f"🔁 Swap request #{swap.id}",
            text=text,
            buttons=(Button("Take it", f"ic swap take {swap.id}", "primary"),),
        )
