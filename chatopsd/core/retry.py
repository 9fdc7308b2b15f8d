"""The one retry policy: full-jitter exponential backoff with caps, server-given waits
(`Retry-After`, `X-RateLimit-Reset`, `ratelimit-reset`) parsed in one place, and deadlines.

Used by the connector supervisor, the outbox, the Mattermost channel-admin calls, the Discord
gateway loop and the PagerDuty client. Full jitter (a uniform draw in [0, ceiling]) spreads
the reconnects of many clients after an outage instead of bunching them.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TypeVar

from chatopsd.core.errors import TransientSendError

T = TypeVar("T")

# Header names servers use to say how long to wait, in the order they are trusted.
_WAIT_HEADERS = ("retry-after", "ratelimit-reset", "x-ratelimit-reset-after", "x-ratelimit-reset")
# A reset value this large is a Unix time (Discord, GitHub), not a number of seconds.
_EPOCH = 1_000_000_000.0


@dataclass(frozen=True, slots=True)
class Backoff:
    """Full jitter: uniform in [0, min(cap, base * 2^attempt)].

    `stable_after`: a connection up this long resets the attempt count (supervisor)."""

    base: float = 1.0
    cap: float = 60.0
    stable_after: float = 60.0

    def ceiling(self, attempt: int) -> float:
        return min(self.cap, self.base * (2.0 ** min(max(attempt, 0), 30)))

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        return (rng or _RNG).uniform(0.0, self.ceiling(attempt))


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long to retry a call that failed in a way worth repeating.

    `max_wait` caps a server-given wait (a longer one is still honoured up to it)."""

    attempts: int = 5
    backoff: Backoff = Backoff(base=0.5, cap=30.0)
    max_wait: float | None = None

    def wait(self, attempt: int, hinted: float | None, rng: random.Random | None = None) -> float:
        """Seconds before try `attempt + 1`: the server's word if it gave one, else backoff."""
        wait = hinted if hinted is not None else self.backoff.delay(attempt, rng)
        return min(wait, self.max_wait) if self.max_wait is not None else wait


class Deadline:
    """A point on a monotonic clock that every attempt of one call must finish by.

    `spend` records time known to have passed (a wait slept, an attempt that used its whole
    timeout): the deadline counts whichever is further, the clock or what was spent, so a
    clock that stands still while we wait (a test's) cannot stretch a call past its deadline.
    On a real clock the two agree and `spend` changes nothing."""

    def __init__(self, seconds: float, monotonic: Callable[[], float]) -> None:
        self._monotonic = monotonic
        self._start = monotonic()
        self._spent = 0.0
        self.at = self._start + seconds

    def spend(self, seconds: float) -> None:
        self._spent += max(0.0, seconds)

    def _now(self) -> float:
        return max(self._monotonic(), self._start + self._spent)

    def left(self) -> float:
        return self.at - self._now()

    def expired(self) -> bool:
        return self.left() <= 0

    def allows(self, wait: float) -> bool:
        """Would a retry after `wait` seconds still start before the deadline?"""
        return self._now() + wait < self.at


def server_wait(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds a server asked us to wait, from its headers, or None if it did not say.

    `Retry-After` is seconds or an HTTP date; `ratelimit-reset` (PagerDuty, the IETF draft)
    and `X-RateLimit-Reset-After` are seconds; `X-RateLimit-Reset` is seconds (Mattermost) or
    a Unix time when large (Discord, GitHub). `now` is the wall time, for dates."""
    lowered = {k.lower(): v for k, v in headers.items()}
    for name in _WAIT_HEADERS:
        raw = lowered.get(name)
        if raw is None:
            continue
        seconds = _seconds(raw.strip(), now)
        if seconds is not None:
            return seconds
    return None


def _seconds(raw: str, now: float | None) -> float | None:
    try:
        value = float(raw)
    except ValueError:
        try:
            when = parsedate_to_datetime(raw).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        return None if now is None else max(0.0, when - now)
    if value != value or value in (float("inf"), float("-inf")):  # NaN, infinities
        return None
    if value >= _EPOCH:
        return None if now is None else max(0.0, value - now)
    return max(0.0, value)


async def retrying(
    call: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    retry_on: Callable[[TransientSendError], bool] = lambda exc: True,
    on_retry: Callable[[int, TransientSendError, float], None] | None = None,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    rng: random.Random | None = None,
) -> T:
    """Run `call`, retrying a TransientSendError (that `retry_on` accepts) per the policy;
    the last error is raised when the attempts are used up."""
    attempt = 1
    while True:
        try:
            return await call()
        except TransientSendError as exc:
            if attempt >= policy.attempts or not retry_on(exc):
                raise
            wait = policy.wait(attempt, exc.retry_after, rng)
            if on_retry is not None:
                on_retry(attempt, exc, wait)
            await sleep(wait)
            attempt += 1


_RNG = random.Random()
