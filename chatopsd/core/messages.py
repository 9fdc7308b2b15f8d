"""The neutral messages every connector translates to and from.

Handlers only ever see these types; nothing platform-specific crosses this line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Literal, get_args

# "mention": addressed by name or in a DM; "thread": a reply in a thread the bot started,
# without prefix or mention (see core/addressing.py).
Kind = Literal["message", "mention", "thread", "slash", "button", "reaction"]


@dataclass(frozen=True, slots=True)
class Actor:
    """Who sent an event: the platform's user id, and name/email when the connector knows them.

    `email` is set only from the platform's own profile of the user, for an address the
    platform vouches for (Slack's profile email); the identity service (core/identity.py)
    decides what it is worth. `resolved` is False when the connector could not look the user
    up (so it cannot tell a person from a bot): such an actor's reaction never counts."""

    id: str
    name: str = ""
    email: str | None = None
    is_bot: bool = False
    resolved: bool = True

    @property
    def display(self) -> str:
        return self.name or self.id


@dataclass(frozen=True, slots=True)
class Inbound:
    """One chat event addressed to us, as every connector hands it to the bus.

    `event_id` is the platform's id of the event (used to drop redeliveries); `message_id` is
    the id of the chat message it came in, if any, so replies can reference it. For reactions
    `text` is the emoji name and `message_id` the message reacted to.
    """

    platform: str
    channel: str
    actor: Actor
    text: str
    kind: Kind = "message"
    event_id: str = ""
    thread: str | None = None
    message_id: str | None = None


class Priority(IntEnum):
    """Outbox order: lower goes first. Pages and status changes jump the queue."""

    PAGE = 0
    STATUS = 1
    NORMAL = 2


@dataclass(frozen=True, slots=True)
class Button:
    """A button under a reply; clicking it runs `command` (grammar text, e.g. "ic page")."""

    label: str
    command: str
    style: Literal["primary", "danger"] | None = None


@dataclass(frozen=True, slots=True)
class Reply:
    """What a handler answers.

    `text` is plain text: connectors escape it for their markup, so user-supplied text in it
    can never mention @here or break formatting. `title` is rendered bold, `fields` as a
    label/value list, `code` as a monospace block.
    """

    text: str = ""
    title: str | None = None
    fields: tuple[tuple[str, str], ...] = ()
    code: str | None = None
    buttons: tuple[Button, ...] = ()
    thread: str | None = None
    ephemeral: bool = False
    priority: Priority = Priority.NORMAL
    # Set by the bus on the answer to a command claimed by one of several instances
    # ("<event id>#<n>"): connectors mark the post with it, so an instance that takes the
    # command over can see whether the dead one's answer went out (PostedAnswers).
    key: str | None = None

    def plain(self) -> str:
        """The reply as plain text: the fallback every platform can show."""
        parts: list[str] = []
        if self.title:
            parts.append(self.title)
        if self.text:
            parts.append(self.text)
        parts.extend(f"{label}: {value}" for label, value in self.fields)
        if self.code:
            parts.append(self.code)
        if self.buttons:
            parts.append("  ".join(f"[{b.label}: {b.command}]" for b in self.buttons))
        return "\n".join(parts)


@dataclass(frozen=True, slots=True)
class Destination:
    """Where a reply goes: a channel (and thread) on one platform.

    `actor` is set for ephemeral replies (only that user sees them); `reply_to` is the message
    the reply answers, for platforms that show a reference.
    """

    platform: str
    channel: str
    thread: str | None = None
    actor: str | None = None
    reply_to: str | None = None

    @classmethod
    def for_inbound(cls, event: Inbound) -> Destination:
        return cls(
            platform=event.platform,
            channel=event.channel,
            thread=event.thread,
            actor=event.actor.id,
            reply_to=event.message_id,
        )


def destination(target: str) -> Destination:
    """A configured "platform:channel" target: "slack:C0123" → Destination("slack", "C0123")."""
    platform, _, channel = target.partition(":")
    return Destination(platform, channel)


@dataclass(slots=True)
class Sent:
    """A message we posted, so it can be edited later (pinned status, approvals)."""

    destination: Destination
    message_id: str
    extra: dict[str, str] = field(default_factory=dict)


def inbound_to_json(event: Inbound) -> str:
    """The event as stored with its claim, so another instance can take it over."""
    a = event.actor
    return json.dumps(
        {
            "platform": event.platform,
            "channel": event.channel,
            "actor": [a.id, a.name, a.email, a.is_bot, a.resolved],
            "text": event.text,
            "kind": event.kind,
            "event_id": event.event_id,
            "thread": event.thread,
            "message_id": event.message_id,
        },
        separators=(",", ":"),
    )


def inbound_from_json(text: str) -> Inbound:
    """The inverse of `inbound_to_json`; ValueError (or KeyError/TypeError) if it is not one."""
    d = json.loads(text)
    actor_id, name, email, is_bot, *rest = d["actor"]
    resolved = bool(rest[0]) if rest else True  # stored by a version that did not say
    if d["kind"] not in get_args(Kind):
        raise ValueError(f"unknown event kind {d['kind']!r}")
    return Inbound(
        platform=str(d["platform"]),
        channel=str(d["channel"]),
        actor=Actor(str(actor_id), str(name), email, bool(is_bot), resolved),
        text=str(d["text"]),
        kind=d["kind"],
        event_id=str(d["event_id"]),
        thread=d["thread"],
        message_id=d["message_id"],
    )
