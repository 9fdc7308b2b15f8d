"""The application commands we register, and an idempotent sync.

Each command takes one optional free-text option, `args`, holding what would follow the
command after `!`: `/ic args:page "Jane Doe"` is `!ic page "Jane Doe"`. Sync compares what is
registered with what we want and writes only when they differ, so reconnects and restarts do
not re-register anything (Discord rate-limits command writes hard).
"""

from __future__ import annotations

import logging
from typing import Any

from discord.http import HTTPClient, Route

log = logging.getLogger("chatopsd.discord")

_STRING = 3
_CHAT_INPUT = 1

COMMANDS: tuple[tuple[str, str], ...] = (
    ("ic", "Incident commander: who is on call, page, hand over"),
    ("status", "Service status and stalking"),
    ("incident", "Open, update and close incidents"),
)


def wanted() -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "description": description,
            "type": _CHAT_INPUT,
            "options": [
                {
                    "type": _STRING,
                    "name": "args",
                    "description": f"what follows !{name}, e.g. help",
                    "required": False,
                }
            ],
        }
        for name, description in COMMANDS
    ]


def normalize(commands: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """The parts of a command we set, in a comparable form (Discord adds ids, versions...)."""
    out = []
    for c in commands:
        options = tuple(
            (o.get("type"), o.get("name"), o.get("description", ""), bool(o.get("required")))
            for o in c.get("options") or ()
        )
        out.append((c.get("type", _CHAT_INPUT), c.get("name"), c.get("description", ""), options))
    return sorted(out, key=lambda t: str(t[1]))


async def sync(http: HTTPClient, application_id: int, guild_id: int | None) -> bool:
    """Make the registered commands match `wanted()`; True when something was written."""
    if guild_id is None:
        path = "/applications/{application_id}/commands"
        params: dict[str, Any] = {"application_id": application_id}
    else:
        path = "/applications/{application_id}/guilds/{guild_id}/commands"
        params = {"application_id": application_id, "guild_id": guild_id}
    current = await http.request(Route("GET", path, **params))
    want = wanted()
    if isinstance(current, list) and normalize(current) == normalize(want):
        log.debug("application commands already registered (guild %s)", guild_id or "global")
        return False
    await http.request(Route("PUT", path, **params), json=want)
    log.info("registered slash commands /ic /status /incident (guild %s)", guild_id or "global")
    return True
