"""Mattermost over its websocket and REST API: client.py (connection, sending), events.py
(pure translation), render.py (pure markup), admin.py (incident channels), config.py (the
`[mattermost]` section), probe.py (`chatopsd doctor`). See ARCHITECTURE.md and
docs/mattermost.md.

Cheap to import: aiohttp loads only when the connector is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chatopsd.connectors.mattermost.config import MattermostSection
from chatopsd.connectors.platform import Platform, Wiring
from chatopsd.core.capabilities import (
    CHANNEL_INVITES,
    CHANNEL_TOPICS,
    DIRECT_MESSAGES,
    INCIDENT_CHANNELS,
    MESSAGE_PINS,
    POSTED_ANSWERS,
    THREADS,
    USER_PROFILES,
    Capability,
)

if TYPE_CHECKING:
    from chatopsd.checks import Result
    from chatopsd.connectors.base import Connector
    from chatopsd.httpclient import HttpTransport


def _build(section: MattermostSection, wiring: Wiring) -> Connector:
    from chatopsd.connectors.mattermost.client import MattermostConnector

    return MattermostConnector(section, clock=wiring.clock, kv=wiring.kv, prefix=wiring.prefix)


async def _probe(
    section: MattermostSection, http: HttpTransport, uses: frozenset[Capability[Any]]
) -> list[Result]:
    from chatopsd.connectors.mattermost.probe import probe

    return await probe(section, http)


PLATFORM = Platform(
    "mattermost",
    MattermostSection,
    _build,
    _probe,
    (
        THREADS,
        INCIDENT_CHANNELS,
        CHANNEL_INVITES,
        MESSAGE_PINS,
        DIRECT_MESSAGES,
        CHANNEL_TOPICS,
        USER_PROFILES,
        POSTED_ANSWERS,
    ),
)
