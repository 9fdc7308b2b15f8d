"""Operations commands from the config (`[[commands]]`): validated, approved or confirmed as
`[[approvals.rules]]` say, run as an argument list, reported and audited."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chatopsd.config import Config
    from chatopsd.features.approvals.api import Rule
    from chatopsd.runtime import Feature, Runtime


def rules(config: Config) -> list[Rule]:
    from chatopsd.features.approvals.api import Rule
    from chatopsd.features.ops.api import configured

    return [Rule(r.command, dict(r.when), r.count, r.role) for r in configured(config)[1]]


def install(runtime: Runtime, config: Config) -> Feature:
    from chatopsd.features.approvals.api import APPROVALS
    from chatopsd.features.ops.api import configured
    from chatopsd.features.ops.commands import OpsHandler
    from chatopsd.runtime import Feature

    approvals = runtime.services.get(APPROVALS)
    commands = configured(config)[0]  # the demo's `!deploy` in the demo
    handler = OpsHandler(
        commands,
        rules(config),
        approvals,
        runtime.audit,
        runtime.clock,
        prefix=config.chatopsd.prefix,
    )
    registry = runtime.commands

    def reload(new: Config) -> Sequence[str]:
        """New `[[approvals.rules]]` apply at once; new `[[commands]]` replace the running
        ones in the registry, unless one would take a built-in command's name: then the
        running ones stay, and the note says why."""
        ours = {spec.path for spec in handler.commands()}
        fresh = OpsHandler(new.commands, [], approvals, runtime.audit, runtime.clock).commands()
        for spec in fresh:
            if spec.path not in ours and registry.get(spec.path) is not None:
                handler.reconfigure(list(handler.commands_cfg.values()), rules(new))
                return [f"commands (kept the running ones: {spec.name!r} is a built-in command)"]
        for path in ours:
            registry.remove(path)
        handler.reconfigure(new.commands, rules(new))
        for spec in handler.commands():
            registry.add(spec)
        return ()

    return Feature(
        "ops",
        commands=handler.commands(),
        reloads=("commands", "approvals.rules"),
        reload=reload,
        parts=[handler],
    )
