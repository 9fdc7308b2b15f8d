"""`!ic next [schedule]` and `!ic schedule [days]`: coming on-call shifts, from the lookahead
cache (never a PagerDuty call per request)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, tzinfo

from chatopsd.core.commands import Arg, CommandSpec
from chatopsd.core.context import Call
from chatopsd.core.errors import NotFound, Unavailable, UsageError
from chatopsd.core.messages import Reply
from chatopsd.core.ports import Clock
from chatopsd.features.oncall import shift_rules as core
from chatopsd.features.oncall.handoff_rules import shift_time
from chatopsd.features.oncall.shift_rules import Lookahead


class ShiftHandler:
    def __init__(
        self,
        lookahead: Callable[[], Lookahead],
        clock: Clock,
        *,
        ic_schedules: Sequence[str],
        schedules: Sequence[str],
        days: float,
        tz: tzinfo | None = None,
        outage: Callable[[], tuple[datetime | None, str | None]] = lambda: (None, None),
    ) -> None:
        self.lookahead, self.clock = lookahead, clock
        # (since when, why) the on-call refresh has been failing, or (None, None): the
        # lookahead is read only after a refresh that succeeded, so an outage is told here
        self.outage = outage
        self.ic_schedules = tuple(ic_schedules)
        self.schedules = tuple(dict.fromkeys([*ic_schedules, *schedules]))
        self.days = days
        self.tz = tz

    def commands(self) -> list[CommandSpec]:
        return [
            CommandSpec(
                ("ic", "next"),
                "who is on call next, and when the shift changes",
                self.next,
                (
                    Arg(
                        "schedule",
                        "a schedule id or name (default: the IC schedules)",
                        required=False,
                    ),
                ),
                examples=("ic next", "ic next PIC2", "ic next payments"),
            ),
            CommandSpec(
                ("ic", "schedule"),
                "the coming on-call shifts, as a compact table",
                self.schedule,
                (
                    Arg(
                        "days",
                        f"how many days ahead (default 7, at most {self.days:g})",
                        kind="int",
                        required=False,
                    ),
                ),
                examples=("ic schedule", "ic schedule 3"),
            ),
        ]

    def _cached(self) -> Lookahead:
        look = self.lookahead()
        if look.as_of is None:
            raise Unavailable(unread(look, self.outage(), self.tz))
        return look

    def _pick(self, query: str | None, look: Lookahead) -> list[str]:
        if not query:
            return list(self.ic_schedules)
        q = query.lower()
        names = {s.schedule_id: s.schedule_name for s in look.shifts}
        found = [sid for sid in self.schedules if q == sid.lower()]
        found = found or [sid for sid in self.schedules if q in names.get(sid, "").lower()]
        if not found:
            raise NotFound(f"no configured schedule matches {query!r}")
        return found

    async def next(self, call: Call) -> Reply:
        look = self._cached()
        now = self.clock.now()
        lines = []
        for sid in self._pick(call.text("schedule"), look):
            line = core.next_line(look.shifts, sid, now, self.tz)
            lines.append(line or f"{sid}: no shifts known in the next {self.days:g} days")
        return Reply(title="Next on call", text="\n".join([*lines, *_freshness(look, self.tz)]))

    async def schedule(self, call: Call) -> Reply:
        look = self._cached()
        raw = call.args.get("days")
        days = float(raw) if isinstance(raw, int) else min(7.0, self.days)
        if days <= 0 or days > self.days:
            raise UsageError(f"days must be between 1 and {self.days:g} (the lookahead)")
        wanted = set(self.schedules)
        shown = [s for s in look.shifts if s.schedule_id in wanted]
        text, left = core.table(shown, self.clock.now(), days, self.tz)
        notes = _freshness(look, self.tz)
        if left:
            notes.append(f"{left} more shift(s) not shown: ask for fewer days.")
        if not text:
            notes.insert(0, f"No shifts known in the next {days:g} days.")
        return Reply(
            title=f"On-call shifts, next {days:g} days",
            code=text or None,
            text="\n".join(notes),
        )


def unread(look: Lookahead, outage: tuple[datetime | None, str | None], tz: tzinfo | None) -> str:
    """Why there are no coming shifts to show: PagerDuty unreachable when that is the
    cause, not a bare "not read yet" that hides it."""
    since = look.failing_since or outage[0]
    if since is not None:
        error = look.error or outage[1]
        why = f" ({error})" if error else ""
        return (
            f"PagerDuty is unreachable since {_at(since, tz)}{why}: the coming shifts "
            "have not been read"
        )
    return "the coming shifts have not been read from PagerDuty yet (the first refresh is running)"


def _freshness(look: Lookahead, tz: tzinfo | None) -> list[str]:
    if look.failing_since is None or look.as_of is None:
        return []
    why = f" ({look.error})" if look.error else ""
    return [
        f"Shifts as of {_at(look.as_of, tz)}; PagerDuty unreachable since "
        f"{_at(look.failing_since, tz)}{why}."
    ]


def _at(at: datetime, tz: tzinfo | None) -> str:
    return shift_time(at, tz)
