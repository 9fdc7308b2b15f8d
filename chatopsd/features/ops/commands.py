"""Operations commands from config (`[[commands]]`): validate, ask for approval, run, report.

The order matters: arguments are validated before anything else (a refused value never reaches
a request, let alone a process); then the approval matrix decides whether to run now, ask for
approval, or ask the requester to confirm; a granted request comes back through the bus and
runs here with its grant checked against the exact command text.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from chatopsd.config import OpsCommandSection
from chatopsd.core.commands import Arg, CommandSpec
from chatopsd.core.context import Call
from chatopsd.core.errors import UsageError, UserError
from chatopsd.core.messages import Reply, Sent
from chatopsd.core.outcome import Outcome
from chatopsd.core.ports import AuditEntry, AuditLog, Clock
from chatopsd.features.approvals.api import Approvals, Rule, command_line, requirement

if TYPE_CHECKING:
    from chatopsd.features.ops.runner import RunResult

log = logging.getLogger("chatopsd.ops")


class Busy(UserError):
    """The command already runs as often as it may at once."""


class OpsHandler:
    def __init__(
        self,
        commands: Sequence[OpsCommandSection],
        rules: Sequence[Rule],
        approvals: Approvals,
        audit: AuditLog,
        clock: Clock,
        *,
        prefix: str = "!",
        progress_interval: float = 2.0,
        kill_grace: float = 5.0,
    ) -> None:
        self.commands_cfg = {c.name: c for c in commands}
        self.rules = list(rules)
        self.approvals, self.audit, self.clock = approvals, audit, clock
        self.prefix = prefix
        self.progress_interval, self.kill_grace = progress_interval, kill_grace
        self._slots: dict[str, asyncio.Semaphore] = {}  # max_concurrent runs per command

    def reconfigure(self, commands: Sequence[OpsCommandSection], rules: Sequence[Rule]) -> None:
        """A reload: new `[[commands]]` and `[[approvals.rules]]` apply to the next command.
        (Runs in flight finish as they started; their slots are kept per name.)"""
        self.commands_cfg = {c.name: c for c in commands}
        self.rules = list(rules)

    def commands(self) -> list[CommandSpec]:
        return [
            CommandSpec(
                tuple(c.name.split()),
                c.summary or f"runs {c.run[0]}",
                self.handle,
                tuple(Arg(a, _arg_help(c, a), choices=()) for a in c.args),
                role=c.role,
                mutates=True,
                effects=True,  # runs a process: never twice for one command
            )
            for c in self.commands_cfg.values()
        ]

    async def handle(self, call: Call) -> Reply | None:
        assert call.spec is not None
        cfg = self.commands_cfg.get(call.spec.name)
        if cfg is None:  # removed by a reload while this call was on its way
            raise UsageError(f"{self.prefix}{call.spec.name} is no longer configured")
        # the runner loads with the first command run (a daemon may have none configured)
        from chatopsd.features.ops.runner import ArgRule, validate

        rules = [ArgRule(a, cfg.patterns.get(a), tuple(cfg.choices.get(a, ()))) for a in cfg.args]
        values = validate(rules, call.args)  # raises before anything is stored or run
        text = command_line(cfg.name, [values[a] for a in cfg.args])
        need = requirement(self.rules, cfg.name, values, destructive=cfg.destructive)
        grant = await self.approvals.grant_for(call, text)
        granted = grant is not None and (need.kind == grant.kind or need.kind is None)
        if need.kind is not None and not granted:
            if need.kind == "approval":
                summary = cfg.summary or f"runs {cfg.run[0]}"
            else:
                summary = f"{self.prefix}{cfg.name} is marked destructive"
            await self.approvals.request(
                call,
                kind=need.kind,
                command=text,
                summary=summary,
                needed=need.approvals,
                role=need.role,
            )
            call.set_outcome(Outcome.PENDING, f"awaiting {need.kind}")
            return None
        slots = self._slots.setdefault(cfg.name, asyncio.Semaphore(cfg.max_concurrent))
        if slots.locked():
            if grant is None:
                raise Busy(
                    f"{self.prefix}{cfg.name} is already running ({cfg.max_concurrent} at a time)",
                    hint="try again when it has finished",
                )
            # an approved request is not thrown away: it waits its turn
            call.respond(Reply(text=f"{self.prefix}{text} waits for the running one to finish"))
        async with slots:
            result = await self._run(call, cfg, values, text, grant.id if grant else "")
        cause = _outcome(result)
        outcome = Outcome.OK if result.exit_code == 0 and not result.timed_out else Outcome.FAILED
        call.set_outcome(outcome, cause)
        if grant is not None:
            await self.approvals.record_result(grant, cause)
        await self.audit.append(
            AuditEntry(
                at=self.clock.now(),
                platform=call.event.platform,
                channel=call.event.channel,
                thread=call.event.thread,
                actor=call.event.actor.id,
                actor_name=call.event.actor.display,
                kind="run",
                text=text,
                command=f"{cfg.name} (run)",
                outcome=outcome,
                duration_ms=round(result.duration * 1000, 3),
                event_id=call.event.event_id,
                ref=call.ref,
                cause=cause,
            )
        )
        return _report(self.prefix, text, result)

    async def _run(
        self, call: Call, cfg: OpsCommandSection, values: dict[str, str], text: str, grant: str
    ) -> RunResult:
        from chatopsd.features.ops.runner import child_env, render, run_argv

        argv = render(cfg.run, values)
        started: Sent | None = await call.outbox.send(
            call.destination, Reply(text=f"running {self.prefix}{text} …")
        )

        async def progress(output: str) -> None:
            if started is not None:
                await call.outbox.edit(
                    started, Reply(text=f"running {self.prefix}{text} …", code=output or None)
                )

        log.info("running %s for %s", argv, call.event.actor.id)
        return await run_argv(
            argv,
            timeout=cfg.timeout_seconds,
            max_output=cfg.max_output_chars,
            env=child_env(
                {
                    "CHATOPS_ACTOR": call.event.actor.display,
                    "CHATOPS_COMMAND": text,
                    "CHATOPS_APPROVAL": grant,
                }
            ),
            on_progress=progress,
            progress_interval=self.progress_interval,
            kill_grace=self.kill_grace,
        )


def _arg_help(cfg: OpsCommandSection, arg: str) -> str:
    if arg in cfg.choices:
        return "one of " + ", ".join(cfg.choices[arg])
    return f"must match {cfg.patterns[arg]}" if arg in cfg.patterns else ""


def _outcome(result: RunResult) -> str:
    if result.timed_out:
        return f"timed out after {result.duration:.1f} s; process group killed"
    return f"exit {result.exit_code} after {result.duration:.1f} s"


def _report(prefix: str, text: str, result: RunResult) -> Reply:
    if result.timed_out:
        head = f"{prefix}{text} timed out after {result.duration:.1f} s and was killed."
    elif result.exit_code == 0:
        head = f"{prefix}{text} finished OK (exit 0) in {result.duration:.1f} s."
    else:
        head = f"{prefix}{text} FAILED with exit {result.exit_code} in {result.duration:.1f} s."
    if result.dropped_chars:
        head += f" Output truncated: the first {result.dropped_chars} characters are not shown."
    return Reply(text=head, code=result.output or "(no output)")
