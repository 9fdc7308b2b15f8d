"""The Bot Connector REST API (v3), on aiohttp: what the bot says in Teams.

Calls: send (`POST /v3/conversations/{id}/activities`), reply (`POST …/activities/{activityId}`),
update (`PUT …/activities/{activityId}`), delete (`DELETE …/activities/{activityId}`), create a
conversation (`POST /v3/conversations`: a new channel thread, or a 1:1 chat for a DM), typing.
Every call goes to a conversation's serviceUrl, which Teams gives in each activity.

The bearer token is only ever sent to a serviceUrl whose host is in `teams.service_url_hosts`
(default `smba.trafficmanager.net`), over https (http only on loopback, for tests). Anything
else is refused before the token is even fetched: a serviceUrl is learned from authenticated
activities only, but this is the one place that decides where the token may go.

Teams' limits per bot and conversation thread (7 per second, 8 per 2 s, 60 per 30 s, 1800 per
hour) are kept by `ThreadLimiter`, which spaces the calls instead of provoking 429s. A 429, 412,
502 or 504 is retried (bounded, full-jitter backoff from core/retry, `Retry-After` honoured; a
server asking for a longer wait than `max_wait` is not retried here but raised, for the outbox
to retry later); a 401 fetches a new token once. A 413 `MessageSizeTooBig` and other refusals
are ConnectorError with the status and Teams' error code.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
from yarl import URL

from chatopsd.connectors.teams.auth import TokenProvider
from chatopsd.connectors.teams.config import is_loopback
from chatopsd.core.errors import RateLimitedSend, TransientSendError
from chatopsd.core.ports import Clock
from chatopsd.core.retry import Backoff, RetryPolicy, retrying, server_wait

log = logging.getLogger("chatopsd.teams.client")

Json = dict[str, Any]
# Per bot per thread (msteams-docs rate-limit.md): (calls, seconds).
THREAD_LIMITS: tuple[tuple[int, float], ...] = ((7, 1.0), (8, 2.0), (60, 30.0), (1800, 3600.0))
RETRIED = frozenset({412, 429, 502, 504})


class ConnectorError(Exception):
    """The Connector refused a call (4xx other than 401/412/429, or a retried status after
    the last attempt is a TransientSendError instead)."""

    def __init__(self, message: str, status: int, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class UntrustedServiceUrl(ValueError):
    """A serviceUrl whose host may not receive the bot's token."""


@dataclass(frozen=True, slots=True)
class Created:
    """A conversation made by create_conversation, and the activity posted with it."""

    conversation_id: str
    activity_id: str | None
    service_url: str | None


class ThreadLimiter:
    """Spaces calls so no conversation thread sees more than Teams allows in any window.

    A call reserves its slot at once (so concurrent calls queue in order) and waits until
    then. Pure arithmetic on the injected monotonic clock; the wait is the injected sleep."""

    def __init__(
        self,
        clock: Clock,
        sleep: Callable[[float], Awaitable[object]],
        limits: Sequence[tuple[int, float]] = THREAD_LIMITS,
    ) -> None:
        self.clock = clock
        self._sleep = sleep
        self.limits = tuple(limits)
        self._span = max(seconds for _count, seconds in self.limits)
        self._sent: dict[str, collections.deque[float]] = {}

    def reserve(self, key: str) -> float:
        """The time (monotonic) at which the next call for `key` may go, now booked."""
        now = self.clock.monotonic()
        times = self._sent.setdefault(key, collections.deque())
        while times and times[0] <= now - self._span:
            times.popleft()
        at = now
        for count, seconds in self.limits:
            if len(times) >= count:
                # The call `count` back must have left the window by then.
                at = max(at, times[-count] + seconds)
        times.append(at)
        if len(self._sent) > 10_000:  # forget idle threads
            for stale in [k for k, v in self._sent.items() if not v or v[-1] <= now - self._span]:
                del self._sent[stale]
        return at

    async def wait(self, key: str) -> None:
        delay = self.reserve(key) - self.clock.monotonic()
        if delay > 0:
            await self._sleep(delay)


