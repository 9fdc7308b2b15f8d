"""Mattermost's incident channels, invites and pins (core/capabilities), over its REST API.

`create_channel` makes a public channel in the first watched team (mattermost.teams, else the
bot's first team) and adds it to the watched set, so its posts are caught up after an outage
like any other; `invite` adds members one by one (the endpoint takes one user); `pin` pins a
post. HTTP 403 and "name taken" become ChannelRefused with the reason. There is no outbox
behind these calls, so they retry here (core/retry): a 429 always (the server did not act on
it), a 5xx or network error only for invite and pin (a create may have happened).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any, TypeVar

from chatopsd.connectors.mattermost.config import MattermostSection
from chatopsd.connectors.mattermost.render import inline
from chatopsd.core.capabilities import ChannelRefused
from chatopsd.core.errors import RateLimitedSend
from chatopsd.core.limits import one_line, rendered_line
from chatopsd.core.messages import Sent
from chatopsd.core.retry import Backoff, RetryPolicy, retrying

T = TypeVar("T")

# What Mattermost answers (HTTP 400) when a channel name is already used in the team.
NAME_TAKEN = "store.sql_channel.save_channel.exists.app_error"
# Mattermost user ids: 26 lowercase letters and digits; anything else is taken as a username.
USER_ID = re.compile(r"[a-z0-9]{26}")


class MattermostHTTPError(Exception):
    """A 4xx answer (other than 401/429): the request itself was refused."""

    def __init__(self, text: str, status: int, error_id: str, message: str) -> None:
        super().__init__(text)
        self.status = status
        self.error_id = error_id
        self.message = message


class ChannelCalls:
    """Incident channels, invites and pins for the Mattermost connector, over its REST call."""

    cfg: MattermostSection
    _cursors: dict[str, int]
    _home_team: str | None
    admin_attempts: int  # tries of a call answered with HTTP 429
    admin_max_wait: float  # longest Retry-After honoured between those tries

    async def _api(self, method: str, path: str, **kw: Any) -> Any:
        raise NotImplementedError

    # -- incident channels, invites, pins ---------------------------------------------------

    async def create_channel(self, name: str, topic: str) -> str:
        team = await self._create_team()
        body = {
            "team_id": team,
            "name": name,
            # Mattermost's limits: 64, 250 and 1024 characters. The title is user text: one
            # line, no control characters; the header is markdown, so made inert there.
            "display_name": one_line(topic, 64),
            "purpose": one_line(topic, 250),
            "header": rendered_line(topic, 1024, inline),
            "type": "O",
        }
        try:
            # Only a 429 is retried: after a 5xx or a timeout the channel may exist already.
            channel = await self._admin(
                lambda: self._api("POST", "/channels", json=body), retry_5xx=False
            )
        except MattermostHTTPError as exc:
            if exc.error_id == NAME_TAKEN:
                raise ChannelRefused(f"a channel named {name} already exists") from None
            if exc.status == 403:
                raise ChannelRefused(
                    "the bot may not create channels (HTTP 403: give it the "
                    f"create_public_channel permission): {exc.message}"
                ) from None
            raise ChannelRefused(
                f"Mattermost refused the channel {name} (HTTP {exc.status}: {exc.message})"
            ) from None
        cid = str(channel["id"])
        # Watched from now on: a post there is caught up after an outage like any other.
        self._cursors.setdefault(cid, int(channel.get("create_at", 0) or 0))
        return cid

    async def invite(self, channel: str, user_ids: Sequence[str]) -> None:
        refused: list[str] = []
        for user in user_ids:
            try:
                uid = await self._user_id(user)
                add = partial(
                    self._api, "POST", f"/channels/{channel}/members", json={"user_id": uid}
                )
                await self._admin(add)
            except MattermostHTTPError as exc:
                refused.append(f"{user} (HTTP {exc.status}: {exc.message})")
        if refused:
            raise ChannelRefused(f"could not add {', '.join(refused)} to the channel")

    async def pin(self, sent: Sent) -> None:
        try:
            await self._admin(lambda: self._api("POST", f"/posts/{sent.message_id}/pin"))
        except MattermostHTTPError as exc:
            raise ChannelRefused(
                f"Mattermost refused to pin the post (HTTP {exc.status}: {exc.message})"
            ) from None

    async def _user_id(self, user: str) -> str:
        """A user id as is; a username (as typed in a command) looked up."""
        if USER_ID.fullmatch(user):
            return user
        found = await self._admin(lambda: self._api("GET", f"/users/username/{user}"))
        return str(found["id"])

    async def _create_team(self) -> str:
        """The first of mattermost.teams the bot is in; without that setting, its first team."""
        if self._home_team is None:
            teams = await self._admin(lambda: self._api("GET", "/users/me/teams"))
            wanted_teams: list[str | None] = [*self.cfg.teams] or [None]
            for wanted in wanted_teams:
                match = [t for t in teams if wanted is None or wanted in (t["id"], t["name"])]
                if match:
                    self._home_team = str(match[0]["id"])
                    break
            else:
                raise ChannelRefused(
                    "the bot is in no team to create channels in (see mattermost.teams)"
                )
        return self._home_team

    async def _admin(self, call: Callable[[], Awaitable[T]], *, retry_5xx: bool = True) -> T:
        """A channel-admin call has no outbox behind it: retry a 429 (honouring Retry-After)
        and, where a repeat is harmless, a 5xx or network error, a few times."""
        policy = RetryPolicy(
            self.admin_attempts, Backoff(base=0.5, cap=self.admin_max_wait), self.admin_max_wait
        )
        return await retrying(
            call, policy, retry_on=lambda exc: isinstance(exc, RateLimitedSend) or retry_5xx
        )
