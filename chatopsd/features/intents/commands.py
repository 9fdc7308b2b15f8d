"""Plain-language mentions: `@chatopsd who is on call for payments?`.

The bus hands every mention its grammar cannot parse to `!intent` (the registry's mention
fallback). The parser (intents/parser.py) turns it into command text; read-only commands are
re-dispatched through the bus at once (so the real command is authorized and audited as
itself); paging and mutating ones become a confirmation request the asker must click or react
to first.
"""

from __future__ import annotations

from collections.abc import Sequence

from chatopsd.core.commands import Arg, CommandSpec, Registry
from chatopsd.core.context import Call
from chatopsd.core.errors import UsageError
from chatopsd.core.grammar import tokenize
from chatopsd.core.messages import Inbound, Reply
from chatopsd.core.outcome import Outcome
from chatopsd.features.approvals.api import Approvals
from chatopsd.runtime import Submit


class IntentHandler:
    def __init__(
        self,
        registry: Registry,
        approvals: Approvals,
        *,
        prefix: str = "!",
        services: Sequence[str] = (),
        submit: Submit | None = None,
    ) -> None:
        self.registry, self.approvals = registry, approvals
        self.prefix, self.services = prefix, tuple(services)
        self.submit = submit  # the bus's: a read-only command runs through it as itself

    def spec(self) -> CommandSpec:
        return CommandSpec(
            ("intent",),
            "understand a plain-language request (what mentions of the bot go to)",
            self.understand,
            (Arg("text", "e.g. who is on call for payments", kind="rest"),),
            examples=("intent who is on call for payments", "intent page the IC"),
        )

    def commands(self) -> list[CommandSpec]:
        return [self.spec()]

    async def understand(self, call: Call) -> Reply | None:
        # the parser (its patterns compiled at import) loads with the first mention it reads
        from chatopsd.features.intents.parser import parse

        text = call.text("text") or ""
        intent = parse(text, self.services)
        p = self.prefix
        if intent.ask is not None:
            return Reply(text=intent.ask)
        if intent.say is not None:
            return Reply(text=intent.say)
        if intent.command is None:
            self._grammar_error(text)
            call.set_outcome(Outcome.USER_ERROR, "not understood")
            return Reply(
                text=(
                    f"Sorry, I did not understand “{text[:200]}”. Try “who is on call”, "
                    "“what's the status”, “page the IC”, “acknowledge INC-2026-0042” or "
                    f"“create an incident for API errors”; {p}help lists every command."
                )
            )
        try:
            self.registry.resolve(tokenize(intent.command), p)
        except UsageError:
            call.set_outcome(Outcome.USER_ERROR, f"no command {intent.command!r}")
            return Reply(
                text=(
                    f"I read that as {p}{intent.command} ({intent.summary}), but this "
                    f"chatopsd has no such command. {p}help lists what it has."
                )
            )
        if intent.confirm:
            await self.approvals.request(
                call,
                kind="confirm",
                command=intent.command,
                summary=f"I read “{text[:200]}” as: {intent.summary}",
            )
            call.set_outcome(Outcome.PENDING, "awaiting confirmation")
            return None
        if self.submit is not None:
            e = call.event
            task = self.submit(
                Inbound(
                    platform=e.platform,
                    channel=e.channel,
                    actor=e.actor,
                    text=intent.command,
                    kind="slash",
                    event_id=f"intent:{e.event_id or call.ref}",
                    thread=e.thread,
                    message_id=e.message_id,
                )
            )
            if task is not None:
                call.hand_over(task)  # its answer is this mention's answer
        return None

    def _grammar_error(self, text: str) -> None:
        """Text starting with a known command word gets the grammar's own message (typos
        get "did you mean"), not generic help."""
        try:
            words = tokenize(text)
        except UsageError:
            return
        if words and words[0].lower() in self.registry.roots():
            self.registry.resolve(words, self.prefix)
