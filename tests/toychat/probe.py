"""`chatopsd doctor` for `[toychat]`: the room answers and accepts the token. Read-only."""

from __future__ import annotations

from chatopsd.checks import Result, token_hint
from chatopsd.httpclient import HttpTransport
from tests.fakes.toychat import SERVERS
from tests.toychat.config import ToyChatSection


async def probe(section: ToyChatSection, http: HttpTransport) -> list[Result]:
    server = SERVERS.get(section.room)
    if server is None:
        return [Result("toychat room", False, f"{section.room}: no such room")]
    if server.token != section.token.get_secret_value():
        return [Result("toychat token", False, token_hint("toychat", "token"))]
    return [Result("toychat token", True, f"{section.room} accepts the token")]
