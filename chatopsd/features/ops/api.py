"""What other features may use of the operations commands: the `[[commands]]` and
`[[approvals.rules]]` this daemon runs with (the demo's `!deploy` when `Config.demo` and none
are configured). The fallback card shows them as what to run by hand."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chatopsd.config import ApprovalRuleSection, Config, OpsCommandSection


def configured(config: Config) -> tuple[list[OpsCommandSection], list[ApprovalRuleSection]]:
    if config.demo and not config.commands:
        from chatopsd.features.ops import demo

        return demo.commands(), demo.rules()
    return list(config.commands), list(config.approvals.rules)
