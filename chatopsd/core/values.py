"""Values people type as command arguments: whole numbers, durations, date-times, emails.

Each parser is linear in its input and looks at no more than a few dozen characters (longer
input is refused before it is read), and each refuses bad input with a UsageError that says
what was wrong: a bad argument gets a usage reply, never an internal error from a ValueError
or OverflowError deeper down.

Only ASCII digits are digits here. `int()` would also take "٣" and "1_000", and
`str.isdigit()` says yes to "²", which `int()` then refuses; a number this large would not
fit the database either.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from chatopsd.core.errors import UsageError

# The longest address an email can have (RFC 5321: a 256-octet path, less the angle brackets).
EMAIL_MAX = 254
# Whole numbers typed in chat are ids, counts and levels: 15 digits is far beyond any of them,
# and within what SQLite's INTEGER and a float hold exactly.
NUMBER_MAX_DIGITS = 15
# "1d12h30m15s" and an ISO date-time with seconds and an offset both fit well inside this.
_SHORT = 40

_DURATION = re.compile(r"(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m(?:in)?)?(?:([0-9]+)s)?")
_NOT_IN_EMAIL = re.compile(r"[\s<>|]")


def whole_number(text: str, what: str = "the number") -> int:
    """ "12" → 12; a leading "#" is allowed ("#12"). Raises UsageError otherwise."""
    raw = text.strip().removeprefix("#")
    digits = raw.removeprefix("-")
    if not (digits.isascii() and digits.isdigit()):
        raise UsageError(f"{what} must be a whole number (got {_shown(text)})")
    if len(digits) > NUMBER_MAX_DIGITS:
        raise UsageError(f"{what} is too large (got {_shown(text)})")
    return int(raw)


def duration(text: str, *, maximum: int, what: str = "a duration") -> int:
    """ "90s", "30m", "2h", "1h30m", "1d" → seconds; a bare number is minutes. At least one
    second and at most `maximum` seconds."""
    raw = text.strip().lower().replace(" ", "")
    if not raw or len(raw) > _SHORT or not raw.isascii():
        raise UsageError(f"{_shown(text)} is not a duration", hint="e.g. 30m, 2h, 1h30m")
    if raw.isdigit():
        seconds = int(raw) * 60
    else:
        match = _DURATION.fullmatch(raw)
        if match is None or not any(match.groups()):
            raise UsageError(f"{_shown(text)} is not a duration", hint="e.g. 30m, 2h, 1h30m")
        d, h, m, s = (int(g or 0) for g in match.groups())
        seconds = ((d * 24 + h) * 60 + m) * 60 + s
    if not 1 <= seconds <= maximum:
        raise UsageError(f"{what} must be between 1 second and {_span(maximum)}")
    return seconds


def moment(
    text: str, base: datetime, *, ahead: int, what: str = "the time", after: str = "now"
) -> datetime:
    """A date-time ("2026-11-24T08:00", UTC unless it names an offset), or a delay after
    `base` ("2h"). At most `ahead` seconds after `base` (which `after` names in the refusal),
    so nothing computed from it later can overflow."""
    raw = text.strip()
    if len(raw) > _SHORT or not raw.isascii():
        raise UsageError(f"{what} must be a date-time or a delay (got {_shown(text)})")
    try:
        at = datetime.fromisoformat(raw)
    except ValueError:
        return base + timedelta(seconds=duration(raw, maximum=ahead, what=what))
    at = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    if (at - base).total_seconds() > ahead:
        raise UsageError(f"{what} must be at most {_span(ahead)} after {after}")
    return at


def is_email(text: str) -> bool:
    """One @, something before it, a dot inside the part after it, no spaces or angle
    brackets, at most EMAIL_MAX characters. (The platform or PagerDuty has the final word.)"""
    if not 3 <= len(text) <= EMAIL_MAX or _NOT_IN_EMAIL.search(text):
        return False
    local, _, domain = text.partition("@")
    labels = domain.split(".")
    return (
        0 < len(local) <= 64  # RFC 5321's limit on the local part
        and "@" not in domain
        and len(labels) >= 2
        and all(labels)
    )


def _shown(text: str) -> str:
    """The offending value, quoted and cut short: the reply must stay small."""
    return repr(text if len(text) <= 40 else text[:40] + "…")


def _span(seconds: int) -> str:
    days, rest = divmod(seconds, 86400)
    if days and not rest:
        return f"{days} day" + ("s" if days > 1 else "")
    hours, rest = divmod(seconds, 3600)
    return f"{hours} hours" if hours and not rest else f"{seconds} seconds"
