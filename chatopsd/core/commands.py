"""Command specs, the registry that matches words to a spec, and typed argument binding.

A spec's `path` is its words: ("ic",), ("ic", "page"), ("ic", "page", "responders"). The
longest path that prefixes the words wins; the words left over bind to the spec's arguments.
Help text is generated from the same specs, so it cannot drift from what the parser accepts.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

from chatopsd.core.errors import UsageError
from chatopsd.core.grammar import Quoted
from chatopsd.core.messages import Inbound, Priority, Reply
from chatopsd.core.values import whole_number

if TYPE_CHECKING:
    from chatopsd.core.context import Call

ArgKind = Literal["word", "int", "rest"]
HandlerResult = Reply | Sequence[Reply] | None
Handler = Callable[["Call"], Awaitable[HandlerResult]]
# A reaction is never acted on directly: a feature's mapping turns it into the command it
# stands for (⬆️ on an incident's announcement → "incident escalate INC-…"), or None, and that
# command then runs through the same middleware as a typed one (role, channel, rate, audit).
ReactionCommand = Callable[[Inbound], Awaitable[str | None]]


@dataclass(frozen=True, slots=True)
class Arg:
    """One argument. `rest` swallows every remaining word (the typed tail); `option` is given
    as --name VALUE. An optional positional argument with `accepts` binds only a word it
    accepts and is skipped otherwise: `!incident ack [INC-id] [note...]` takes
    "INC-2026-0001 on it" and "on it" alike.

    `last`: text meant for one audience (the status page's customers) that must not be cut
    short or mixed with other text. For an option: its value ends the command, and a word
    typed after it is refused rather than bound elsewhere (`--public "..."` and the internal
    note). For a `rest` argument: once a word of it was quoted, that word must end it.
    `role`: the role an actor needs to give this option (config: `auth.command_roles` with
    the key "<command> --<name>")."""

    name: str
    help: str = ""
    kind: ArgKind = "word"
    required: bool = True
    choices: tuple[str, ...] = ()
    option: bool = False
    default: str | int | None = None
    accepts: Callable[[str], bool] | None = None
    last: bool = False
    role: str | None = None

    def usage(self) -> str:
        label = f"--{self.name} {self.name.upper()}" if self.option else f"<{self.name}>"
        if self.kind == "rest" and not self.option:
            label = f"<{self.name}...>"
        return label if self.required else f"[{label}]"


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """A command: its words, arguments, help, who may run it, and its handler.

    `role` is the role an actor needs (None: anyone). `pages`/`mutates` mark commands that
    config can restrict to some channels. `incident_work` marks the incident commands: in an
    open incident's own channel those channel lists do not apply to them (nor to paging
    commands). `priority` orders its replies in the outbox.
    `effects` marks a command that acts outside chat and our database in a way not safe to
    repeat (runs a process, creates a channel, publishes to the status page, files a ticket):
    it is recorded as started, durably, before its handler runs, and one whose instance died
    running it is reported in its channel, never run again (core/middleware.Started).
    """

    path: tuple[str, ...]
    summary: str
    handler: Handler
    args: tuple[Arg, ...] = ()
    role: str | None = None
    pages: bool = False
    mutates: bool = False
    incident_work: bool = False
    priority: Priority = Priority.NORMAL
    examples: tuple[str, ...] = ()
    effects: bool = False

    @property
    def name(self) -> str:
        return " ".join(self.path)

    def usage(self, prefix: str = "!") -> str:
        # an option that ends the command is shown last
        ends = [a for a in self.args if a.last and a.option]
        ordered = [a for a in self.args if a not in ends] + ends
        return " ".join([f"{prefix}{self.name}", *(a.usage() for a in ordered)])


@dataclass(frozen=True, slots=True)
class Bound:
    """A spec matched to words, with its arguments converted to their types."""

    spec: CommandSpec
    args: Mapping[str, str | int | None] = field(default_factory=dict)


class CommandProvider(Protocol):
    """A handler module's object: the commands it serves."""

    def commands(self) -> list[CommandSpec]: ...


