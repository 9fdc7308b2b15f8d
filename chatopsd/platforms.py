"""The platform registry: every chat platform the daemon can connect, in one list.

Every connector has the same constructor shape: its config section, then keywords `clock`,
`prefix` and the ports it needs (`kv`), then its own tuning knobs with defaults.

Each entry names the config section that enables it (its pydantic model lives in config.py),
builds its connector from that section (importing the platform's library only then, so a
console-only daemon never loads slack-sdk, discord.py or aiohttp), probes it for `doctor`,
and says which optional capabilities it has. config.py, app.py and doctor.py read this list;
adding a platform is its connector modules plus one line here (and its section in Config).
The console is not here: it is no platform section, it is on when none is configured.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chatopsd.config import Config
    from chatopsd.connectors.base import Connector
    from chatopsd.core.ports import Clock, KeyValue
    from chatopsd.doctor import Result
    from chatopsd.httpclient import HttpTransport


@dataclass(frozen=True)
class Wiring:
    """What the composition root hands every connector besides its own section."""

    prefix: str
    clock: Clock
    kv: KeyValue


Build = Callable[[Any, Wiring], "Connector"]
Probe = Callable[["Config", "HttpTransport"], Awaitable[list["Result"]]]


@dataclass(frozen=True)
class Platform:
    name: str  # its config section's key, and Inbound.platform
    build: Build
    probe: Probe
    channel_admin: bool = False  # creates incident channels (the ChannelAdmin port)
    direct_messages: bool = False  # answers commands in DMs without the prefix
    topics: bool = False  # incident titles go into channel topics/headers


def _slack(section: Any, w: Wiring) -> Connector:
    from chatopsd.connectors.slack.client import SlackConnector

    return SlackConnector(section, clock=w.clock, prefix=w.prefix)


def _discord(section: Any, w: Wiring) -> Connector:
    from chatopsd.connectors.discord.client import DiscordConnector

    return DiscordConnector(section, clock=w.clock, prefix=w.prefix)


def _mattermost(section: Any, w: Wiring) -> Connector:
    from chatopsd.connectors.mattermost.client import MattermostConnector

    return MattermostConnector(section, clock=w.clock, kv=w.kv, prefix=w.prefix)


async def _probe_slack(cfg: Config, http: HttpTransport) -> list[Result]:
    from chatopsd.doctor import check_slack

    return await check_slack(cfg, http)


async def _probe_discord(cfg: Config, http: HttpTransport) -> list[Result]:
    from chatopsd.doctor import check_discord

    return await check_discord(cfg, http)


async def _probe_mattermost(cfg: Config, http: HttpTransport) -> list[Result]:
    from chatopsd.doctor import check_mattermost

    return await check_mattermost(cfg, http)


PLATFORMS: tuple[Platform, ...] = (
    Platform("slack", _slack, _probe_slack, channel_admin=True, direct_messages=True, topics=True),
    Platform("discord", _discord, _probe_discord, direct_messages=True),
    Platform(
        "mattermost",
        _mattermost,
        _probe_mattermost,
        channel_admin=True,
        direct_messages=True,
        topics=True,
    ),
)


def names() -> tuple[str, ...]:
    return tuple(p.name for p in PLATFORMS)


def configured(cfg: Config) -> list[tuple[Platform, Any]]:
    """The platforms whose section is present, with that section, in registry order."""
    found = []
    for platform in PLATFORMS:
        section = getattr(cfg, platform.name, None)
        if section is not None:
            found.append((platform, section))
    return found
