"""The Microsoft Teams connector, without an inbound port: Azure Relay Hybrid Connections carry
the Bot Service's HTTP requests to an outbound websocket (relay.py); the Bot Framework token is
checked here (auth.py); answers go through the Bot Connector REST API (client.py). events.py
and render.py are pure translation; inbound.py is the per-request pipeline; connector.py runs
them for the daemon; probe.py is `chatopsd doctor`'s check, manifest.py the Teams app package.
See docs/teams.md and ARCHITECTURE.md.

Cheap to import: aiohttp and PyJWT load only when the connector is built or probed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chatopsd.connectors.platform import Platform, Wiring
from chatopsd.connectors.teams.config import TeamsSection
from chatopsd.core.capabilities import DIRECT_MESSAGES, INCIDENT_CHANNELS, THREADS, Capability

if TYPE_CHECKING:
    from chatopsd.checks import Result
    from chatopsd.connectors.base import Connector
    from chatopsd.httpclient import HttpTransport


def _build(section: TeamsSection, wiring: Wiring) -> Connector:
    from chatopsd.connectors.teams.connector import TeamsConnector

    # Conversation references are shared: any instance may have to post where another heard.
    kv = wiring.shared if wiring.shared is not None else wiring.kv
    return TeamsConnector(section, clock=wiring.clock, kv=kv, prefix=wiring.prefix)


async def _probe(
    section: TeamsSection, http: HttpTransport, uses: frozenset[Capability[Any]]
) -> list[Result]:
    from chatopsd.connectors.teams.probe import probe

    return await probe(section, http)


PLATFORM = Platform(
    "teams", TeamsSection, _build, _probe, (THREADS, INCIDENT_CHANNELS, DIRECT_MESSAGES)
)
