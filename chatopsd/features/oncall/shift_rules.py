"""Coming on-call shifts (the lookahead): who is on next, and a compact table. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

from chatopsd.features.oncall.handoff_rules import label, shift_time


@dataclass(frozen=True, slots=True)
class Shift:
    schedule_id: str
    schedule_name: str
    role: str
    person_id: str
    person_name: str
    start: datetime
    end: datetime

    @property
    def label(self) -> str:
        return label(self.schedule_name, self.role)


@dataclass(frozen=True, slots=True)
class Lookahead:
    """The cached shifts, with how fresh they are (as Roster does for the current on-calls)."""

    shifts: tuple[Shift, ...]
    as_of: datetime | None
    horizon: datetime | None = None
    failing_since: datetime | None = None
    error: str | None = None


def primary(shifts: Sequence[Shift], schedule_id: str) -> list[Shift]:
    """The shifts of one schedule at its first role (e.g. primary), in time order."""
    mine = [s for s in shifts if s.schedule_id == schedule_id]
    if not mine:
        return []
    first_role = min(mine, key=lambda s: (s.role != "primary", s.role)).role
    return sorted((s for s in mine if s.role == first_role), key=lambda s: (s.start, s.person_name))


def next_line(shifts: Sequence[Shift], schedule_id: str, now: datetime, tz: tzinfo | None) -> str:
    """ "IC primary: Ada until Tue 08:00, then Grace until Wed 08:00" (or what is known)."""
    mine = primary(shifts, schedule_id)
    if not mine:
        return ""
    current = [s for s in mine if s.start <= now < s.end]
    coming = [s for s in mine if s.start > now]
    head = mine[0].label
    if current:
        ends = min(s.end for s in current)
        text = f"{head}: {_names(current)} until {shift_time(ends, tz, now)}"
    else:
        text = f"{head}: nobody on this schedule now"
    if coming:
        start = coming[0].start
        nxt = [s for s in coming if s.start == start]
        text += f", then {_names(nxt)} from {shift_time(start, tz, now)}"
        text += f" until {shift_time(min(s.end for s in nxt), tz, now)}"
    else:
        text += ", nobody known after that in the lookahead"
    return text


def table(
    shifts: Sequence[Shift], now: datetime, days: float, tz: tzinfo | None, *, limit: int = 40
) -> tuple[str, int]:
    """A monospace table of the shifts overlapping now..now+days; (table, shifts left out)."""
    end = now + timedelta(days=days)
    rows = sorted(
        (s for s in shifts if s.start < end and s.end > now),
        key=lambda s: (s.start, s.label, s.person_name),
    )
    shown = rows[:limit]
    width = max((len(s.label) for s in shown), default=0)
    lines = [
        f"{shift_time(max(s.start, now), tz, now)} → {shift_time(s.end, tz, now)}  "
        f"{s.label.ljust(width)}  {s.person_name}"
        for s in shown
    ]
    return "\n".join(lines), len(rows) - len(shown)


def _names(shifts: Sequence[Shift]) -> str:
    return " & ".join(dict.fromkeys(s.person_name for s in shifts))


def held_through(
    shifts: Sequence[Shift], schedule_id: str, person_id: str, start: datetime, end: datetime
) -> bool:
    """Whether `person_id` is on call on `schedule_id` (at any level) for all of start..end:
    their shifts there, joined end to start, cover the window without a gap."""
    mine = sorted(
        (s for s in shifts if s.schedule_id == schedule_id and s.person_id == person_id),
        key=lambda s: s.start,
    )
    covered = start
    for s in mine:
        if s.start > covered:
            break
        covered = max(covered, s.end)
        if covered >= end:
            return True
    return covered >= end
