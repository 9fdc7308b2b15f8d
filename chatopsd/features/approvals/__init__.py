"""Approvals and confirmations: `!approve`, `!reject`, `!approvals`, ✅/❌ on a request, the
expiry job, and the granted command run again through the bus as its requester."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chatopsd.config import Config
    from chatopsd.runtime import Feature, Runtime


def install(runtime: Runtime, config: Config) -> Feature:
    from chatopsd.features.approvals.api import APPROVALS
    from chatopsd.features.approvals.service import ApprovalService
    from chatopsd.features.approvals.store import SqlApprovals
    from chatopsd.runtime import Feature, Job

    section = config.approvals
    service = ApprovalService(
        SqlApprovals(runtime.store),
        runtime.audit,
        runtime.clock,
        runtime.access,
        runtime.outbox,
        runtime.identity,
        expire_seconds=section.expire_seconds,
        prefix=config.chatopsd.prefix,
        times=runtime.times,
        submit=runtime.submit,
    )
    runtime.services.provide(APPROVALS, service)

    def reload(new: Config) -> Sequence[str]:
        service.reconfigure(new.approvals.expire_seconds)
        return ()

    return Feature(
        "approvals",
        commands=service.commands(),
        jobs=[Job("approvals-expire", section.sweep_seconds, service.sweep)],
        reactions=[service.reaction_command],
        rate_exempt=service.is_grant,
        reloads=("approvals.expire_seconds",),
        reload=reload,
        parts=[service],
    )
