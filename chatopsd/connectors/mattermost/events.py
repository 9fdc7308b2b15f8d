"""Mattermost websocket frames and posts -> neutral `Inbound` events. Pure functions.

Anything malformed (a frame that is not JSON or nested too deep, `create_at: "abc"`,
`props: "x"`, `broadcast: []`) becomes `MalformedFrame`; the connector logs and skips it, and
the connection stays up.
"""

from __future__ import annotations

import json
from collections.abc import Container
from typing import Any

from chatopsd.core.addressing import Identity, address
from chatopsd.core.messages import Actor, Inbound

PLATFORM = "mattermost"
Json = dict[str, Any]


class MalformedFrame(ValueError):
    """A frame or post does not have the shape Mattermost documents."""


def identity(user_id: str, username: str = "", allow_bots: bool = False) -> Identity:
    """Who we are on Mattermost (from GET /users/me): mentioned as @username."""
    return Identity(user_id, (f"@{username}",) if username else (), allow_bots)


def frame(raw: str) -> Json:
    """One websocket text frame as an object."""
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        raise MalformedFrame(f"not JSON ({len(raw)} bytes)") from None
    if not isinstance(value, dict):
        raise MalformedFrame(f"frame is {type(value).__name__}, not an object")
    return value


def data(obj: Json) -> Json:
    value = obj.get("data")
    return value if isinstance(value, dict) else {}


def json_field(obj: Json, name: str) -> Json:
    """Mattermost sends data.post / data.reaction as a JSON string inside the JSON frame."""
    raw = obj.get(name)
    try:
        value = json.loads(raw) if isinstance(raw, str) else raw
    except (ValueError, RecursionError):
        raise MalformedFrame(f"data.{name} is not JSON") from None
    if not isinstance(value, dict):
        raise MalformedFrame(f"data.{name} is missing or not an object")
    return value


def millis(obj: Json, key: str) -> int:
    """A timestamp in ms (create_at); absent is 0, anything but a whole number is malformed."""
    value = obj.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise MalformedFrame(f"{key} is {type(value).__name__}, not a number")
    try:
        return int(value)
    except ValueError:
        raise MalformedFrame(f"{key} is not a number") from None


def text(obj: Json, key: str) -> str:
    """A string field; absent is "", any other type is malformed."""
    value = obj.get(key, "")
    if not isinstance(value, str):
        raise MalformedFrame(f"{key} is {type(value).__name__}, not a string")
    return value


def post_event(
    post: Json,
    event: Json | None,
    me: Identity,
    prefix: str,
    bot_roots: Container[str] = (),
) -> Inbound | None:
    """A post as an Inbound, or None when it is not for us.

    `event` is the `posted` event's data (None for posts fetched over REST); `bot_roots` the
    ids of root posts we made, so a reply in our thread needs no prefix."""
    props = post.get("props") or {}
    if not isinstance(props, dict):
        raise MalformedFrame("post.props is not an object")
    user, pid = text(post, "user_id"), text(post, "id")
    if not pid or user == me.user_id or post.get("type"):
        return None  # our own post, or a system message (joins, header changes)
    is_bot = str(props.get("from_bot", "")).lower() == "true" or bool(props.get("from_webhook"))
    if is_bot and not me.allow_bots:
        return None
    root = text(post, "root_id")
    event = event or {}
    found = address(
        text(post, "message"),
        prefix=prefix,
        mentions=me.mentions,
        direct=event.get("channel_type") == "D",
        bot_thread=bool(root) and root in bot_roots,
    )
    if found is None:
        return None
    kind, body = found.inbound(text(post, "message"))
    name = event.get("sender_name", "")
    return Inbound(
        platform=PLATFORM,
        channel=text(post, "channel_id"),
        actor=Actor(id=user, name=name.lstrip("@") if isinstance(name, str) else "", is_bot=is_bot),
        text=body,
        kind=kind,
        event_id=pid,
        # A top-level post is not a thread: a command there is about the channel.
        thread=root or None,
        message_id=pid,
    )


def reaction_event(obj: Json, me: Identity) -> Inbound | None:
    """A `reaction_added` frame as an Inbound (None for our own reactions)."""
    reaction = json_field(data(obj), "reaction")
    user = text(reaction, "user_id")
    if not user or user == me.user_id:
        return None
    broadcast = obj.get("broadcast")
    if not isinstance(broadcast, dict) or not text(broadcast, "channel_id"):
        raise MalformedFrame("broadcast.channel_id is missing")
    post_id, emoji = text(reaction, "post_id"), text(reaction, "emoji_name")
    return Inbound(
        platform=PLATFORM,
        channel=text(broadcast, "channel_id"),
        actor=Actor(id=user),
        text=emoji,
        kind="reaction",
        event_id=f"reaction:{post_id}:{user}:{emoji}:{millis(reaction, 'create_at')}",
        message_id=post_id,
    )
