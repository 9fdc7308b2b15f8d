"""The one retry policy: backoff ceilings, server-given waits, deadlines, the retry loop."""

from __future__ import annotations

import random
from email.utils import parsedate_to_datetime

import pytest

from chatopsd.core.errors import RateLimitedSend, TransientSendError
from chatopsd.core.retry import Backoff, Deadline, RetryPolicy, retrying, server_wait

NOW = 1_800_000_000.0  # a wall time, for dates and Unix-time resets


@pytest.mark.parametrize(
    ("headers", "want"),
    [
        ({"Retry-After": "3"}, 3.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"Retry-After": "-4"}, 0.0),
        ({"Retry-After": "Fri, 15 Jan 2027 08:00:10 GMT"}, 10.0),
        ({"ratelimit-reset": "7"}, 7.0),
        ({"X-RateLimit-Reset": "12"}, 12.0),  # Mattermost: seconds
        ({"X-RateLimit-Reset": str(NOW + 20)}, 20.0),  # Discord, GitHub: a Unix time
        ({"X-RateLimit-Reset-After": "0.25"}, 0.25),
        ({"Retry-After": "soon", "ratelimit-reset": "2"}, 2.0),
        ({"Retry-After": "nan"}, None),
        ({"Retry-After": "inf"}, None),
        ({"Retry-After": ""}, None),
        ({"Content-Type": "application/json"}, None),
        ({}, None),
    ],
)
def test_server_wait(headers: dict[str, str], want: float | None) -> None:
    now = NOW
    if "GMT" in headers.get("Retry-After", ""):
        now = parsedate_to_datetime(headers["Retry-After"]).timestamp() - 10
    assert server_wait(headers, now=now) == want


def test_a_date_or_unix_time_needs_the_wall_time() -> None:
    assert server_wait({"X-RateLimit-Reset": str(NOW + 20)}) is None
    assert server_wait({"Retry-After": "Fri, 15 Jan 2027 08:00:10 GMT"}) is None


def test_full_jitter_is_capped_and_reaches_the_cap() -> None:
    backoff, rng = Backoff(base=0.5, cap=8.0), random.Random(3)
    for attempt in range(60):
        assert 0.0 <= backoff.delay(attempt, rng) <= min(8.0, 0.5 * 2**attempt)
    assert max(backoff.delay(20, rng) for _ in range(300)) > 7.0
    assert backoff.ceiling(-3) == 0.5


def test_policy_prefers_the_server_but_caps_it() -> None:
    policy = RetryPolicy(attempts=3, backoff=Backoff(base=1, cap=2), max_wait=10.0)
    assert policy.wait(1, 4.0) == 4.0
    assert policy.wait(1, 300.0) == 10.0
    assert 0.0 <= policy.wait(5, None) <= 2.0


def test_deadline() -> None:
    now = [100.0]
    deadline = Deadline(5.0, lambda: now[0])
    assert deadline.left() == 5.0 and not deadline.expired()
    assert deadline.allows(4.9) and not deadline.allows(5.0)
    now[0] = 105.0
    assert deadline.expired()


async def test_retrying_honours_server_waits_then_gives_up() -> None:
    waits: list[float] = []
    tries = 0

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    async def call() -> str:
        nonlocal tries
        tries += 1
        raise RateLimitedSend("429", retry_after=2.0)

    with pytest.raises(RateLimitedSend):
        await retrying(call, RetryPolicy(attempts=3), sleep=sleep)
    assert tries == 3 and waits == [2.0, 2.0]


async def test_retrying_stops_at_once_when_retry_on_refuses() -> None:
    tries = 0

    async def call() -> str:
        nonlocal tries
        tries += 1
        if tries == 1:
            raise RateLimitedSend("429", retry_after=0.0)
        raise TransientSendError("HTTP 502")

    async def sleep(seconds: float) -> None:
        return None

    with pytest.raises(TransientSendError, match="502"):
        await retrying(
            call,
            RetryPolicy(attempts=5),
            retry_on=lambda exc: isinstance(exc, RateLimitedSend),
            sleep=sleep,
        )
    assert tries == 2


async def test_retrying_returns_the_first_success() -> None:
    tries = 0

    async def call() -> int:
        nonlocal tries
        tries += 1
        if tries < 3:
            raise TransientSendError("reset")
        return 42

    async def sleep(seconds: float) -> None:
        return None

    assert await retrying(call, RetryPolicy(attempts=3), sleep=sleep) == 42
