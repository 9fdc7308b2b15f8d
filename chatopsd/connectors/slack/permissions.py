"""What the Slack app must be granted, derived from what the connector does.

- `METHODS`: every Web API method the connector calls (client.py, admin.py, users.py,
  probe.py) -> the bot scopes Slack's method reference names for it;
- `EVENTS`: the events the app subscribes to (docs/slack.md's manifest) -> their scopes;
- `USES`: which methods each capability's implementation calls; `BASE` what every Slack
  daemon calls (post, edit, read a thread, who is who).

tests/test_permissions.py checks that every method the connector's modules call is in
`METHODS`, and that the guide's manifest lists exactly `all_scopes()`. `chatopsd doctor`
compares the bot token's scopes with `needed(capabilities the enabled features use)` and
names the missing ones.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from chatopsd.core.capabilities import (
    CHANNEL_INVITES,
    CHANNEL_TOPICS,
    DIRECT_MESSAGES,
    INCIDENT_CHANNELS,
    MESSAGE_PINS,
    POSTED_ANSWERS,
    USER_GROUPS,
    USER_PROFILES,
    Capability,
)

# Reading a conversation's messages: one scope per kind of conversation (public, private,
# direct message, group direct message); the bot answers in all four.
_HISTORY = ("channels:history", "groups:history", "im:history", "mpim:history")

METHODS: dict[str, tuple[str, ...]] = {
    "auth.test": (),  # any token
    "apps.connections.open": (),  # the app-level token's connections:write, not a bot scope
    "chat.postMessage": ("chat:write",),
    "chat.postEphemeral": ("chat:write",),
    "chat.update": ("chat:write",),
    "conversations.history": _HISTORY,
    "conversations.replies": _HISTORY,
    "conversations.create": ("channels:manage",),
    "conversations.invite": ("channels:manage",),
    # a public channel's topic (an incident's channel, an on-call topic channel)
    "conversations.setTopic": ("channels:manage",),
    "conversations.open": ("im:write",),
    "pins.add": ("pins:write",),
    "usergroups.users.update": ("usergroups:write",),
    # users.info returns the email only with users:read.email
    "users.info": ("users:read", "users:read.email"),
    "users.lookupByEmail": ("users:read.email",),
}

# The app-level token (slack.app_token) is a different token with its own scope.
APP_TOKEN_SCOPES = ("connections:write",)

EVENTS: dict[str, tuple[str, ...]] = {
    "app_mention": ("app_mentions:read",),
    "message.channels": ("channels:history",),
    "message.groups": ("groups:history",),
    "message.im": ("im:history",),
    "message.mpim": ("mpim:history",),
    "reaction_added": ("reactions:read",),  # votes on approvals
}

# Slash commands (/ic, /status, /incident) need the `commands` scope.
SLASH_COMMANDS = ("commands",)

BASE = (
    "auth.test",
    "apps.connections.open",
    "chat.postMessage",
    "chat.postEphemeral",
    "chat.update",
    "conversations.replies",
)

USES: dict[Capability[Any], tuple[str, ...]] = {
    INCIDENT_CHANNELS: ("conversations.create", "conversations.setTopic"),
    CHANNEL_INVITES: ("conversations.invite",),
    MESSAGE_PINS: ("pins.add",),
    DIRECT_MESSAGES: ("conversations.open",),
    CHANNEL_TOPICS: ("conversations.setTopic",),
    USER_GROUPS: ("usergroups.users.update",),
    USER_PROFILES: ("users.info", "users.lookupByEmail"),
    POSTED_ANSWERS: ("conversations.history",),
}


def needed(uses: Iterable[Capability[Any]]) -> dict[str, str]:
    """Bot scope -> the first method or event that needs it, for a daemon whose features use
    these capabilities (plus what every Slack daemon does)."""
    found: dict[str, str] = {}
    wanted = set(uses)
    methods = list(BASE) + [m for cap, used in USES.items() if cap in wanted for m in used]
    for method in methods:
        for scope in METHODS[method]:
            found.setdefault(scope, method)
    for event, scopes in EVENTS.items():
        for scope in scopes:
            found.setdefault(scope, f"the {event} event")
    for scope in SLASH_COMMANDS:
        found.setdefault(scope, "slash commands")
    return found


def all_scopes() -> set[str]:
    """Every bot scope some configuration needs: what the guide's manifest grants."""
    return set(needed(USES))
