"""Shift reminders: which (shift, threshold) pairs are due, and what to tell the person. Pure.

A shift starting within a threshold (e.g. 720 or 60 minutes) is due for it. When several
thresholds are due at once (the daemon started 30 minutes before a shift), only the closest
one is sent; the others are recorded as handled, so nobody gets two DMs for one shift.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

from chatopsd.features.oncall.handoff_rules import shift_time
from chatopsd.features.oncall.shift_rules import Shift


@dataclass(frozen=True, slots=True)
class Due:
    key: str  # one per shift and threshold: the idempotency key
    shift: Shift
    send: bool  # False: handled without a message (a closer threshold is sent instead)
    text: str


def due(
    shifts: Sequence[Shift], now: datetime, minutes: Sequence[int], tz: tzinfo | None
) -> list[Due]:
    out: list[Due] = []
    for s in shifts:
        if s.start <= now:
            continue
        before = [p for p in shifts if _same_watch(p, s) and p.end == s.start]
        if any(p.person_id == s.person_id for p in before):
            continue  # their shift goes on: not a start
        lead = s.start - now
        hit = sorted(m for m in set(minutes) if lead <= timedelta(minutes=m))
        if not hit:
            continue
        text = (
            f"You're {s.label} from {shift_time(s.start, tz, now)} "
            f"until {shift_time(s.end, tz, now)}"
        )
        if before:
            names = " & ".join(dict.fromkeys(p.person_name for p in before))
            text += f" (handoff from {names})"
        for m in hit:
            key = f"remind:{s.schedule_id}:{s.role}:{s.person_id}:{s.start.isoformat()}:{m}"
            out.append(Due(key, s, m == hit[0], text))
    return out


def _same_watch(a: Shift, b: Shift) -> bool:
    return a.schedule_id == b.schedule_id and a.role == b.role
