"""The demo status page: used only when nothing real is configured (`Config.demo`), so
`!incident publish`, `identified`, `monitor` and `update --public` can be tried. It keeps its
page incidents in memory; its links are on the reserved `.invalid` domain and say "demo"."""

from __future__ import annotations

import itertools

from chatopsd.features.statuspage.api import PageCall, PageIncident, StatusPageError

WEB = "https://status.demo.invalid"
# service -> component id, as statuspage.components maps them (the demo PagerDuty's services)
COMPONENTS = {"payments": "democomp1", "database": "democomp2"}


class DemoStatusPage:
    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._pages: dict[str, tuple[str, PageIncident]] = {}  # page id -> (our id, state)

    async def create(self, incident_id: str, call: PageCall) -> PageIncident:
        page_id = f"demo{next(self._ids)}"
        return self._keep(page_id, incident_id, call)

    async def update(self, page_incident_id: str, call: PageCall) -> PageIncident:
        ours, _ = self._known(page_incident_id)
        return self._keep(page_incident_id, ours, call)

    async def get(self, page_incident_id: str) -> PageIncident:
        return self._known(page_incident_id)[1]

    async def find(self, incident_id: str) -> PageIncident | None:
        for ours, page in self._pages.values():
            if ours == incident_id and page.status != "resolved":
                return page
        return None

    def _known(self, page_incident_id: str) -> tuple[str, PageIncident]:
        found = self._pages.get(page_incident_id)
        if found is None:
            raise StatusPageError(f"the demo status page has no incident {page_incident_id}")
        return found

    def _keep(self, page_id: str, ours: str, call: PageCall) -> PageIncident:
        page = PageIncident(
            page_id,
            call.status,
            shortlink=f"{WEB}/incidents/{page_id}",
            latest_update=(call.status, call.message or ""),
        )
        self._pages[page_id] = (ours, page)
        return page
