"""What a platform package exports: its `PLATFORM`, the one object the daemon knows it by.

A platform package (connectors/<name>/) says in its `__init__.py`:

    PLATFORM = Platform(name, Section, build, probe, capabilities)

- `name`: its config table (`[name]`) and `Inbound.platform`;
- `section`: the pydantic model of that table (connectors/<name>/config.py); a table that is
  present enables the platform, and config.py composes it into `Config` from the registry;
- `build(section, wiring) -> Connector`: imports the platform's library only when called, so
  a daemon that does not use the platform never loads it (start time, idle memory);
- `probe(section, http, uses) -> [Result]`: `chatopsd doctor`'s read-only checks of that
  section, over the daemon's HTTP transport (httpclient.py) or the platform's own library;
  `uses` is the capabilities the enabled features use, so a probe can name the permissions
  they need that the token lacks;
- `capabilities`: what its connector can do besides posting (core/capabilities), declared
  here and nowhere else.

The registry (chatopsd/platforms.py) lists every package's PLATFORM, one line each. The
console is no platform: it has no section of its own to enable it, and no capability.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import BaseModel

from chatopsd.core.capabilities import Capability

if TYPE_CHECKING:
    from chatopsd.checks import Result
    from chatopsd.connectors.base import Connector
    from chatopsd.core.ports import Clock, KeyValue
    from chatopsd.httpclient import HttpTransport

S = TypeVar("S", bound=BaseModel)


@dataclass(frozen=True)
class Wiring:
    """What the daemon hands every connector besides its own section."""

    prefix: str  # the command prefix, `chatopsd.prefix`
    clock: Clock
    kv: KeyValue  # small durable state: session ids, cursors (this instance's own)
    # Small durable state every instance shares (with several instances, the one database):
    # what any of them may need to post later, such as Teams' conversation references.
    shared: KeyValue | None = None


@dataclass(frozen=True, eq=False)
class Platform(Generic[S]):
    name: str
    section: type[S]
    build: Callable[[S, Wiring], Connector]
    probe: Callable[[S, HttpTransport, frozenset[Capability[Any]]], Awaitable[list[Result]]]
    capabilities: tuple[Capability[Any], ...] = ()
