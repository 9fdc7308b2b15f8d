"""Follow-ups of an incident (`!incident followup ...`, 📌/📝 on a message) and their export
as tickets (GitHub or Jira) when the incident closes."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chatopsd.config import Config
    from chatopsd.features.followups.trackers import Tracker
    from chatopsd.runtime import Feature, Runtime


def install(runtime: Runtime, config: Config) -> Feature:
    from chatopsd.features.followups.commands import FollowUps
    from chatopsd.features.followups.store import SqlFollowUps
    from chatopsd.features.incidents.api import FOLLOWUP_ROWS, INCIDENTS
    from chatopsd.runtime import Feature

    tickets = config.tickets
    incidents = runtime.services.get(INCIDENTS)
    followups = FollowUps(
        SqlFollowUps(runtime.store),
        incidents,
        _tracker(runtime, config),
        runtime.outbox,
        runtime.audit,
        runtime.clock,
        labels=tickets.labels if tickets else (),
        incident_url=tickets.incident_url if tickets else None,
    )
    incidents.subscribe(followups)
    runtime.services.provide(FOLLOWUP_ROWS, followups)
    return Feature(
        "followups",
        commands=followups.commands(),
        reactions=[followups.reaction_command],
        parts=[followups],
    )


def _tracker(runtime: Runtime, config: Config) -> Tracker | None:
    t = config.tickets
    if t is None:
        if not config.demo:
            return None
        from chatopsd.features.followups.demo import DemoTracker

        return DemoTracker()  # nothing real configured: tickets numbered in memory
    from chatopsd.features.followups.trackers import GitHubIssues, JiraIssues

    token = t.token.get_secret_value()
    if t.kind == "github":
        return GitHubIssues(
            runtime.http,
            token,
            t.project,
            api_url=t.url or "https://api.github.com",
            timeout=t.timeout_seconds,
        )
    assert t.url is not None  # the config requires it for jira
    return JiraIssues(
        runtime.http,
        token,
        t.project,
        site_url=t.url,
        email=t.email,
        issue_type=t.issue_type,
        timeout=t.timeout_seconds,
    )
