"""Toy Chat, a platform package added by following ARCHITECTURE.md's "Add a platform" recipe,
for tests: config.py (the `[toychat]` section), events.py and render.py (pure translation),
client.py (the connector), probe.py (`chatopsd doctor`). Its platform is tests/fakes/toychat.py.

Nothing in chatopsd/ knows it: a test gives the daemon a platform list with PLATFORM in it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chatopsd.connectors.platform import Platform, Wiring
from chatopsd.core.capabilities import DIRECT_MESSAGES, THREADS, Capability
from tests.toychat.config import ToyChatSection

if TYPE_CHECKING:
    from chatopsd.checks import Result
    from chatopsd.connectors.base import Connector
    from chatopsd.httpclient import HttpTransport


def _build(section: ToyChatSection, wiring: Wiring) -> Connector:
    from tests.toychat.client import ToyChatConnector

    return ToyChatConnector(section, clock=wiring.clock, prefix=wiring.prefix)


async def _probe(
    section: ToyChatSection, http: HttpTransport, uses: frozenset[Capability[Any]]
) -> list[Result]:
    from tests.toychat.probe import probe

    return await probe(section, http)


PLATFORM = Platform("toychat", ToyChatSection, _build, _probe, (THREADS, DIRECT_MESSAGES))
