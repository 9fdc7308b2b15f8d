"""Slack user id -> name and email, through users.info, cached (bounded, with a TTL).

Roles and PagerDuty users are matched by email, so every actor is resolved; a failed lookup
leaves the actor as its bare id, marked unresolved (its reactions do not count), rather than
holding up the command.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from dataclasses import replace
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from chatopsd.core.identity import Profile
from chatopsd.core.messages import Actor
from chatopsd.core.ports import Clock

log = logging.getLogger("chatopsd.slack")


class UserCache:
    def __init__(
        self,
        web: AsyncWebClient,
        clock: Clock,
        *,
        size: int = 5000,
        ttl: float = 3600.0,
        timeout: float = 3.0,
    ) -> None:
        self.web, self.clock, self.size, self.ttl = web, clock, size, ttl
        self.timeout = timeout
        self._cache: OrderedDict[str, tuple[float, Actor]] = OrderedDict()
        # one users.info per user at a time: a burst from one person is one lookup
        self._inflight: dict[str, asyncio.Future[Actor]] = {}
        self.lookups = 0

    def cached(self, actor: Actor) -> Actor | None:
        """The actor as cached, or None when it has to be looked up (`resolve`)."""
        hit = self._cache.get(actor.id)
        if hit is None or self.clock.monotonic() - hit[0] >= self.ttl:
            return None
        self._cache.move_to_end(actor.id)
        return hit[1]

    async def resolve(self, actor: Actor) -> Actor:
        hit = self._cache.get(actor.id)
        now = self.clock.monotonic()
        if hit is not None and now - hit[0] < self.ttl:
            self._cache.move_to_end(actor.id)
            return hit[1]
        pending = self._inflight.get(actor.id)
        if pending is not None:
            await asyncio.wait([pending])  # our own cancellation still propagates
            failed = pending.cancelled() or pending.exception() is not None
            return replace(actor, resolved=False) if failed else pending.result()
        fut: asyncio.Future[Actor] = asyncio.get_running_loop().create_future()
        self._inflight[actor.id] = fut
        try:
            found = await self._lookup(actor, now)
            fut.set_result(found)
            return found
        except BaseException:
            fut.cancel()  # waiters fall back to the bare id
            raise
        finally:
            del self._inflight[actor.id]

    async def _lookup(self, actor: Actor, now: float) -> Actor:
        self.lookups += 1
        try:
            # a slow or rate-limited users.info must not hold a command up for long
            async with asyncio.timeout(self.timeout):
                response = await self.web.users_info(user=actor.id)
            user: Any = response.get("user")
        except (SlackApiError, OSError, TimeoutError) as exc:
            log.warning("users.info failed for %s: %s", actor.id, _why(exc))
            return replace(actor, resolved=False)  # not cached: the next event tries again
        if not isinstance(user, dict):
            return replace(actor, resolved=False)
        found = _actor(actor, user)
        self._cache[actor.id] = (now, found)
        self._cache.move_to_end(actor.id)
        while len(self._cache) > self.size:
            self._cache.popitem(last=False)
        return found


def _actor(actor: Actor, user: dict[str, Any]) -> Actor:
    profile = user.get("profile") if isinstance(user.get("profile"), dict) else {}
    assert isinstance(profile, dict)
    name = (
        profile.get("display_name")
        or profile.get("real_name")
        or user.get("real_name")
        or user.get("name")
        or actor.name
        or actor.id
    )
    email = profile.get("email")
    return Actor(
        id=actor.id,
        name=str(name),
        email=str(email).lower() if isinstance(email, str) and email else None,
        is_bot=bool(user.get("is_bot")) or actor.is_bot,
    )


def profile(user: dict[str, Any]) -> Profile:
    """A users.info or users.lookupByEmail user as the identity service sees it. Slack
    confirms a member's address before it shows on the profile: it is a verified one."""
    actor = _actor(Actor(str(user.get("id") or "")), user)
    return Profile(actor.id, actor.name, actor.email, actor.email is not None, actor.is_bot)


def _why(exc: BaseException) -> str:
    if isinstance(exc, SlackApiError):
        return str(exc.response.get("error") or exc.response.status_code)
    return f"{type(exc).__name__}: {exc}"
