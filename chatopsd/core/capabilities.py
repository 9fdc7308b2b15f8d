"""Optional connector capabilities: what a chat platform can do besides posting and editing.

Declared once: a platform lists its capabilities (`Platform.capabilities`, in its package's
`__init__.py`) and its connector has their methods. Asked one way: `capabilities.get(platform,
DIRECT_MESSAGES)` is the implementation, or None where that platform has no such capability
(the console has none). Features, the outbox and the identity service ask nothing else: no
isinstance, no getattr. A platform that declares a capability its connector lacks is refused
when the daemon starts, naming the missing method.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, cast

from chatopsd.core.messages import Destination, Sent

if TYPE_CHECKING:
    from chatopsd.core.identity import Profile

T = TypeVar("T")


class Capability(Generic[T]):
    """The key of one capability, typed by the protocol its implementation satisfies
    (`Capability[DirectMessages]`), so a lookup returns that type."""

    __slots__ = ("methods", "name")

    def __init__(self, name: str, protocol: type) -> None:
        self.name = name  # as errors and `ctl health` say it
        self.methods = tuple(
            sorted(
                attr
                for attr, value in vars(protocol).items()
                if callable(value) and not attr.startswith("_")
            )
        )

    def __repr__(self) -> str:
        return f"Capability({self.name!r})"


class ChannelRefused(Exception):
    """The platform (or the bot's permissions) did not allow a channel operation; say why."""


class Threads(Protocol):
    """A reply in a thread shows apart from its channel. The console has no threads: one
    stream, where posting to a thread as well as its channel prints the same text twice."""


class IncidentChannels(Protocol):
    """Channels of its own for incidents. A platform without it gets a thread under the
    announcement instead."""

    async def create_channel(self, name: str, topic: str) -> str:
        """Create a channel; return its id. Raise ChannelRefused if not allowed or the name
        is taken (the caller then tries another name, then falls back to a thread)."""
        ...


class ChannelInvites(Protocol):
    """Add people to a channel (the incident's declarer, whoever joins it)."""

    async def invite(self, channel: str, user_ids: Sequence[str]) -> None:
        """Raise ChannelRefused if not allowed."""
        ...


class MessagePins(Protocol):
    """Pin a message we posted (an incident's status, its video bridge link)."""

    async def pin(self, sent: Sent) -> None:
        """Raise ChannelRefused if not allowed."""
        ...


class DirectMessages(Protocol):
    """A direct-message channel with one user (shift reminders, `!pd link`): Slack
    conversations.open, Mattermost POST /channels/direct, Discord POST /users/@me/channels.
    The reply is then sent there like any other."""

    async def dm_channel(self, user_id: str) -> str: ...


class ChannelTopics(Protocol):
    """Set a channel's topic (Slack conversations.setTopic, the Mattermost channel header,
    the Discord channel topic): who is on call, kept true."""

    async def set_topic(self, channel: str, text: str) -> None: ...


class UserGroups(Protocol):
    """Replace a user group's members (Slack usergroups.users.update): on-call groups."""

    async def set_usergroup(self, group_id: str, user_ids: Sequence[str]) -> None: ...


class UserProfiles(Protocol):
    """What the platform says about a user (Slack users.info and users.lookupByEmail,
    Mattermost GET /users/{id} and /users/email/{email}), for the identity service. None: no
    such user; ProfileUnavailable: the platform could not say."""

    async def user_profile(self, user_id: str) -> Profile | None: ...

    async def user_by_email(self, email: str) -> Profile | None: ...


class PostedAnswers(Protocol):
    """Find a reply by the key it was posted with (Reply.key). An instance taking over a dead
    one's command asks before answering, so a command the dead one answered just before
    dying is not answered twice."""

    async def answer_posted(self, destination: Destination, key: str, since: float) -> bool: ...


THREADS = Capability[Threads]("threads", Threads)
INCIDENT_CHANNELS = Capability[IncidentChannels]("incident channels", IncidentChannels)
CHANNEL_INVITES = Capability[ChannelInvites]("channel invites", ChannelInvites)
MESSAGE_PINS = Capability[MessagePins]("message pins", MessagePins)
DIRECT_MESSAGES = Capability[DirectMessages]("direct messages", DirectMessages)
CHANNEL_TOPICS = Capability[ChannelTopics]("channel topics", ChannelTopics)
USER_GROUPS = Capability[UserGroups]("user groups", UserGroups)
USER_PROFILES = Capability[UserProfiles]("user profiles", UserProfiles)
POSTED_ANSWERS = Capability[PostedAnswers]("posted answers", PostedAnswers)


class Capabilities:
    """Which optional capabilities each platform of this daemon has, and what implements
    them. Built once at start from (platform, implementation, declared capabilities)."""

    def __init__(self, offers: Iterable[tuple[str, object, Iterable[Capability[Any]]]] = ()):
        self._table: dict[str, dict[Capability[Any], object]] = {}
        for platform, implementation, declared in offers:
            table = self._table.setdefault(platform, {})
            for capability in declared:
                missing = [
                    method
                    for method in capability.methods
                    if not callable(getattr(implementation, method, None))
                ]
                if missing:
                    raise TypeError(
                        f"platform {platform} declares {capability.name} but its connector "
                        f"has no {', '.join(m + '()' for m in missing)}"
                    )
                table[capability] = implementation

    def get(self, platform: str, capability: Capability[T]) -> T | None:
        """The platform's implementation of `capability`, or None if it has none."""
        return cast("T | None", self._table.get(platform, {}).get(capability))

    def has(self, platform: str, capability: Capability[Any]) -> bool:
        return capability in self._table.get(platform, {})

    def every(self, capability: Capability[T]) -> list[tuple[str, T]]:
        """(platform, implementation) for each platform that has `capability`, in the
        order the platforms were given."""
        return [
            (platform, cast("T", table[capability]))
            for platform, table in self._table.items()
            if capability in table
        ]
