"""Toy Chat payloads -> neutral `Inbound` events. Pure: no I/O, no state.

A payload that is not the documented shape raises `MalformedPayload`; the connector logs and
skips it. Whether the message is for us is `core.addressing.address`'s decision, given Toy
Chat's mention token as data."""

from __future__ import annotations

from typing import Any

from chatopsd.core.addressing import Identity, address
from chatopsd.core.messages import Actor, Inbound

PLATFORM = "toychat"


class MalformedPayload(ValueError):
    """A payload without the shape Toy Chat documents."""


def identity(bot_name: str) -> Identity:
    return Identity(f"u-{bot_name}", (f"@{bot_name}",))


def inbound(payload: dict[str, Any], me: Identity, prefix: str) -> Inbound | None:
    """The event for a message addressed to us; None for anything else (our own posts)."""
    user = payload.get("user")
    fields = [payload.get(k) for k in ("id", "channel", "text")]
    if not isinstance(user, dict) or not all(isinstance(f, str) for f in fields):
        raise MalformedPayload("id, channel, text and user are required")
    message_id, channel, text = (str(f) for f in fields)
    thread = payload.get("thread")
    if thread is not None and not isinstance(thread, str):
        raise MalformedPayload("thread is not a string")
    actor = Actor(str(user.get("id", "")), str(user.get("name", "")))
    if actor.id == me.user_id:
        return None
    found = address(text, prefix=prefix, mentions=me.mentions, direct=payload.get("direct") is True)
    if found is None:
        return None
    kind, command = found.inbound(text)
    return Inbound(
        PLATFORM,
        channel,
        actor,
        command,
        kind,
        event_id=message_id,
        thread=thread,
        message_id=message_id,
    )
