"""The command bus: parse, run the middleware chain and the handler, send the replies.

This module is the ONE place errors become replies (`render_error`). Connectors call
`submit`; it never raises and never blocks them.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import replace
from typing import Any

from chatopsd.core.addressing import Addressed, address
from chatopsd.core.capabilities import ChannelRefused
from chatopsd.core.commands import CommandSpec, ReactionCommand, Registry
from chatopsd.core.context import Call, OnClaimed, settle_claim
from chatopsd.core.errors import (
    Forbidden,
    RateLimited,
    RateLimitedSend,
    TransientSendError,
    UsageError,
    UserError,
)
from chatopsd.core.grammar import tokenize
from chatopsd.core.messages import Destination, Inbound, Priority, Reply
from chatopsd.core.ports import ReplySink

log = logging.getLogger("chatopsd.bus")

# Longer command text is refused before parsing (Slack's own message limit is 40,000).
MAX_COMMAND_CHARS = 40_000

Next = Callable[[Call], Awaitable[list[Reply]]]
Middleware = Callable[[Call, Next], Awaitable[list[Reply]]]
# Takes the configured secrets out of a text (injected: core knows no config). An outside
# system's error may quote our own token back ("HTTP 400: … 'Authorization': 'Bearer …'").
Redact = Callable[[str], str]


def _unchanged(text: str) -> str:
    return text


def render_error(exc: BaseException, ref: str, redact: Redact = _unchanged) -> Reply:
    """Turn any error into the reply the asker sees. Unexpected errors show only a reference;
    a typed error's text is shown without any configured secret it quotes."""
    if isinstance(exc, UserError):
        text = redact(exc.message if not exc.hint else f"{exc.message}\n{exc.hint}")
        # Only the asker needs to see their typo; an outside failure the whole channel must see.
        private = isinstance(exc, UsageError | RateLimited | Forbidden)
        return Reply(text=text, ephemeral=private)
    return Reply(text=f"internal error, reference {ref}. It has been logged.")


def chat_cause(exc: BaseException, ref: str, redact: Redact = _unchanged) -> str:
    """Why a step failed, in a few words fit for chat, for a command that goes on anyway (an
    incident declared without its pin). A typed error's own message (less any configured
    secret); for anything else the kind of failure and a reference to the log line, never
    the raw exception text."""
    if isinstance(exc, UserError | ChannelRefused):
        return redact(str(exc))
    if isinstance(exc, RateLimitedSend):
        return "the platform rate limited us; try again in a minute"
    if isinstance(exc, TransientSendError):
        return "the platform did not answer (outage or timeout); try again later"
    return f"internal error, reference {ref}. It has been logged."


def new_ref() -> str:
    return os.urandom(4).hex()


