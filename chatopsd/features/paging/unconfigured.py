"""What stands in for PagerDuty when it is not configured (and the daemon is no demo): it
says so, and where to read how, instead of inventing people."""

from __future__ import annotations

from collections.abc import Sequence

from chatopsd.core.errors import Unavailable
from chatopsd.features.paging.api import PageResult, Person, Roster


class NotConfigured:
    _why = "PagerDuty is not configured (add a [pagerduty] section: see docs/pagerduty.md)"

    async def roster(self, group: str) -> Roster:
        return Roster((), as_of=None, error=self._why, configured=False)

    async def find(self, query: str, *, search: bool = True) -> Sequence[Person]:
        raise Unavailable(self._why)

    async def page(self, people: Sequence[Person], summary: str, key: str) -> PageResult:
        raise Unavailable(self._why)
