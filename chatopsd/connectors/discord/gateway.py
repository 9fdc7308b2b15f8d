"""The gateway side of the Discord client: our reconnect loop, zombie watchdog, parser guard.

`GatewayClient` is a `discord.Client` whose `connect` keeps discord.py's protocol handling
(HELLO, IDENTIFY/RESUME, op 7, op 9, heartbeats) but owns the policy around it: a capped,
jittered backoff, RESUME kept across failed reconnects, no tight loop when a connection closes
before it is up. discord.py internals used here are named where they are read.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import discord
from discord.gateway import DiscordWebSocket, ReconnectWebSocket

from chatopsd.core.retry import Backoff

log = logging.getLogger("chatopsd.discord")

RECONNECT_CAP = 60.0  # discord.py's own backoff grows to 1024 s; an outage must not cost that
RECONNECT = Backoff(base=1.0, cap=RECONNECT_CAP)
_RETRIABLE = (
    OSError,
    discord.HTTPException,
    discord.GatewayNotFound,
    discord.ConnectionClosed,
    aiohttp.ClientError,
    asyncio.TimeoutError,
)


class GatewayClient(discord.Client):
    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        _guard_parsers(self._connection.parsers)

    async def connect(self, *, reconnect: bool = True) -> None:
        """discord.py's gateway loop, with a capped backoff and RESUME kept across failures.

        Same as `Client.connect` except: reconnect delays are full-jitter exponential capped at
        RECONNECT_CAP (discord.py's grow to 17 minutes), one log line per failure instead of a
        traceback, and a failed first connect does not crash on a missing websocket."""
        attempt = 0
        params: dict[str, Any] = {"initial": True, "shard_id": self.shard_id}
        while not self.is_closed():
            established = False
            try:
                coro = DiscordWebSocket.from_client(self, **params)
                self.ws = await asyncio.wait_for(coro, timeout=60.0)
                params["initial"] = False
                established, attempt = True, 0
                while True:
                    await self.ws.poll_event()
            except ReconnectWebSocket as exc:  # op 7, op 9, resumable closes, silence
                self.dispatch("disconnect")
                if self.ws is not None:
                    params.update(
                        sequence=self.ws.sequence, resume=exc.resume, session=self.ws.session_id
                    )
                    if exc.resume:
                        params["gateway"] = self.ws.gateway
                if not established:  # closed before it was up: no tight reconnect loop
                    attempt += 1
                    await asyncio.sleep(self._backoff(attempt, exc))
                continue
            except _RETRIABLE as exc:
                self.dispatch("disconnect")
                if self.is_closed():
                    return
                if isinstance(exc, discord.ConnectionClosed):
                    if exc.code == 4014:
                        raise discord.PrivilegedIntentsRequired(exc.shard_id) from None
                    if exc.code != 1000:
                        await self.close()
                        raise
                if not reconnect:
                    await self.close()
                    raise
                attempt += 1
                await asyncio.sleep(self._backoff(attempt, exc))
                if self.ws is not None and self.ws.session_id is not None:
                    # Always try to RESUME: if it is too late, Discord answers op 9.
                    params.update(
                        sequence=self.ws.sequence,
                        gateway=self.ws.gateway,
                        resume=True,
                        session=self.ws.session_id,
                    )

    @staticmethod
    def _backoff(attempt: int, exc: BaseException) -> float:
        delay = RECONNECT.delay(attempt)
        log.warning(
            "discord gateway lost (%s: %s); reconnecting in %.1f s", type(exc).__name__, exc, delay
        )
        return delay


def _guard_parsers(parsers: dict[str, Callable[[Any], None]]) -> None:
    """A malformed dispatch payload must not tear down the connection: log it and drop it.

    discord.py's parsers index payloads directly, and an exception there would end the
    connection (and its resumable session) for one bad event."""

    def guarded(event: str, parse: Callable[[Any], None]) -> Callable[[Any], None]:
        def run(data: Any) -> None:
            try:
                parse(data)
            except Exception as exc:
                log.warning("dropped malformed %s payload: %s: %s", event, type(exc).__name__, exc)

        return run

    for event, parse in list(parsers.items()):
        parsers[event] = guarded(event, parse)


ACK_GRACE = 1.5  # heartbeat intervals without an ACK before the connection counts as dead


async def watch_acks(client: discord.Client) -> None:
    """Close a connection whose heartbeats go unacknowledged, so discord.py RESUMEs.

    discord.py itself only notices silence (nothing at all received for heartbeat_timeout);
    Discord's rule is stricter: no ACK before the next heartbeat means a zombie connection,
    even if events still trickle in. This reads discord.py's keep-alive bookkeeping."""
    while True:
        ws = client.ws
        keep_alive = ws._keep_alive if ws is not None else None
        interval = keep_alive.interval if keep_alive is not None else None
        if keep_alive is None or not interval:
            await asyncio.sleep(0.5)
            continue
        silent = time.perf_counter() - keep_alive._last_ack
        if silent > ACK_GRACE * interval and ws is not None and not ws.socket.closed:
            log.warning("no heartbeat ACK for %.1f s: zombie connection, reconnecting", silent)
            keep_alive.stop()
            await ws.close(4000)
        await asyncio.sleep(max(0.05, interval / 4))
