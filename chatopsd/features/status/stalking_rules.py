"""Stalking the status: who stalks, what they were last told, and who must be told now. Pure.

Cost: stalkers are grouped by the fingerprint last posted to them, so a poll that finds the
state unchanged touches no stalker at all, and a change touches only the stalkers it posts to
(plus any held back by their own interval). Nothing is done per stalker per poll.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from chatopsd.core.messages import Destination
from chatopsd.features.status.api import Overview, Reading

StalkerKey = tuple[str, str, str]  # platform, channel, thread ("" when none)


@dataclass(slots=True)
class Stalker:
    platform: str
    channel: str
    thread: str
    interval: float
    fingerprint: str
    verdict: str
    posted_at: float  # epoch seconds of the last post (or of `!status stalk`)
    created_at: float
    created_by: str = ""

    @property
    def key(self) -> StalkerKey:
        return (self.platform, self.channel, self.thread)

    @property
    def destination(self) -> Destination:
        return Destination(self.platform, self.channel, self.thread or None)


def fingerprint(overview: Overview) -> str:
    """What a stalker is told about: the verdict, the set of firing alerts (with their own
    state) and which sources cannot be read. Summaries and counts of text are left out."""
    firing = sorted({(a.source, a.key or a.name, a.verdict.value) for a in overview.alerts})
    broken = sorted(r.source for r in overview.problems)
    doc = json.dumps([overview.verdict.value, firing, broken], separators=(",", ":"))
    return hashlib.sha256(doc.encode()).hexdigest()[:24]


class Steady:
    """Holds a failing source's last good reading until it failed `after` polls in a row, so
    one lost request does not post "UNKNOWN" then "back to normal" to every stalker."""

    def __init__(self, after: int) -> None:
        self.after = after
        self.failures: dict[str, int] = {}
        self._good: dict[str, Reading] = {}

    def apply(self, readings: Sequence[Reading]) -> list[Reading] | None:
        """The readings to judge by, or None when a source is failing but not yet long
        enough and there is no earlier good reading to hold (right after a start)."""
        settled = True
        out: list[Reading] = []
        for r in readings:
            if r.error is None:
                self.failures[r.source] = 0
                self._good[r.source] = r
                out.append(r)
                continue
            n = self.failures[r.source] = self.failures.get(r.source, 0) + 1
            if n >= self.after:
                out.append(r)
            elif r.source in self._good:
                out.append(self._good[r.source])
            else:
                settled = False
        return out if settled else None


class StalkerSet:
    """Every stalker, indexed by key and grouped by the fingerprint last posted to it."""

    # A poll due a hair early (scheduler jitter) still counts as one interval later.
    SLACK_SECONDS = 1.0

    def __init__(self) -> None:
        self._by_key: dict[StalkerKey, Stalker] = {}
        self._groups: dict[str, set[StalkerKey]] = {}

    def __len__(self) -> int:
        return len(self._by_key)

    def __iter__(self) -> Iterator[Stalker]:
        return iter(sorted(self._by_key.values(), key=lambda s: s.key))

    def get(self, key: StalkerKey) -> Stalker | None:
        return self._by_key.get(key)

    def put(self, stalker: Stalker) -> None:
        self.remove(stalker.key)
        self._by_key[stalker.key] = stalker
        self._groups.setdefault(stalker.fingerprint, set()).add(stalker.key)

    def remove(self, key: StalkerKey) -> Stalker | None:
        old = self._by_key.pop(key, None)
        if old is not None:
            group = self._groups.get(old.fingerprint)
            if group is not None:
                group.discard(key)
                if not group:
                    del self._groups[old.fingerprint]
        return old

    def due(self, fp: str, now: float) -> list[Stalker]:
        """Stalkers last told something other than `fp` whose interval allows a post now."""
        found = []
        for group_fp, keys in self._groups.items():
            if group_fp == fp:
                continue
            for key in keys:
                s = self._by_key[key]
                if now - s.posted_at + self.SLACK_SECONDS >= s.interval:
                    found.append(s)
        return found

    def mark(self, stalker: Stalker, fp: str, verdict: str, now: float) -> None:
        """Record that `fp` was posted to the stalker (regroups it)."""
        self.remove(stalker.key)
        stalker.fingerprint, stalker.verdict, stalker.posted_at = fp, verdict, now
        self.put(stalker)
