"""What the Discord bot must be granted, derived from the REST routes the connector calls.

`ROUTES`: every route the connector (client.py, commands.py, probe.py) calls -> the bot
permissions Discord checks for it in the channel. `BITS`: each permission's flag (Discord's
"Bitwise Permission Flags"), whose sum is the `permissions=` integer of the invite URL.
tests/test_permissions.py checks that every route the connector's modules name is here, and
that docs/discord.md's table lists exactly `needed()` with the matching integer.
"""

from __future__ import annotations

BITS: dict[str, int] = {
    "Manage Channels": 1 << 4,
    "View Channels": 1 << 10,
    "Send Messages": 1 << 11,
    "Embed Links": 1 << 14,
    "Read Message History": 1 << 16,
    "Send Messages in Threads": 1 << 38,
}

# Posting: to see the channel, to post, to post in a thread (a command typed in one), the
# embeds replies are rendered as, and the reply's reference to the command's message.
_POST = (
    "View Channels",
    "Send Messages",
    "Send Messages in Threads",
    "Embed Links",
    "Read Message History",
)

ROUTES: dict[tuple[str, str], tuple[str, ...]] = {
    ("POST", "/channels/{channel_id}/messages"): _POST,
    ("PATCH", "/channels/{channel_id}/messages/{message_id}"): ("View Channels",),  # our own
    # Modify Channel with a topic: the on-call topic of pagerduty.topic_channels
    ("PATCH", "/channels/{channel_id}"): ("Manage Channels",),
    ("POST", "/users/@me/channels"): (),  # a DM channel: no guild permission
    # answers to slash commands and buttons, through the interaction's own token
    ("POST", "/webhooks/{webhook_id}/{webhook_token}"): (),
    ("PATCH", "/webhooks/{webhook_id}/{webhook_token}/messages/@original"): (),
    ("PATCH", "/webhooks/{webhook_id}/{webhook_token}/messages/{message_id}"): (),
    # slash command registration: the applications.commands scope of the invite
    ("GET", "/applications/{application_id}/commands"): (),
    ("PUT", "/applications/{application_id}/commands"): (),
    ("GET", "/applications/{application_id}/guilds/{guild_id}/commands"): (),
    ("PUT", "/applications/{application_id}/guilds/{guild_id}/commands"): (),
    # the login and `chatopsd doctor`
    ("GET", "/users/@me"): (),
    ("GET", "/oauth2/applications/@me"): (),
}

# The invite's OAuth2 scopes: the bot itself, and its slash commands.
SCOPES = ("bot", "applications.commands")


def needed() -> list[str]:
    """Every permission some route needs, in BITS order."""
    used = {p for perms in ROUTES.values() for p in perms}
    return [p for p in BITS if p in used]


def invite_integer() -> int:
    return sum(BITS[p] for p in needed())
