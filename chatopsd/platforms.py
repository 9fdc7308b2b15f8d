"""The platform registry: every chat platform the daemon can connect, one line each.

Each line is a platform package's `PLATFORM` (connectors/platform.py says what it holds). The
order is the order of `Config.platforms`, of the connectors and of `doctor`'s lines. config.py
composes one optional `[<name>]` section per entry; app.py builds the connectors of the
sections present; doctor.py runs their probes. Nothing else lists platforms.
The console is not here: it has no section that enables it, it is on when none is configured.
"""

from __future__ import annotations

from typing import Any

from chatopsd.connectors import discord, mattermost, slack, teams
from chatopsd.connectors.platform import Platform

PLATFORMS: tuple[Platform[Any], ...] = (
    slack.PLATFORM,
    discord.PLATFORM,
    mattermost.PLATFORM,
    teams.PLATFORM,
)
