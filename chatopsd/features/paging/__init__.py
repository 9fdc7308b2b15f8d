"""`!ic`: who is on call (the IC, responders, a service's people), `!ic page`, and paging a
person or the responders; the page log that answers "already paged". Asks the directory and
the pager the PagerDuty feature provides; a console-only daemon without PagerDuty gets demo
people (the demo PagerDuty), anything else without it says PagerDuty is not configured."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chatopsd.config import Config
    from chatopsd.features.paging.api import Directory, Pager
    from chatopsd.runtime import Feature, Runtime


def install(runtime: Runtime, config: Config) -> Feature:
    from chatopsd.features.incidents.api import INCIDENTS
    from chatopsd.features.paging.api import PAGE_LOG, MemoryPageLog, Person
    from chatopsd.features.paging.commands import PagingHandler
    from chatopsd.runtime import Feature

    pd = config.pagerduty
    if pd is None and config.demo:  # the demo PagerDuty's services and fallback contacts
        from chatopsd.features.pagerduty.api import section

        pd = section(config)
    directory, pager = _roster(runtime, config)
    handler = PagingHandler(
        directory,
        pager,
        page_deadline=pd.page_deadline_seconds if pd is not None else 8.0,
        on_paged=runtime.services.get(INCIDENTS).link_page,
        times=runtime.times,
        clock=runtime.clock,
        fallback=[
            Person(f"fallback-{i}", c.name, phones=(c.phone,))
            for i, c in enumerate(pd.fallback_contacts if pd is not None else [])
        ],
        # the demo's log is in memory: nothing is really paged
        page_log=runtime.services.find(PAGE_LOG) or MemoryPageLog(),
        repage_window=pd.repage_window_seconds if pd is not None else 300.0,
        services=[s.name for s in pd.services] if pd is not None else [],
        identities=runtime.identity,
    )
    return Feature("paging", commands=handler.commands(), parts=[handler])


def _roster(runtime: Runtime, config: Config) -> tuple[Directory, Pager]:
    from chatopsd.features.paging.api import DIRECTORY, PAGER
    from chatopsd.features.paging.unconfigured import NotConfigured

    directory, pager = runtime.services.find(DIRECTORY), runtime.services.find(PAGER)
    if directory is not None and pager is not None:
        return directory, pager  # PagerDuty's, or the demo PagerDuty's (Config.demo)
    return NotConfigured(), NotConfigured()
