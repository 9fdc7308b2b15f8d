"""Incident channels in Teams, through Microsoft Graph: `POST {graph_url}/teams/{team}/channels`.

The app needs the resource-specific permission `Channel.Create.Group` (in the app manifest,
consented by the team owner at install) and a Graph token of its own tenant (client
credentials, scope `https://graph.microsoft.com/.default`). Teams refuses a display name over
50 characters, so the name is cut to fit (one line, no control characters). A standard
channel is made: private and shared channels need SharePoint provisioning that can lag.

Posting into the new channel is the Bot Connector's job (create_conversation with the channel
id), once the bot is installed in the team. A refusal (403: the permission not granted) is
ChannelRefused with the reason, so the caller can fall back to a thread under the
announcement.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

import aiohttp
from yarl import URL

from chatopsd.connectors.teams.auth import TokenProvider
from chatopsd.core.capabilities import ChannelRefused
from chatopsd.core.errors import RateLimitedSend, TransientSendError
from chatopsd.core.limits import one_line
from chatopsd.core.ports import Clock
from chatopsd.core.retry import server_wait

log = logging.getLogger("chatopsd.teams.admin")

NAME_MAX = 50  # Graph: displayName "maximum length is 50 characters"
DESCRIPTION_MAX = 1024


class GraphChannels:
    def __init__(
        self,
        tokens: TokenProvider,
        graph_url: str,
        *,
        clock: Clock,
        http: aiohttp.ClientSession | None = None,
        timeout: float = 15.0,
    ) -> None:
        self.tokens = tokens
        self.base = graph_url.rstrip("/")
        self.clock = clock
        self._http = http
        self._own_http = http is None
        self.timeout = timeout

    async def create_channel(self, team_id: str, name: str, description: str = "") -> str:
        """A new standard channel in the team; its id (19:…@thread.tacv2)."""
        body: dict[str, Any] = {
            "displayName": one_line(name, NAME_MAX),
            "membershipType": "standard",
        }
        if description:
            body["description"] = one_line(description, DESCRIPTION_MAX)
        url = URL(f"{self.base}/teams/{quote(team_id, safe='')}/channels", encoded=True)
        token = await self.tokens.token()
        try:
            async with self._session().post(
                url,
                json=body,
                headers={"Authorization": f"Bearer {token}"},
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            ) as r:
                if r.status == 429:
                    raise RateLimitedSend(
                        "graph: channel creation rate limited",
                        retry_after=server_wait(r.headers, now=self.clock.now().timestamp()),
                    )
                if r.status >= 500:
                    raise TransientSendError(f"graph: channel creation answered HTTP {r.status}")
                found = await _json(r)
                if r.status >= 400:
                    raise ChannelRefused(_refusal(r.status, found, body["displayName"]))
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransientSendError(
                f"graph: channel creation failed ({type(exc).__name__})"
            ) from None
        channel = found.get("id")
        if not isinstance(channel, str) or not channel:
            raise ChannelRefused("Graph created a channel without an id")
        return channel

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(trust_env=True)
            self._own_http = True
        return self._http

    async def close(self) -> None:
        if self._own_http and self._http is not None:
            await self._http.close()
            self._http = None


async def _json(r: aiohttp.ClientResponse) -> dict[str, Any]:
    try:
        found = await r.json(content_type=None)
    except (ValueError, aiohttp.ClientError):
        return {}
    return found if isinstance(found, dict) else {}


def _refusal(status: int, found: dict[str, Any], name: str) -> str:
    raw = found.get("error")
    error: dict[str, Any] = raw if isinstance(raw, dict) else {}
    code = str(error.get("code") or "")[:60]
    message = str(error.get("message") or "")[:200]
    said = f": {message}" if message else ""
    if status == 403:
        return (
            "the bot may not create channels in this team (HTTP 403): the app needs the "
            f"Channel.Create.Group permission, consented at install{said}"
        )
    if status == 409 or code == "NameAlreadyExists":
        return f"a channel named {name} already exists"
    detail = f" {code}" if code else ""
    return f"Graph refused the channel {name} (HTTP {status}{detail}{said})"
