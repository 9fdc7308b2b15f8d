"""The one wait helper: `eventually(check)` polls until the check holds, or fails the test.

`check` returns what is waited for (a truthy value, which `eventually` returns: the post, the
row, True); it may also assert, and is retried while it raises AssertionError (the last one is
the failure's cause). It may be a coroutine function. The timeout is a safety net on the
loop's clock, never a measurement: a test does not sleep a fixed time to see that something
did NOT happen, it sends a barrier command and waits for that answer (tests/rig.py)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(
    check: Callable[[], T | Awaitable[T]],
    *,
    timeout: float = 5.0,
    interval: float = 0.01,
    what: str | Callable[[], str] = "",
) -> T:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        failure: AssertionError | None = None
        try:
            found = check()
            if inspect.isawaitable(found):
                found = await found
            if found:
                return found  # type: ignore[return-value]
        except AssertionError as exc:
            failure = exc
        if loop.time() >= end:
            said = (what() if callable(what) else what) or getattr(check, "__name__", "check")
            raise AssertionError(f"{said}: not met within {timeout} s") from failure
        await asyncio.sleep(interval)


async def loop_barrier(rounds: int = 3) -> None:
    """Every callback already queued on the loop has run (and what those queued in turn, to
    `rounds` levels): the in-process barrier, where there is no command to send."""
    loop = asyncio.get_running_loop()
    for _ in range(rounds):
        done = loop.create_future()
        loop.call_soon(done.set_result, None)
        await done
