"""The systemd notify protocol without libsystemd: READY, STATUS, WATCHDOG, RELOADING, STOPPING.

The protocol is one datagram of newline-separated KEY=VALUE lines to the AF_UNIX socket named by
$NOTIFY_SOCKET (a leading '@' means Linux's abstract namespace). Outside systemd the variable is
unset and every call is a cheap no-op, so the daemon runs the same way under a terminal.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Mapping

log = logging.getLogger("chatopsd.systemd")


def _address(raw: str) -> str | bytes:
    if raw.startswith("@"):
        return b"\0" + raw[1:].encode()  # abstract socket: no file, name starts with NUL
    return raw


class Notifier:
    """Sends notify messages; knows the watchdog interval systemd asked for."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        raw = env.get("NOTIFY_SOCKET", "")
        self.address: str | bytes | None = _address(raw) if raw else None
        self.watchdog_usec = 0
        usec, pid = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
        # WATCHDOG_PID names the process systemd expects pings from; a child must not ping.
        if usec.isdigit() and (not pid or pid == str(os.getpid())):
            self.watchdog_usec = int(usec)
        self._sock: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *lines: str) -> bool:
        """Send one datagram; False (and one debug line) if it could not be delivered.

        A lost notification must never take the daemon down: systemd will time out and say so."""
        if self.address is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto("\n".join(lines).encode(), self.address)
        except OSError as exc:
            log.debug("sd_notify %s failed: %s", lines[0].split("=")[0], exc)
            return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={text}")

    def reloading(self) -> bool:
        # MONOTONIC_USEC lets systemd >= 253 (Type=notify-reload) match this to the signal.
        now_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send("RELOADING=1", f"MONOTONIC_USEC={now_usec}")

    def stopping(self) -> bool:
        return self.send("STOPPING=1")

    def ping(self) -> bool:
        return self.send("WATCHDOG=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class Watchdog:
    """A task on the daemon's own loop that pings at half the watchdog interval.

    Because it runs on the loop it watches, a blocked loop means no ping, and systemd restarts
    the daemon. It also refuses to ping when `healthy()` says the daemon is wedged in a way the
    loop itself does not show (e.g. the database writer died), and it pushes STATUS= when the
    status text changes.
    """

    def __init__(
        self,
        notifier: Notifier,
        healthy: Callable[[], bool] = lambda: True,
        status: Callable[[], str] | None = None,
        status_every: float = 5.0,
        *,
        monotonic: Callable[[], float] | None = None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self.notifier = notifier
        self.healthy = healthy
        self.status = status
        self.status_every = status_every
        # the loop's clock and sleep unless a test drives them (an injected clock)
        self.monotonic, self.sleep = monotonic, sleep
        self.pings = 0
        self._last_status = ""
        self.task: asyncio.Task[None] | None = None

    @property
    def interval(self) -> float:
        """Seconds between pings: half the watchdog timeout (sd_watchdog_enabled's advice)."""
        return self.notifier.watchdog_usec / 2e6

    def start(self) -> None:
        if not self.notifier.enabled:
            return
        self.task = asyncio.get_running_loop().create_task(self._run(), name="systemd-watchdog")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
            self.task = None

    def ready(self) -> None:
        """READY=1 with the status as it is now (the next push_status sends only a change)."""
        text = self.status() if self.status is not None else ""
        self._last_status = text
        self.notifier.ready(text)

    def push_status(self) -> None:
        if self.status is None:
            return
        text = self.status()
        if text != self._last_status:
            self._last_status = text
            self.notifier.status(text)

    async def _run(self) -> None:
        now = self.monotonic or asyncio.get_running_loop().time
        step = self.interval if self.interval > 0 else self.status_every
        step = min(step, self.status_every)
        last_status = now()
        while True:
            before = now()
            await self.sleep(step)
            lag = now() - before - step
            if lag > max(1.0, step):
                # The loop was blocked; we are running again, so it is responsive now, but say so.
                log.warning("event loop was blocked for about %.1f s", lag)
            if self.interval > 0:
                if self.healthy():
                    self.notifier.ping()
                    self.pings += 1
                else:
                    log.error("watchdog: daemon unhealthy, not pinging systemd")
            if now() - last_status >= self.status_every:
                last_status = now()
                self.push_status()
