"""Handoff decisions: who is on call per watched (schedule, role), compared with what was last
announced. Pure: the caller reads and writes the state and posts the announcements.

A change is announced only once two successful refreshes in a row agree on it: a person who
appears for one refresh and is gone the next (PagerDuty's answers jitter by some 30 s around a
handoff) is never announced, and no flapping "Ada → Grace", "Grace → Ada" pair is posted.
A schedule nobody is on in a read is not a handoff to nobody: it is no observation at all.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

from chatopsd.core.messages import Destination
from chatopsd.features.paging.api import OnCall


@dataclass(frozen=True, slots=True)
class Holders:
    """Who holds one watch (a schedule and role) in one read."""

    label: str
    ids: tuple[str, ...]
    names: tuple[str, ...]
    until: datetime | None = None

    def encode(self) -> str:
        return json.dumps({"label": self.label, "ids": self.ids, "names": self.names})

    @classmethod
    def decode(cls, text: str) -> Holders:
        raw = json.loads(text)
        return cls(str(raw["label"]), tuple(raw["ids"]), tuple(raw["names"]))


@dataclass(frozen=True, slots=True)
class Watched:
    """The stored state of one watch: announced holders, and a change seen once."""

    announced: Holders
    pending: Holders | None
    seq: int


@dataclass(frozen=True, slots=True)
class OwedPost:
    """A post decided and not yet sent (a handoff announcement, a reminder DM)."""

    key: str
    destination: Destination  # for a DM, the channel is the user id
    text: str
    dm: bool = False


@dataclass(frozen=True, slots=True)
class Step:
    """What to store for one watch, and the announcement to post (None: nothing)."""

    watch: str
    announced: Holders
    pending: Holders | None
    seq: int
    text: str | None


def label(schedule_name: str, role: str) -> str:
    """ "IC" + "primary" → "IC primary"; "IC Primary" + "primary" → "IC Primary"."""
    return schedule_name if role.lower() in schedule_name.lower() else f"{schedule_name} {role}"


def observe(entries: Sequence[OnCall]) -> dict[str, Holders]:
    """The holders of each (schedule, role) in one successful read; empty ones are absent."""
    found: dict[str, list[OnCall]] = {}
    for e in entries:
        found.setdefault(f"{e.schedule_id}:{e.role}", []).append(e)
    out: dict[str, Holders] = {}
    for watch, group in found.items():
        people = {e.person.id: e for e in group}
        ordered = sorted(people.values(), key=lambda e: e.person.id)
        untils = [e.until for e in group if e.until is not None]
        out[watch] = Holders(
            label(group[0].schedule_name, group[0].role),
            tuple(e.person.id for e in ordered),
            tuple(e.person.name for e in ordered),
            min(untils) if untils else None,
        )
    return out


def step(watch: str, seen: Holders, before: Watched | None, tz: tzinfo | None) -> Step | None:
    """The next state of one watch after a read that saw `seen`; None when nothing changes."""
    if before is None:
        # First sight (a new deployment or a newly configured schedule): a baseline, not news.
        return Step(watch, seen, None, 0, None)
    if seen.ids == before.announced.ids:
        if before.pending is None:
            return None
        return Step(watch, before.announced, None, before.seq, None)  # the blip went away
    if before.pending is None or before.pending.ids != seen.ids:
        return Step(watch, before.announced, seen, before.seq, None)  # seen once: wait
    text = announcement(seen.label, before.announced.names, seen.names, seen.until, tz)
    return Step(watch, seen, None, before.seq + 1, text)


def announcement(
    what: str,
    before: Sequence[str],
    after: Sequence[str],
    until: datetime | None,
    tz: tzinfo | None,
) -> str:
    """ "🔁 IC primary: Ada → Grace, until Tue 09:00"."""
    text = f"🔁 {what}: {' & '.join(before) or 'nobody'} → {' & '.join(after)}"
    if until is not None:
        text += f", until {shift_time(until, tz)}"
    return text


def shift_time(at: datetime, tz: tzinfo | None = None, now: datetime | None = None) -> str:
    """ "Tue 09:00" in the configured zone (UTC when none is given); "Mon 07 Dec 08:00" when
    it is six days or more from `now` (a weekday alone would be ambiguous)."""
    shown = at.astimezone(tz) if tz is not None else at
    if now is not None and abs(at - now) >= timedelta(days=6):
        return shown.strftime("%a %d %b %H:%M")
    return shown.strftime("%a %H:%M")