class Registry:
    """All commands, looked up by their words; and the other ways an event becomes a command:
    the reaction mappings, tried in the order added, and the spec a mention the grammar
    cannot parse goes to (`mention_fallback`, with args {"text": body})."""

    def __init__(self, specs: Sequence[CommandSpec] = ()) -> None:
        self._specs: dict[tuple[str, ...], CommandSpec] = {}
        self._longest = 1
        # `!help`'s full listing per prefix: specs are frozen, so it changes only when a
        # command is added or removed (start-up, config reload), not per call (43 usages).
        self._listing: dict[str, tuple[str, ...]] = {}
        self.reactions: list[ReactionCommand] = []
        self._mention_fallback: CommandSpec | None = None
        for spec in specs:
            self.add(spec)

    def add_reaction(self, to_command: ReactionCommand) -> None:
        self.reactions.append(to_command)

    def set_mention_fallback(self, spec: CommandSpec) -> None:
        if self._mention_fallback is not None:
            raise ValueError("a mention fallback is registered already")
        self._mention_fallback = spec

    @property
    def mention_fallback(self) -> CommandSpec | None:
        return self._mention_fallback

    def add(self, spec: CommandSpec) -> None:
        if spec.path in self._specs:
            raise ValueError(f"command {spec.name!r} registered twice")
        self._specs[spec.path] = spec
        self._longest = max(self._longest, len(spec.path))
        self._listing.clear()

    def remove(self, path: tuple[str, ...]) -> None:
        """Forget a command (a config reload dropped it)."""
        self._specs.pop(path, None)
        self._listing.clear()

    def __iter__(self) -> Iterator[CommandSpec]:
        return iter(sorted(self._specs.values(), key=lambda s: s.path))

    def listing(self, prefix: str) -> tuple[str, ...]:
        """One line per command, in order: "usage — summary" (`!help` with no topic)."""
        lines = self._listing.get(prefix)
        if lines is None:
            lines = self._listing[prefix] = tuple(
                f"{spec.usage(prefix)} — {spec.summary}" for spec in self
            )
        return lines

    @property
    def longest(self) -> int:
        """Words in the longest command path."""
        return self._longest

    def get(self, path: tuple[str, ...]) -> CommandSpec | None:
        return self._specs.get(path)

    def roots(self) -> list[str]:
        return sorted({p[0] for p in self._specs})

    def children(self, path: tuple[str, ...]) -> list[CommandSpec]:
        n = len(path)
        return [s for s in self if s.path[:n] == path and len(s.path) > n]

    def resolve(self, words: Sequence[str], prefix: str = "!") -> Bound:
        """Match words to the longest known path and bind the rest. Raises UsageError."""
        if not words:
            raise UsageError("no command given", hint=f"try {prefix}help")
        lowered = [w.lower() for w in words[: self._longest]]
        for n in range(min(len(lowered), self._longest), 0, -1):
            spec = self._specs.get(tuple(lowered[:n]))
            if spec is not None:
                if n < len(words) and not spec.args and self.children(spec.path):
                    # "!ic pgae": a typo of a sub-command, not an argument to !ic
                    raise self._unknown(lowered[: n + 1], prefix)
                return Bound(spec, bind(spec, words[n:], prefix))
        raise self._unknown(lowered, prefix)

    def _unknown(self, words: list[str], prefix: str) -> UsageError:
        from difflib import get_close_matches  # only for typos: not loaded at start-up

        root = words[0]
        known_roots = self.roots()
        if root in known_roots:
            # a known command with an unknown sub-command: find the deepest known parent
            depth = 1
            while depth < len(words) and self.children(tuple(words[: depth + 1])):
                depth += 1
            parent = tuple(words[:depth])
            subs = [s.path[depth] for s in self.children(parent) if len(s.path) == depth + 1]
            typo = words[depth] if depth < len(words) else ""
            close = get_close_matches(typo, subs, n=1) if typo else []
            base = f"{prefix}{' '.join(parent)}"
            hint = f"did you mean {base} {close[0]}?" if close else f"see {prefix}help {root}"
            return UsageError(f"unknown command {base} {typo}".rstrip(), hint=hint)
        close = get_close_matches(root, known_roots, n=1, cutoff=0.5)
        hint = f"did you mean {prefix}{close[0]}?" if close else f"try {prefix}help"
        return UsageError(f"unknown command {prefix}{root}", hint=hint)


