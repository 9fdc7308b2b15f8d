"""Discord over the gateway: client.py (connection, sending), gateway.py, commands.py (slash
commands), events.py (pure translation), render.py (pure markup), config.py (the `[discord]`
section), probe.py (`chatopsd doctor`). See ARCHITECTURE.md and docs/discord.md.

Cheap to import: discord.py loads only when the connector is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chatopsd.connectors.discord.config import DiscordSection
from chatopsd.connectors.platform import Platform, Wiring
from chatopsd.core.capabilities import CHANNEL_TOPICS, DIRECT_MESSAGES, THREADS, Capability

if TYPE_CHECKING:
    from chatopsd.checks import Result
    from chatopsd.connectors.base import Connector
    from chatopsd.httpclient import HttpTransport


def _build(section: DiscordSection, wiring: Wiring) -> Connector:
    from chatopsd.connectors.discord.client import DiscordConnector

    return DiscordConnector(section, clock=wiring.clock, prefix=wiring.prefix)


async def _probe(
    section: DiscordSection, http: HttpTransport, uses: frozenset[Capability[Any]]
) -> list[Result]:
    from chatopsd.connectors.discord.probe import probe

    return await probe(section, http)


PLATFORM = Platform(
    "discord", DiscordSection, _build, _probe, (THREADS, DIRECT_MESSAGES, CHANNEL_TOPICS)
)
