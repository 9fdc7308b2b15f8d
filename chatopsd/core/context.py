"""`Call`: one command being handled, as handlers and middleware see it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from chatopsd.core.commands import CommandSpec
from chatopsd.core.errors import UsageError
from chatopsd.core.messages import Destination, Inbound, Reply
from chatopsd.core.ports import ReplySink


@dataclass(slots=True)
class Call:
    """The event, the matched spec (None when the words matched nothing) and its arguments.

    `ref` is a short id for this command, quoted in internal-error replies and logs.
    `error` holds a parse error, raised only after dedupe/authorize/audit/rate-limit ran, so
    bad commands are audited and rate-limited like good ones.
    """

    event: Inbound
    spec: CommandSpec | None
    args: Mapping[str, str | int | None]
    prefix: str
    ref: str
    outbox: ReplySink
    error: UsageError | None = None
    words: tuple[str, ...] = field(default=())

    @property
    def command(self) -> str:
        if self.spec is not None:
            return self.spec.name
        return self.words[0] if self.words else ""

    @property
    def destination(self) -> Destination:
        return Destination.for_inbound(self.event)

    @property
    def key(self) -> str:
        """A stable key for this command, for idempotent side effects (PagerDuty dedup keys)."""
        return f"chatopsd/{self.event.platform}/{self.event.event_id or self.ref}"

    def text(self, name: str) -> str | None:
        value = self.args.get(name)
        return None if value is None else str(value)

    def respond(self, reply: Reply) -> None:
        """Post an interim reply now (e.g. "paging..."), before the handler returns."""
        self.outbox.enqueue(self.destination, reply)
