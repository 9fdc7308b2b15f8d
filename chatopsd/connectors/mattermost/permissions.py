"""What the Mattermost bot account must be allowed, derived from the REST calls the connector
makes.

`ROUTES`: every API v4 route the connector (client.py, admin.py, probe.py) calls -> the
permissions Mattermost's API reference names for it (its "Permissions" paragraph; an empty
tuple where it asks only for a session). tests/test_permissions.py checks that every route
the connector's modules name is here, that each permission is the one the published
reference (tests/specs/mattermost/) gives for that route, and that docs/mattermost.md lists
exactly `needed()`.

There is no `post:channels` permission in Mattermost: creating the public incident channels
takes `create_public_channel`, which the Member role has on a default server.
"""

from __future__ import annotations

ROUTES: dict[tuple[str, str], tuple[str, ...]] = {
    ("GET", "/users/me"): (),
    ("GET", "/users/me/teams"): (),
    ("GET", "/users/me/channels"): (),
    ("GET", "/users/{user_id}"): (),
    ("GET", "/users/username/{username}"): (),
    # the email is shown only if the server's privacy settings let the bot see it
    ("GET", "/users/email/{email}"): (),
    ("GET", "/channels/{channel_id}/posts"): ("read_channel",),
    ("POST", "/posts"): ("create_post",),
    ("PUT", "/posts/{post_id}/patch"): ("edit_post",),
    ("POST", "/posts/{post_id}/pin"): ("read_channel",),
    ("POST", "/channels"): ("create_public_channel",),
    ("POST", "/channels/{channel_id}/members"): ("manage_public_channel_members",),
    # the on-call header of pagerduty.topic_channels: a public channel's header
    ("PUT", "/channels/{channel_id}/patch"): ("manage_public_channel_members",),
    ("POST", "/channels/direct"): ("create_direct_channel",),
}

# Routes whose reference entry states no permission, though the server checks one: adding a
# member to a public channel takes manage_public_channel_members, as the reference says of
# the channel-member routes around it.
NOT_IN_REFERENCE = frozenset({("POST", "/channels/{channel_id}/members")})


def needed() -> list[str]:
    """Every permission some route needs, sorted."""
    return sorted({p for perms in ROUTES.values() for p in perms})