class ConnectorClient:
    def __init__(
        self,
        tokens: TokenProvider,
        *,
        service_url_hosts: Sequence[str],
        clock: Clock,
        http: aiohttp.ClientSession | None = None,
        sleep: Callable[[float], Awaitable[object]] | None = None,
        attempts: int = 4,
        max_wait: float = 30.0,
        timeout: float = 15.0,
        rng: random.Random | None = None,
    ) -> None:
        self.tokens = tokens
        self.hosts = frozenset(h.lower() for h in service_url_hosts)
        self.clock = clock
        self._http = http
        self._own_http = http is None
        self._sleep = sleep or asyncio.sleep
        self.policy = RetryPolicy(attempts, Backoff(base=1.0, cap=max_wait), max_wait)
        self.max_wait = max_wait
        self.timeout = timeout
        self._rng = rng
        self.limiter = ThreadLimiter(clock, self._sleep)

    # -- the calls ---------------------------------------------------------------------------

    async def send(self, service_url: str, conversation_id: str, activity: Json) -> str | None:
        """Post into a conversation (or a channel thread); the new activity's id."""
        found = await self._call(
            "POST",
            service_url,
            _conversation(conversation_id) + "/activities",
            activity,
            thread=conversation_id,
        )
        return _id(found)

    async def reply(
        self, service_url: str, conversation_id: str, activity_id: str, activity: Json
    ) -> str | None:
        """Answer an activity (in a channel: in its thread); the new activity's id."""
        path = f"{_conversation(conversation_id)}/activities/{quote(activity_id, safe='')}"
        body = dict(activity)
        body.setdefault("replyToId", activity_id)
        found = await self._call("POST", service_url, path, body, thread=conversation_id)
        return _id(found)

    async def update(
        self, service_url: str, conversation_id: str, activity_id: str, activity: Json
    ) -> None:
        path = f"{_conversation(conversation_id)}/activities/{quote(activity_id, safe='')}"
        body = dict(activity)
        body.setdefault("id", activity_id)
        await self._call("PUT", service_url, path, body, thread=conversation_id)

    async def delete(self, service_url: str, conversation_id: str, activity_id: str) -> None:
        path = f"{_conversation(conversation_id)}/activities/{quote(activity_id, safe='')}"
        await self._call("DELETE", service_url, path, None, thread=conversation_id)

    async def typing(self, service_url: str, conversation_id: str) -> None:
        await self.send(service_url, conversation_id, {"type": "typing"})

    async def create_conversation(
        self,
        service_url: str,
        *,
        tenant_id: str,
        bot_id: str,
        channel: str | None = None,
        member: str | None = None,
        activity: Json | None = None,
    ) -> Created:
        """A new thread in a Teams channel (`channel`: 19:…@thread.tacv2, the bot installed in
        its team), or the 1:1 chat with `member` (a 29:… user id): proactive posts and DMs."""
        if (channel is None) == (member is None):
            raise ValueError("create_conversation needs a channel or a member, not both")
        body: Json = {"bot": {"id": bot_id}, "tenantId": tenant_id}
        if channel is not None:
            body["isGroup"] = True
            body["channelData"] = {"channel": {"id": channel}, "tenant": {"id": tenant_id}}
        else:
            body["isGroup"] = False
            body["members"] = [{"id": member}]
            body["channelData"] = {"tenant": {"id": tenant_id}}
        if activity is not None:
            body["activity"] = activity
        found = await self._call(
            "POST", service_url, "/v3/conversations", body, thread=channel or f"dm:{member}"
        )
        if not isinstance(found, dict) or not isinstance(found.get("id"), str):
            raise ConnectorError("the Connector created a conversation without an id", 200)
        return Created(
            conversation_id=found["id"],
            activity_id=_id({"id": found.get("activityId")}),
            service_url=found.get("serviceUrl")
            if isinstance(found.get("serviceUrl"), str)
            else None,
        )

    # -- plumbing ----------------------------------------------------------------------------

    def check_service_url(self, service_url: str) -> str:
        """The serviceUrl without its trailing slash, if the token may go there."""
        parts = urlsplit(service_url)
        host = (parts.hostname or "").lower()
        secure = parts.scheme == "https" or (parts.scheme == "http" and is_loopback(host))
        if not secure or host not in self.hosts or parts.query or parts.fragment:
            raise UntrustedServiceUrl(
                f"refusing to send the bot's token to {parts.scheme}://{host}: not an https "
                "serviceUrl on a host listed in teams.service_url_hosts"
            )
        return service_url.rstrip("/")

    async def _call(
        self, method: str, service_url: str, path: str, body: Json | None, *, thread: str
    ) -> Any:
        base = self.check_service_url(service_url)
        # Conversation ids hold ':', '@' and ';': quoted here, and not re-quoted by yarl.
        url = URL(base + path, encoded=True)
        # Compact, non-ASCII as is: Teams counts a message's size on its text.
        payload = (
            None
            if body is None
            else json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        )
        headers = {} if body is None else {"Content-Type": "application/json; charset=utf-8"}
        refreshed = False

        async def attempt() -> Any:
            nonlocal refreshed
            await self.limiter.wait(thread)
            token = await self.tokens.token()
            try:
                async with self._session().request(
                    method,
                    url,
                    data=payload,
                    headers=headers | {"Authorization": f"Bearer {token}"},
                    timeout=aiohttp.ClientTimeout(total=self.timeout),
                ) as r:
                    if r.status == 401 and not refreshed:
                        refreshed = True
                        self.tokens.invalidate()  # revoked or rotated: one fresh token
                        raise TransientSendError(f"teams {method}: HTTP 401", retry_after=0.0)
                    if r.status in RETRIED:
                        wait = server_wait(r.headers, now=self.clock.now().timestamp())
                        error = RateLimitedSend if r.status == 429 else TransientSendError
                        raise error(
                            f"teams {method} {_what(path)}: HTTP {r.status}", retry_after=wait
                        )
                    if r.status >= 500:
                        raise TransientSendError(f"teams {method} {_what(path)}: HTTP {r.status}")
                    if r.status >= 400:
                        code, message = await _error(r)
                        raise ConnectorError(
                            f"teams refused {method} {_what(path)}: HTTP {r.status}"
                            + (f" {code}" if code else "")
                            + (f": {message}" if message else ""),
                            r.status,
                            code,
                        )
                    if r.status == 204 or method == "DELETE":
                        return None
                    try:
                        return await r.json(content_type=None)
                    except ValueError:
                        return None
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise TransientSendError(
                    f"teams {method} {_what(path)}: {type(exc).__name__}"
                ) from None

        def worth_retrying(exc: TransientSendError) -> bool:
            # A wait longer than we may spend here goes back to the caller (the outbox).
            return exc.retry_after is None or exc.retry_after <= self.max_wait

        def on_retry(attempt_no: int, exc: TransientSendError, wait: float) -> None:
            log.info("teams: %s; try %d in %.1f s", exc, attempt_no + 1, wait)

        return await retrying(
            attempt,
            self.policy,
            retry_on=worth_retrying,
            on_retry=on_retry,
            sleep=self._sleep,
            rng=self._rng,
        )

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(trust_env=True)
            self._own_http = True
        return self._http

    async def close(self) -> None:
        if self._own_http and self._http is not None:
            await self._http.close()
            self._http = None


def _conversation(conversation_id: str) -> str:
    return f"/v3/conversations/{quote(conversation_id, safe='')}"


def _what(path: str) -> str:
    """The call's path for a log line, without ids (which say who talks to whom)."""
    parts = path.split("/")
    return "/".join(p if p in ("v3", "conversations", "activities", "") else "…" for p in parts)


def _id(found: Any) -> str | None:
    value = found.get("id") if isinstance(found, dict) else None
    return value if isinstance(value, str) and value else None


async def _error(r: aiohttp.ClientResponse) -> tuple[str, str]:
    """(code, message) of the Connector's ErrorResponse, empty if it is not one."""
    try:
        body = await r.json(content_type=None)
    except (ValueError, aiohttp.ClientError):
        return "", ""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return "", ""
    return str(error.get("code") or "")[:80], str(error.get("message") or "")[:200]