def bind(spec: CommandSpec, words: Sequence[str], prefix: str = "!") -> dict[str, str | int | None]:
    """Bind words to the spec's arguments: options by name, the rest by position."""
    usage = f"usage: {spec.usage(prefix)}"
    options = {a.name: a for a in spec.args if a.option}
    positional = [a for a in spec.args if not a.option]
    values: dict[str, str | int | None] = {a.name: a.default for a in spec.args}
    given: set[str] = set()
    loose: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        if word.startswith("--") and len(word) > 2 and not isinstance(word, Quoted):
            name, eq, inline = word[2:].partition("=")
            arg = options.get(name)
            if arg is None:
                raise UsageError(f"unknown option --{name} for {prefix}{spec.name}", hint=usage)
            if eq:
                raw = inline
            elif i + 1 < len(words):
                i += 1
                raw = words[i]
            else:
                raise UsageError(f"option --{name} needs a value", hint=usage)
            values[name] = _convert(arg, raw, usage)
            given.add(name)
            if arg.last and i + 1 < len(words):
                raise UsageError(
                    f"nothing may follow the --{name} text (got {_clip(words[i + 1 :])!r} "
                    "after it)",
                    hint=f"put --{name} last and quote its text whole; {usage}",
                )
        else:
            loose.append(word)
        i += 1
    for arg in positional:
        if not loose:
            break
        if arg.accepts is not None and not arg.required and not arg.accepts(loose[0]):
            continue  # an optional leading argument that is not there
        if arg.kind == "rest":
            if arg.last:
                _quoted_ends(arg, loose, usage)
            raw, loose = " ".join(loose), []
        else:
            raw = loose.pop(0)
        values[arg.name] = _convert(arg, raw, usage)
        given.add(arg.name)
    if loose:
        raise UsageError(f"unexpected argument {loose[0]!r}", hint=usage)
    for arg in spec.args:
        if arg.required and arg.name not in given:
            raise UsageError(f"missing {arg.usage()}", hint=usage)
    return values


def _quoted_ends(arg: Arg, words: Sequence[str], usage: str) -> None:
    """Refuse words after a quoted one: the quotes said where the text ends."""
    quoted = next((i for i, w in enumerate(words) if isinstance(w, Quoted)), None)
    if quoted is not None and quoted + 1 < len(words):
        raise UsageError(
            f"nothing may follow the quoted {arg.name} (got {_clip(words[quoted + 1 :])!r} "
            "after it)",
            hint=f"quote all of it, or none of it; {usage}",
        )


def _clip(words: Sequence[str], limit: int = 60) -> str:
    text = " ".join(words)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _convert(arg: Arg, raw: str, usage: str) -> str | int:
    if arg.choices:
        match = next((c for c in arg.choices if c.lower() == raw.lower()), None)
        if match is None:
            raise UsageError(
                f"{arg.name} must be one of {', '.join(arg.choices)} (got {raw!r})", hint=usage
            )
        raw = match
    if arg.kind == "int":
        try:
            return whole_number(raw, arg.name)
        except UsageError as exc:
            raise UsageError(exc.message, hint=usage) from None
    return raw


def help_lines(registry: Registry, prefix: str, topic: Sequence[str] = ()) -> list[str]:
    """Help generated from the specs: all commands, or one command and its sub-commands."""
    if not topic:
        return list(registry.listing(prefix))
    path = tuple(w.lower().lstrip(prefix) for w in topic)
    matches = [s for s in registry if s.path[: len(path)] == path]
    if not matches:
        raise registry._unknown(list(path), prefix)
    lines: list[str] = []
    for spec in matches:
        lines.append(f"{spec.usage(prefix)} — {spec.summary}")
        lines.extend(f"    {a.usage()}: {a.help}" for a in spec.args if a.help)
        lines.extend(f"    e.g. {prefix}{ex}" for ex in spec.examples)
    return lines


def needs_section(path: tuple[str, ...], what: str, section: str, guide: str) -> CommandSpec:
    """A stand-in for commands a feature has only when its section is configured: `!pd ack
    1` without `[pagerduty]` says which section and which guide, not "unknown command"."""

    async def refuse(call: Call) -> HandlerResult:
        raise UsageError(
            f"{what} is not configured", hint=f"add a [{section}] section: see {guide}"
        )

    return CommandSpec(
        path,
        f"needs [{section}] ({guide})",
        refuse,
        (Arg("words", "what you would ask", kind="rest", required=False),),
    )
