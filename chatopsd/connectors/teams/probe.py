"""`chatopsd doctor` for `[teams]`, over the daemon's HTTP transport, read-only:

teams token     an Entra client-credentials token for the Bot Connector from the bot's
                own tenant (app id, tenant and teams_app_password right);
teams keys      the Bot Framework's OpenID metadata and signing keys reachable, and how many
                are endorsed for the allowed channels;
teams relay     the listener handshake with the Listen key (the control channel is opened
                and closed at once: no request is served by doctor);
teams listener  whether a listener is connected right now, asked the way the Bot Service
                would: an unsigned POST to the messaging endpoint. The relay answers 502 or
                503 itself when no listener is connected ("no listener"); a running chatopsd
                answers 401 through the relay (with a `Via` header). Only then is it ✓.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from chatopsd.checks import TIMEOUT, Result, token_hint, why
from chatopsd.connectors.teams.auth import BotFrameworkAuth, KeysUnavailable, TokenProvider
from chatopsd.connectors.teams.config import TeamsSection
from chatopsd.connectors.teams.relay import RelayListener, RelayResponse
from chatopsd.core.errors import FatalConnectorError, TransientSendError
from chatopsd.httpclient import HttpTransport


async def probe(section: TeamsSection, http: HttpTransport) -> list[Result]:
    session = http.session()
    return [
        await _token(section, http, session),
        await _keys(section, http, session),
        await _relay(section, http, session),
        await _listener(section, session),
    ]


async def _token(section: TeamsSection, http: HttpTransport, session: Any) -> Result:
    name = "teams token"
    tokens = TokenProvider(section, section.bot_scope, clock=http.clock, http=session)
    try:
        await tokens.token()
    except FatalConnectorError as exc:
        return Result(name, False, f"{exc}; {token_hint('teams', 'app_password')}")
    except TransientSendError as exc:
        return Result(name, False, str(exc))
    return Result(name, True, f"a Bot Connector token from tenant {section.tenant_id}")


async def _keys(section: TeamsSection, http: HttpTransport, session: Any) -> Result:
    name = "teams keys"
    auth = BotFrameworkAuth(section, clock=http.clock, http=session)
    try:
        count = await auth.prefetch()
    except KeysUnavailable as exc:
        return Result(name, False, f"{section.openid_url}: {exc}")
    endorsed = auth.endorsed(section.allowed_channel_ids)
    if not endorsed:
        return Result(
            name,
            False,
            f"{count} signing keys, none endorsed for {', '.join(section.allowed_channel_ids)}",
        )
    return Result(name, True, f"{count} signing keys, {endorsed} endorsed for the channels")


async def _relay(section: TeamsSection, http: HttpTransport, session: Any) -> Result:
    name = "teams relay"

    async def nothing(_: object) -> RelayResponse:
        return RelayResponse(404)

    listener = RelayListener(section, nothing, clock=http.clock, http=session)
    try:
        async with asyncio.timeout(TIMEOUT):
            await listener.handshake()
    except FatalConnectorError as exc:
        return Result(name, False, f"{exc}; {token_hint('teams', 'relay_key')}")
    except (OSError, TimeoutError, aiohttp.ClientError) as exc:
        return Result(name, False, f"{section.relay_namespace}: {why(exc)}")
    finally:
        await listener.close()
    return Result(
        name, True, f"the key {section.relay_key_name} may listen on {section.relay_path}"
    )


def sender_url(section: TeamsSection) -> str:
    """The messaging endpoint as the Bot Service calls it (a test relay: its http twin)."""
    if section.relay_url is None:
        return section.endpoint_url
    parts = urlsplit(section.relay_url)
    scheme = "https" if parts.scheme == "wss" else "http"
    return urlunsplit((scheme, parts.netloc, section.endpoint_target, "", ""))


async def _listener(section: TeamsSection, session: Any) -> Result:
    name = "teams listener"
    url = sender_url(section)
    try:
        async with session.post(
            url,
            data=b"{}",
            headers={"Content-Type": "application/json"},
            timeout=aiohttp.ClientTimeout(total=TIMEOUT),
        ) as r:
            status, via = r.status, r.headers.get("Via")
    except (OSError, TimeoutError, aiohttp.ClientError) as exc:
        return Result(name, False, f"{url}: {why(exc)}")
    if status in (502, 503) and not via:
        return Result(
            name, False, f"no listener: the relay answers HTTP {status} (is chatopsd running?)"
        )
    if status == 401 and via:
        return Result(
            name, True, "a listener answers (HTTP 401 to an unsigned request, through the relay)"
        )
    where = "through the relay" if via else "from the relay itself"
    return Result(name, False, f"HTTP {status} {where} to an unsigned request (expected 401)")
