"""What a feature may use of the daemon (`Runtime`), and what it gives back (`Feature`).

Every feature package exposes `install(runtime, config) -> Feature`; chatopsd/features/
__init__.py lists the installers in order, and app.py calls them, registers what each returns
(commands, jobs, reactions, the mention fallback) and runs its start, stop and reload. A feature
sees ports only: the store, the clock, the outbox, the high-availability strategy, the identity
service, the outbound HTTP transport, and the interfaces other features declared in their
`api.py`, found in `services` by the key declared there.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:  # annotations only: a feature's api.py imports this module, cheaply
    import asyncio

    from chatopsd.config import Config
    from chatopsd.core.capabilities import Capabilities
    from chatopsd.core.commands import CommandSpec, ReactionCommand, Registry
    from chatopsd.core.messages import Inbound
    from chatopsd.core.middleware import AccessPolicy
    from chatopsd.core.ports import AuditLog, Clock, KeyValue, ReplySink
    from chatopsd.core.times import Times
    from chatopsd.ha.strategy import Strategy
    from chatopsd.httpclient import HttpTransport
    from chatopsd.identity.service import IdentityService
    from chatopsd.store.db import Database

T = TypeVar("T")

Run = Callable[[], Awaitable[object]]
# Bus.submit: the command's task, whose result is its replies (None while shutting down)
Submit = Callable[["Inbound"], "asyncio.Task[object] | None"]


@dataclass(frozen=True)
class Job:
    """A scheduled job. `singleton`: with several instances only the lease holder runs it;
    the others run `follower` instead (e.g. re-read what the leader's run wrote), or nothing."""

    name: str
    every: float  # seconds
    run: Run
    singleton: bool = True
    follower: Run | None = None
    run_now: bool = True  # a first run at start, not only after `every`


@dataclass(frozen=True)
class Feature:
    """What an installed feature contributes. Everything is optional but the name."""

    name: str
    commands: Sequence[CommandSpec] = ()
    jobs: Sequence[Job] = ()
    # reaction -> the command it stands for (run through the whole middleware chain)
    reactions: Sequence[ReactionCommand] = ()
    # where a mention the grammar cannot parse goes (the plain-language intents)
    mention_fallback: CommandSpec | None = None
    start: Callable[[], Awaitable[None]] | None = None  # after every feature is installed
    stop: Callable[[], Awaitable[None]] | None = None  # before the store closes
    # what `chatopsd ctl health` shows of it (JSON values)
    health: Callable[[], Mapping[str, object]] | None = None
    # Config reload: the key paths it applies (e.g. "commands"), and the function that applies
    # them; it returns what it could not apply, each note starting with its key path.
    reloads: Sequence[str] = ()
    reload: Callable[[Config], Sequence[str]] | None = None
    # Middleware contributions: an event the rate limit must not count (an approved command
    # run again as its requester), and a channel the daemon made for incident work (where
    # incident and paging commands are allowed whatever the channel lists say).
    rate_exempt: Callable[[Inbound], bool] | None = None
    work_channel: Callable[[str, str], Awaitable[bool]] | None = None
    # The feature's own objects, for tools and tests to find by their type (App.part).
    parts: Sequence[object] = ()


@dataclass(frozen=True)
class ServiceKey(Generic[T]):
    """The name under which a feature provides an interface it declares in its api.py.
    (A key object rather than the Protocol itself: a Protocol cannot be a `type[T]`.)"""

    name: str


class Services:
    """The interfaces features provide to each other. A feature provides in its install what
    later features get in theirs (the order of chatopsd/features/__init__.py), or, for a
    feature listed earlier, finds at call time."""

    def __init__(self) -> None:
        self._provided: dict[ServiceKey[Any], object] = {}

    def provide(self, key: ServiceKey[T], implementation: T) -> None:
        if key in self._provided:
            raise ValueError(f"service {key.name!r} provided twice")
        self._provided[key] = implementation

    def get(self, key: ServiceKey[T]) -> T:
        """The provider; LookupError if none was installed (a feature listed out of order)."""
        found = self.find(key)
        if found is None:
            raise LookupError(f"no feature provides {key.name!r}")
        return found

    def find(self, key: ServiceKey[T]) -> T | None:
        """The provider, or None when the feature that provides it is not configured."""
        found = self._provided.get(key)
        return found  # type: ignore[return-value]  # provide() stored a T under ServiceKey[T]


@dataclass(frozen=True)
class Runtime:
    """The ports a feature may use. Nothing concrete leaks: no App, no connector, no bus."""

    store: Database
    kv: KeyValue
    audit: AuditLog
    clock: Clock
    times: Times
    outbox: ReplySink
    capabilities: Capabilities  # what each platform can do besides posting, one lookup
    submit: Submit  # hand a command to the bus (approved requests, intents, reactions)
    ha: Strategy  # single instance or shared: the lease, fencing, who runs singleton work
    identity: IdentityService
    http: HttpTransport  # THE outbound HTTP transport (its pool opens on first use)
    services: Services
    access: Callable[[], AccessPolicy]  # the current policy (a reload replaces it)
    commands: Registry  # every command (help and intents read it; ops swaps its own)


Install = Callable[[Runtime, "Config"], Feature]


def find_part(features: Sequence[Feature], kind: type[T]) -> T:
    """The installed features' object of this type (`Feature.parts`)."""
    for feature in features:
        for part in feature.parts:
            if isinstance(part, kind):
                return part
    raise LookupError(f"no installed feature has a {kind.__name__}")
