"""Plain-language mentions (`@chatopsd who is on call for payments?`): what a mention the
grammar cannot parse goes to."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chatopsd.config import Config
    from chatopsd.runtime import Feature, Runtime


def install(runtime: Runtime, config: Config) -> Feature:
    from chatopsd.features.approvals.api import APPROVALS
    from chatopsd.features.intents.commands import IntentHandler
    from chatopsd.runtime import Feature

    pd = config.pagerduty
    if pd is None and config.demo:  # the demo PagerDuty's services and fallback contacts
        from chatopsd.features.pagerduty.api import section

        pd = section(config)
    handler = IntentHandler(
        runtime.commands,
        runtime.services.get(APPROVALS),
        prefix=config.chatopsd.prefix,
        services=[s.name for s in pd.services] if pd is not None else [],
        submit=runtime.submit,
    )
    return Feature("intents", commands=handler.commands(), mention_fallback=handler.spec())
