"""`!help`: the command list and each command's usage, generated from the registered specs."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chatopsd.config import Config
    from chatopsd.runtime import Feature, Runtime


def install(runtime: Runtime, config: Config) -> Feature:
    from chatopsd.features.help.commands import HelpHandler
    from chatopsd.runtime import Feature

    return Feature("help", commands=HelpHandler(runtime.commands).commands())
