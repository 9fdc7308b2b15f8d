"""Every time shown to a person goes through here, in the configured zone (`chatopsd.timezone`).

Pure: the zone is injected (the daemon resolves the name or the host's zone in config.py);
stored and compared times stay aware UTC everywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo


@dataclass(frozen=True, slots=True)
class Times:
    zone: tzinfo = UTC

    def local(self, at: datetime) -> datetime:
        return at.astimezone(self.zone)

    def hm(self, at: datetime) -> str:
        """14:02 CET: today's events."""
        return self.local(at).strftime("%H:%M %Z")

    def day(self, at: datetime) -> str:
        """Tue 09:00 CET: within the week (a shift's end)."""
        return self.local(at).strftime("%a %H:%M %Z")

    def full(self, at: datetime | None) -> str:
        """2026-11-29 14:02 CET, or "-" for a time that has not happened."""
        return self.local(at).strftime("%Y-%m-%d %H:%M %Z") if at else "-"

    def stamp(self, at: datetime) -> str:
        """2026-11-29 14:02:05, for lines under a heading that names the zone."""
        return self.local(at).strftime("%Y-%m-%d %H:%M:%S")

    def clock(self, at: datetime) -> str:
        """14:02, for lines under a heading that names the zone."""
        return self.local(at).strftime("%H:%M")

    def zone_name(self, at: datetime) -> str:
        return self.local(at).strftime("%Z")


UTC_TIMES = Times(UTC)


def age(delta: timedelta) -> str:
    """How long: 45s, 12m, 3h 05m, 2d 4h."""
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 60:
        return f"{seconds}s"
    minutes, _ = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"