class Bus:
    def __init__(
        self,
        registry: Registry,
        middleware: Sequence[Middleware],
        outbox: ReplySink,
        *,
        prefix: str = "!",
        bot_names: tuple[str, ...] = ("chatopsd",),
        redact: Redact = _unchanged,
    ) -> None:
        self.registry = registry
        self.redact = redact
        self.outbox = outbox
        self.prefix = prefix
        self.bot_names = bot_names
        # Typed mentions of the bot (console, tests); platform connectors strip their own.
        self.mentions = tuple(t for n in bot_names for t in (f"@{n}", f"<@{n}>"))
        self._chain = self._build(list(middleware))
        self._tasks: set[asyncio.Task[list[Reply]]] = set()
        self._accepting = True
        # What runs now and what finished last, for the loop-lag monitor to name the command
        # that held the loop (it may have been its last step): a dict entry and a bounded
        # deque append per command, nothing more on this path.
        self._running: dict[int, Call] = {}  # by id(): refs are random and may repeat
        self._finished: deque[Call] = deque(maxlen=32)
        self._finished_count = 0

    def _build(self, middleware: list[Middleware]) -> Next:
        async def run_handler(call: Call) -> list[Reply]:
            if call.error is not None:
                raise call.error
            assert call.spec is not None
            result = await call.spec.handler(call)
            if result is None:
                return []
            return [result] if isinstance(result, Reply) else list(result)

        chain: Next = run_handler
        for mw in reversed(middleware):
            chain = _link(mw, chain)
        return chain

    @property
    def reaction_commands(self) -> list[ReactionCommand]:
        """The registry's reaction mappings, in order."""
        return self.registry.reactions

    @property
    def mention_fallback(self) -> CommandSpec | None:
        """A mention the grammar cannot parse goes to this spec with args {"text": body}
        (the plain-language intent parser), through the same middleware as any command."""
        return self.registry.mention_fallback

    def set_middleware(self, middleware: Sequence[Middleware]) -> None:
        """Swap the chain (config reload); calls in flight finish on the chain they started."""
        self._chain = self._build(list(middleware))

    # -- entry points ----------------------------------------------------------------------

    def submit(
        self,
        event: Inbound,
        claimed: asyncio.Future[bool] | None = None,
        on_claimed: OnClaimed | None = None,
    ) -> asyncio.Task[list[Reply]] | None:
        """Hand an event to the bus; handled in its own task, returned for whoever wants to
        wait for it (the console, to keep its output in order and to say so when an input
        line got no answer): its result is the replies sent or queued, those of the commands it
        handed over (Call.hand_over) included. Never raises.
        `claimed` (see `admit`) is resolved once the event is recorded as ours or as not
        ours; `on_claimed` is told at the same moment."""
        if not self._accepting:
            # Not claimed, so a platform that redelivers will deliver it to the next run.
            log.warning("shutting down; dropped %s event %s", event.platform, event.event_id)
            settle_claim(claimed, on_claimed, False)
            return None
        return self._spawn(
            self._handle_quietly(event, claimed=claimed, on_claimed=on_claimed),
            f"cmd:{event.platform}:{event.event_id}",
        )

    def _spawn(
        self, work: Coroutine[Any, Any, list[Reply]], name: str
    ) -> asyncio.Task[list[Reply]]:
        """A command's own task, kept until done (drain waits for these)."""
        task = asyncio.get_running_loop().create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def admit(
        self, event: Inbound, work: list[asyncio.Task[list[Reply]]] | None = None
    ) -> bool:
        """Submit the event and wait until its claim is recorded: True when the platform may
        forget it (claimed, a redelivery, or nothing for us), False when it should deliver it
        again (shutting down, or the shared database could not record the claim). A
        platform that acknowledges events (Slack) acknowledges only then, so an instance
        killed between the two loses nothing: the event comes again, or a survivor takes
        the recorded claim over. `work`, when given, receives the task handling the event
        (a platform whose acknowledgement carries the answer, a Teams card button, waits
        for it)."""
        claimed: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        task = self.submit(event, claimed)
        if work is not None and task is not None:
            work.append(task)
        return await asyncio.shield(claimed)

    def admit_soon(self, event: Inbound, on_claimed: OnClaimed) -> None:
        """`admit` without waiting: `on_claimed` is called with its answer the moment the
        claim is settled, right after the commit that recorded it and before the command
        goes on. A burst's acknowledgements then leave together, right after the commit of
        their claims, instead of each waiting for its own task's turn behind every other
        command's work."""
        claimed: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.submit(event, claimed, on_claimed)

    async def _handle_quietly(
        self,
        event: Inbound,
        resumed: float | None = None,
        claimed: asyncio.Future[bool] | None = None,
        on_claimed: OnClaimed | None = None,
    ) -> list[Reply]:
        settled = True  # whatever happens before a claim (not for us, say): nothing to redo
        try:
            return await self.handle(event, resumed=resumed, claimed=claimed, on_claimed=on_claimed)
        except asyncio.CancelledError:
            settled = False  # cut short by shutdown before it was claimed: deliver it again
            raise
        finally:
            settle_claim(claimed, on_claimed, settled)

    def resume(self, event: Inbound, since: float) -> asyncio.Task[list[Reply]] | None:
        """Handle a command taken over from an instance that died before recording its
        answer (claimed at `since`, epoch seconds): replies it had posted are not posted
        again."""
        if not self._accepting:
            return None
        return self._spawn(
            self._handle_quietly(event, since), f"resumed:{event.platform}:{event.event_id}"
        )

    async def handle(
        self,
        event: Inbound,
        *,
        resumed: float | None = None,
        claimed: asyncio.Future[bool] | None = None,
        on_claimed: OnClaimed | None = None,
    ) -> list[Reply]:
        """Handle one event and send its replies; returns them (for tests and benchmarks).

        `resumed`: when another instance claimed this command (then) and died before
        recording its answer; taken over from the event ledger (a reaction there already
        stands for its command)."""
        if resumed is not None and event.kind == "reaction":
            addressed: Addressed | None = Addressed(event.text, "platform")
        elif event.kind == "reaction":
            body = await self._reaction_command(event)
            if body is None:
                return []
            # audited and authorized as the command it stands for, like a button click
            event = replace(event, text=body)
            addressed = Addressed(body, "platform")
        else:
            addressed = self.addressed(event)
        if addressed is None:
            return []
        call = self._parse(event, addressed)
        call.claimed, call.on_claimed = claimed, on_claimed
        if call.error is not None and addressed.how == "thread" and not self._known_root(call):
            return []  # people talking in a thread we started, not a command for us
        failed = False
        self._running[id(call)] = call
        try:
            replies = await self._chain(call)
        except Exception as exc:
            failed = True
            quiet = isinstance(exc, RateLimited) and exc.quiet
            replies = [] if quiet else [render_error(exc, call.ref, self.redact)]
            if event.kind == "reaction":
                # only the person reacting needs to learn why their reaction did nothing
                replies = [replace(r, ephemeral=True) for r in replies]
            if not isinstance(exc, UserError):
                log.error(
                    "internal error ref=%s platform=%s channel=%s actor=%s command=%r",
                    call.ref,
                    event.platform,
                    event.channel,
                    event.actor.id,
                    call.command,
                    exc_info=exc,
                )
        finally:
            del self._running[id(call)]
            self._finished.append(call)
            self._finished_count += 1
        # A refusal or error keeps its own (normal) priority: a flood of refused pages must
        # not jump the queue ahead of a real page's answer.
        priority = call.spec.priority if call.spec and not failed else None
        replies = [
            _with_priority(r, priority) if priority is not None and r.priority > priority else r
            for r in replies
        ]
        claim = call.claim
        if claim is None:
            await self._deliver(call, replies, wait=False)
            return replies + await self._handed_over(call)
        if claim.keyed:
            # Keyed, so a survivor can tell whether this instance's answer went out.
            replies = [replace(r, key=f"{event.event_id}#{i}") for i, r in enumerate(replies)]
        if claim.answerable():
            await self._deliver(call, replies, wait=True, resumed=resumed)
            await claim.answered()
        elif await claim.take_answer():
            # Our heartbeat is late: the others may count us dead and take this over. Marked
            # answered first, so they cannot; if we die while sending, it is lost, not doubled.
            await self._deliver(call, replies, wait=True, resumed=resumed)
        else:
            log.warning(
                "not answering %s event %s: another instance took it over",
                event.platform,
                event.event_id,
            )
        return replies + await self._handed_over(call)

    @staticmethod
    async def _handed_over(call: Call) -> list[Reply]:
        """The replies of the commands this one handed over (each ran as itself, and sent its
        own), once they are done: an event answered that way is not an event left unanswered."""
        answers: list[Reply] = []
        for task in call.handed_over:
            await asyncio.wait([task])
            if task.cancelled() or task.exception() is not None:
                continue  # the bus logged it; its own task answered with the error
            result = task.result()
            if isinstance(result, list):
                answers += [r for r in result if isinstance(r, Reply)]
        return answers

    async def _deliver(
        self, call: Call, replies: list[Reply], *, wait: bool, resumed: float | None = None
    ) -> None:
        """Send the replies in order; with `wait`, each one is sent (or given up on) before
        this returns, so the command can be marked answered. For a `resumed` command, a
        reply the dead instance posted (found by its key) is not posted again."""
        destination = Destination.for_inbound(call.event)
        for i, reply in enumerate(replies):
            if (
                resumed is not None
                and reply.key is not None
                and await self.outbox.posted(destination, reply.key, resumed - 5.0)
            ):
                log.info("answer %s was posted before its instance died", reply.key)
                continue
            if i == 0 and call.replaces is not None:
                # The handler posted a notice first ("Paging…"): the answer replaces it.
                if await self.outbox.edit(call.replaces, reply) is not None:
                    continue
                log.warning("could not edit %s; posting the answer anew", call.replaces.message_id)
            if wait:
                await self.outbox.send(destination, reply)
            else:
                self.outbox.enqueue(destination, reply)

    def activity_mark(self) -> int:
        """How many commands have finished (the loop-lag monitor takes it every tick)."""
        return self._finished_count

    def commands_since(self, mark: int) -> list[str]:
        """Commands running now or finished since `mark`: "intent (ref 1a2b3c4d, slack:U1)"."""
        newer = min(self._finished_count - mark, len(self._finished))
        calls = [*self._running.values(), *list(self._finished)[len(self._finished) - newer :]]
        return [
            f"{c.command or 'unknown'} (ref {c.ref}, {c.event.platform}:{c.event.actor.id})"
            for c in calls
        ]

    def addressed(self, event: Inbound) -> Addressed | None:
        """The command in an event, or None when it is not for us (core/addressing)."""
        return address(event.text, prefix=self.prefix, mentions=self.mentions, kind=event.kind)

    def _parse(self, event: Inbound, addressed: Addressed) -> Call:
        body = addressed.text
        call = Call(
            event=event, spec=None, args={}, prefix=self.prefix, ref=new_ref(), outbox=self.outbox
        )
        if len(body) > MAX_COMMAND_CHARS:
            # Refused before tokenizing (still audited and rate limited by the chain).
            call.error = UsageError(
                f"that message is too long for a command ({len(body):,} characters; "
                f"the limit is {MAX_COMMAND_CHARS:,})",
                hint="shorten it, or put long text in a file or a link",
            )
            return call
        try:
            call.words = tuple(tokenize(body))
            bound = self.registry.resolve(call.words, self.prefix)
            call.spec, call.args = bound.spec, bound.args
        except UsageError as exc:
            call.error = exc
            if call.spec is None and call.words:
                # a known command with bad arguments still gets its role checked and audited
                call.spec = _matched_spec(self.registry, call.words)
            if self.mention_fallback is not None and addressed.by_name:
                call.spec, call.args, call.error = self.mention_fallback, {"text": body}, None
        return call

    def _known_root(self, call: Call) -> bool:
        return bool(call.words) and call.words[0].lower() in self.registry.roots()

    async def _reaction_command(self, event: Inbound) -> str | None:
        """The command a reaction stands for, if any handler maps it to one.

        Reactions by bots never count (another bot's ✅ is not an approval), whatever the
        connector's `allow_bots` says about messages; nor do those of a reactor the connector
        could not look up: not known to be a person is not a person."""
        if event.actor.is_bot:
            return None
        if not event.actor.resolved:
            log.warning(
                "ignored a reaction by %s:%s: could not look the reactor up",
                event.platform,
                event.actor.id,
            )
            return None
        for to_command in self.reaction_commands:
            try:
                command = await to_command(event)
            except Exception:
                log.exception(
                    "reaction mapping failed platform=%s event=%s", event.platform, event.event_id
                )
                continue
            if command:
                return command
        return None

    # -- shutdown --------------------------------------------------------------------------

    async def drain(self, timeout: float) -> int:
        """Stop accepting events and wait up to `timeout` s for in-flight ones.

        Returns how many were still running (and got cancelled)."""
        self._accepting = False
        pending = set(self._tasks)
        if not pending:
            return 0
        _done, still = await asyncio.wait(pending, timeout=timeout)
        for task in still:
            task.cancel()
        return len(still)

    def accepting(self) -> bool:
        return self._accepting

    @property
    def in_flight(self) -> int:
        return len(self._tasks)


def _link(mw: Middleware, nxt: Next) -> Next:
    async def step(call: Call) -> list[Reply]:
        return await mw(call, nxt)

    return step


def _matched_spec(registry: Registry, words: Sequence[str]) -> CommandSpec | None:
    """The longest known command path that prefixes the words (paths are short: only that
    many words are looked at, so this is linear in the message, not quadratic)."""
    lowered = tuple(w.lower() for w in words[: registry.longest])
    for n in range(len(lowered), 0, -1):
        spec = registry.get(lowered[:n])
        if spec is not None:
            return spec
    return None


def _with_priority(reply: Reply, priority: Priority) -> Reply:
    return replace(reply, priority=priority)
