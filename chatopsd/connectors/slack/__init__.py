"""Slack over Socket Mode: client.py (connection, sending), events.py (pure translation),
render.py (pure markup), admin.py (incident channels), users.py (who is who), config.py (the
`[slack]` section), probe.py (`chatopsd doctor`). See ARCHITECTURE.md and docs/slack.md.

Cheap to import: slack-sdk loads only when the connector is built or probed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chatopsd.connectors.platform import Platform, Wiring
from chatopsd.connectors.slack.config import SlackSection
from chatopsd.core.capabilities import (
    CHANNEL_INVITES,
    CHANNEL_TOPICS,
    DIRECT_MESSAGES,
    INCIDENT_CHANNELS,
    MESSAGE_PINS,
    POSTED_ANSWERS,
    THREADS,
    USER_GROUPS,
    USER_PROFILES,
    Capability,
)

if TYPE_CHECKING:
    from chatopsd.checks import Result
    from chatopsd.connectors.base import Connector
    from chatopsd.httpclient import HttpTransport


def _build(section: SlackSection, wiring: Wiring) -> Connector:
    from chatopsd.connectors.slack.client import SlackConnector

    return SlackConnector(section, clock=wiring.clock, prefix=wiring.prefix)


async def _probe(
    section: SlackSection, http: HttpTransport, uses: frozenset[Capability[Any]]
) -> list[Result]:
    from chatopsd.connectors.slack.probe import probe

    return await probe(section, http, uses)


PLATFORM = Platform(
    "slack",
    SlackSection,
    _build,
    _probe,
    (
        THREADS,
        INCIDENT_CHANNELS,
        CHANNEL_INVITES,
        MESSAGE_PINS,
        DIRECT_MESSAGES,
        CHANNEL_TOPICS,
        USER_GROUPS,
        USER_PROFILES,
        POSTED_ANSWERS,
    ),
)
