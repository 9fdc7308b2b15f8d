"""`!help` and `!help <command>`, generated from the registered specs."""

from __future__ import annotations

from chatopsd.core.commands import Arg, CommandSpec, Registry, help_lines
from chatopsd.core.context import Call
from chatopsd.core.messages import Reply


class HelpHandler:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def commands(self) -> list[CommandSpec]:
        return [
            CommandSpec(
                path=("help",),
                summary="list commands, or explain one",
                handler=self.help,
                args=(Arg("command", "a command, e.g. ic page", kind="rest", required=False),),
                examples=("help", "help ic page"),
            )
        ]

    async def help(self, call: Call) -> Reply:
        topic = (call.text("command") or "").split()
        lines = help_lines(self.registry, call.prefix, topic)
        title = f"{call.prefix}{' '.join(topic)}" if topic else "chatopsd commands"
        return Reply(title=title, code="\n".join(lines))
