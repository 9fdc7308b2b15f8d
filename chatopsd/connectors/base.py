"""What every connector is, and the supervisor that keeps it connected.

A connector only translates: platform events in (as `Inbound`, handed to `emit`), neutral
`Reply`s out (rendered in its own markup). The supervisor owns the life cycle: it calls
`run()`, which returns or raises when the connection is gone, and runs it again after an
exponential backoff with full jitter, capped at 60 s, reset once a connection has been stable.
`FatalConnectorError` (bad token, missing intent) stops the retries and says why.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from chatopsd.core.errors import FatalConnectorError
from chatopsd.core.messages import Destination, Inbound, Reply, Sent
from chatopsd.core.ports import Clock
from chatopsd.core.retry import Backoff

__all__ = ["Backoff", "Connector", "Health", "Session", "State", "Supervisor"]

log = logging.getLogger("chatopsd.connector")

# Returns the task handling the event, for a connector that wants to wait for it; its
# result is the replies the event got (none: it was not for us, or a repeat).
Emit = Callable[[Inbound], "asyncio.Task[list[Reply]] | None"]


class State(Enum):
    CONNECTING = "connecting"
    READY = "ready"
    BACKING_OFF = "backing off"
    FAILED = "failed"
    STOPPED = "stopped"


@dataclass
class Health:
    state: State = State.CONNECTING
    reason: str = ""
    since: float = 0.0
    connects: int = 0
    failures: int = 0


class Session(Protocol):
    """Handed to `Connector.run`: where events go and how to say the connection is up."""

    def emit(self, event: Inbound) -> asyncio.Task[list[Reply]] | None: ...

    async def admit(
        self, event: Inbound, work: list[asyncio.Task[list[Reply]]] | None = None
    ) -> bool:
        """Emit the event and wait until it is recorded as handled-here or not-ours: for a
        connector that acknowledges events (Slack Socket Mode), which acknowledges only when
        this returns True (False: leave it for the platform to deliver again). `work`, when
        given, receives the task handling the event, for a connector whose acknowledgement
        carries the answer (a Teams card button)."""
        ...

    def admit_soon(
        self, event: Inbound, on_claimed: Callable[[bool], asyncio.Future[None] | None]
    ) -> None:
        """`admit` for a connector that acknowledges a burst: returns at once, and
        `on_claimed` is called with admit's answer the moment the claim is settled; the
        command waits (briefly) for the future it may return: its ack being sent."""
        ...

    def ready(self) -> None: ...

    def lost(self, reason: str) -> None:
        """The connection dropped and the library is reconnecting by itself (health only;
        call `ready()` again once it is back)."""
        ...

    def accepting(self) -> bool:
        """False once the daemon is shutting down: do not acknowledge new events then, so the
        platform redelivers them to the next run instead of them being dropped."""
        ...


class Connector(Protocol):
    platform: str

    async def run(self, session: Session) -> None:
        """Connect and serve until the connection is lost (return or raise) or cancelled.

        Raise FatalConnectorError for problems retrying cannot fix."""
        ...

    async def send(self, destination: Destination, reply: Reply) -> Sent | None:
        """Post a reply. Raise TransientSendError when a retry may succeed."""
        ...

    async def edit(self, sent: Sent, reply: Reply) -> None: ...

    async def close(self) -> None: ...


class Supervisor:
    """Runs one connector forever: reconnects with backoff, tracks health, logs sparingly."""

    def __init__(
        self,
        connector: Connector,
        emit: Emit,
        clock: Clock,
        backoff: Backoff | None = None,
        rng: random.Random | None = None,
        sleep: Callable[[float], object] = asyncio.sleep,
        accepting: Callable[[], bool] = lambda: True,
        admit: Callable[[Inbound, list[asyncio.Task[list[Reply]]] | None], Awaitable[bool]]
        | None = None,
        admit_soon: Callable[[Inbound, Callable[[bool], asyncio.Future[None] | None]], None]
        | None = None,
    ) -> None:
        self.connector = connector
        self._emit = emit
        self._admit = admit
        self._admit_soon = admit_soon
        self.clock = clock
        self.backoff = backoff or Backoff()
        self.rng = rng or random.Random()
        self._sleep = sleep
        self.health = Health(since=clock.monotonic())
        # Called after every change of state (serve.py: systemd's STATUS= follows at once).
        self.on_change: Callable[[], None] | None = None
        self._connected_at: float | None = None
        self._last_log = -1e9
        self._suppressed = 0
        self.ready_event = asyncio.Event()
        self.accepting = accepting

    @property
    def platform(self) -> str:
        return self.connector.platform

    # Session, as the connector sees us
    def emit(self, event: Inbound) -> asyncio.Task[list[Reply]] | None:
        return self._emit(event)

    async def admit(
        self, event: Inbound, work: list[asyncio.Task[list[Reply]]] | None = None
    ) -> bool:
        if self._admit is None:
            task = self._emit(event)
            if work is not None and task is not None:
                work.append(task)
            return True
        return await self._admit(event, work)

    def admit_soon(
        self, event: Inbound, on_claimed: Callable[[bool], asyncio.Future[None] | None]
    ) -> None:
        if self._admit_soon is None:
            self._emit(event)
            on_claimed(True)
            return
        self._admit_soon(event, on_claimed)

    def ready(self) -> None:
        self._connected_at = self.clock.monotonic()
        self.health.connects += 1
        self._set(State.READY, "")
        self.ready_event.set()
        log.info("%s connected", self.platform)

    def lost(self, reason: str) -> None:
        if self.health.state is State.READY:
            self._set(State.CONNECTING, reason)
            self.ready_event.clear()
            log.info(
                "%s connection lost (%s); the client library is reconnecting", self.platform, reason
            )

    def _set(self, state: State, reason: str) -> None:
        changed = (state, reason) != (self.health.state, self.health.reason)
        self.health.state, self.health.reason = state, reason
        self.health.since = self.clock.monotonic()
        if changed and self.on_change is not None:
            try:
                self.on_change()
            except Exception:  # telling systemd must never break the connection's loop
                log.exception("%s: reporting a state change failed", self.platform)

    async def run(self) -> None:
        attempt = 0
        while True:
            self._set(State.CONNECTING, "")
            self._connected_at = None
            try:
                await self.connector.run(self)
                reason = "connection closed"
            except asyncio.CancelledError:
                self._set(State.STOPPED, "")
                raise
            except FatalConnectorError as exc:
                self._set(State.FAILED, str(exc))
                log.error("%s stopped: %s", self.platform, exc)
                return
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}"
            self.ready_event.clear()
            self.health.failures += 1
            now = self.clock.monotonic()
            stable = (
                self._connected_at is not None
                and now - self._connected_at >= self.backoff.stable_after
            )
            attempt = 0 if stable else attempt + 1
            delay = self.backoff.delay(attempt, self.rng)
            self._set(State.BACKING_OFF, reason)
            self._log_retry(reason, delay, now)
            await self._sleep(delay)  # type: ignore[misc]

    def _log_retry(self, reason: str, delay: float, now: float) -> None:
        # During an outage: one line per 30 s with a count, not one per attempt.
        if now - self._last_log < 30.0:
            self._suppressed += 1
            return
        extra = f" ({self._suppressed} more since last report)" if self._suppressed else ""
        log.warning(
            "%s disconnected: %s; retrying in %.1f s%s", self.platform, reason, delay, extra
        )
        self._last_log, self._suppressed = now, 0
