"""Atlassian Statuspage (API v1) as a StatusPageProvider, on the HTTP transport.

Statuspage's vocabulary lives here and nowhere else: the request bodies, its impact names
(critical, major, minor) and component statuses (major_outage ... operational), chosen from
the neutral PageCall's severity and status, and the incident metadata that lets a create whose
answer was lost be found instead of sent twice.

One request per call and no retries here (the feature's durable queue decides). Every failure
is a StatusPageError whose message a person can act on: `slow_down` with `retry_after` when
Statuspage asked us to slow down (420 or 429), `maybe_done` when the request may have taken
effect although we got no usable answer (timeout, dropped connection, malformed JSON). The API
key never appears in an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chatopsd.features.statuspage.api import PageCall, PageIncident, StatusPageError
from chatopsd.httpclient import HttpError, HttpTransport

SLOW_DOWN = (420, 429)
# severity (SEV-1..4) -> the page's impact, and the affected components' status
IMPACT: dict[int, str] = {1: "critical", 2: "major", 3: "minor", 4: "minor"}
COMPONENT_STATUS: dict[int, str] = {
    1: "major_outage",
    2: "partial_outage",
    3: "degraded_performance",
    4: "degraded_performance",
}
METADATA_KEY = "chatopsd"


def create_body(incident_id: str, call: PageCall) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": (call.name or "")[:255],
        "status": call.status,
        "deliver_notifications": call.notify,
        # lets a retry after a lost answer find the incident instead of creating a second one
        "metadata": {METADATA_KEY: {"incident_id": incident_id}},
    }
    if call.severity is not None:
        body["impact_override"] = IMPACT[call.severity]
    if call.components:
        body["component_ids"] = list(call.components)
    return _with_components_and_text(body, call)


def update_body(call: PageCall) -> dict[str, Any]:
    body: dict[str, Any] = {"status": call.status, "deliver_notifications": call.notify}
    if call.severity is not None:
        body["impact_override"] = IMPACT[call.severity]
    return _with_components_and_text(body, call)


def _with_components_and_text(body: dict[str, Any], call: PageCall) -> dict[str, Any]:
    """The components' status follows the severity when it is given, and goes back to
    operational on resolution; otherwise the page keeps what it shows."""
    if call.components and call.severity is not None:
        body["components"] = {c: COMPONENT_STATUS[call.severity] for c in call.components}
    elif call.components and call.status == "resolved":
        body["components"] = {c: "operational" for c in call.components}
    if call.message:
        body["body"] = call.message
    return body


def call_from_body(body: Mapping[str, Any]) -> PageCall:
    """The PageCall a Statuspage request body stands for: a queued call written before the
    queue spoke PageCall (it stored the body itself) is sent through the port like any other."""
    impact = body.get("impact_override")
    severity = min((s for s, name in IMPACT.items() if name == impact), default=None)
    components = body.get("components")
    ids = list(components) if isinstance(components, dict) else []
    for cid in body.get("component_ids") or ():
        if cid not in ids:
            ids.append(cid)
    return PageCall(
        status=str(body.get("status") or "investigating"),
        message=body.get("body") if isinstance(body.get("body"), str) else None,
        components=tuple(str(c) for c in ids),
        severity=severity,
        name=body.get("name") if isinstance(body.get("name"), str) else None,
        notify=bool(body.get("deliver_notifications", True)),
    )


class AtlassianStatuspage:
    def __init__(
        self,
        http: HttpTransport,
        api_url: str,
        api_key: str,
        page_id: str,
        *,
        timeout: float = 10.0,
    ) -> None:
        self.http = http
        self.base = api_url.rstrip("/")
        self._key = api_key
        self.page_id = page_id
        self.timeout = timeout

    async def create(self, incident_id: str, call: PageCall) -> PageIncident:
        body = {"incident": create_body(incident_id, call)}
        return _incident(await self._call("POST", f"/pages/{self.page_id}/incidents", body))

    async def update(self, page_incident_id: str, call: PageCall) -> PageIncident:
        path = f"/pages/{self.page_id}/incidents/{page_incident_id}"
        return _incident(await self._call("PATCH", path, {"incident": update_body(call)}))

    async def get(self, page_incident_id: str) -> PageIncident:
        return _incident(
            await self._call("GET", f"/pages/{self.page_id}/incidents/{page_incident_id}", None)
        )

    async def find(self, incident_id: str) -> PageIncident | None:
        found = await self._call("GET", f"/pages/{self.page_id}/incidents/unresolved", None)
        if not isinstance(found, list):
            raise StatusPageError(
                "Statuspage answered an unexpected shape for unresolved incidents"
            )
        for data in found:
            page_incident = _incident(data)
            metadata = data.get("metadata")
            mine = metadata.get(METADATA_KEY) if isinstance(metadata, dict) else None
            if isinstance(mine, dict) and mine.get("incident_id") == incident_id:
                return page_incident
        return None

    async def _call(self, method: str, path: str, body: dict[str, Any] | None) -> Any:
        headers = {"Authorization": f"OAuth {self._key}", "Accept": "application/json"}
        try:
            answer = await self.http.request(
                method, self.base + path, json=body, headers=headers, timeout=self.timeout
            )
            return answer.json()
        except HttpError as exc:
            raise _mapped(exc, method, path) from None


def _mapped(exc: HttpError, method: str, path: str) -> StatusPageError:
    """The transport's error in Statuspage's words: 420 and 429 say "slow down"."""
    if exc.kind == "status" and exc.status is not None:
        what = "rate limited" if exc.status in SLOW_DOWN else "error"
        shown = f": {exc.detail}" if exc.detail and exc.status not in SLOW_DOWN else ""
        return StatusPageError(
            f"HTTP {exc.status} ({what}) from Statuspage {method} {path}{shown}",
            slow_down=exc.status in SLOW_DOWN,
            retry_after=exc.retry_after,
        )
    if exc.kind == "malformed":
        return StatusPageError(
            f"Statuspage answered {method} {path} with malformed JSON ({exc.detail})",
            maybe_done=exc.maybe_done,
        )
    return StatusPageError(exc.text, maybe_done=exc.maybe_done)


def _incident(data: Any) -> PageIncident:
    if not isinstance(data, dict) or not isinstance(data.get("id"), str):
        raise StatusPageError("Statuspage answered without an incident id", maybe_done=True)
    updates = data.get("incident_updates")
    latest = None
    if isinstance(updates, list) and updates and isinstance(updates[0], dict):
        latest = (str(updates[0].get("status") or ""), str(updates[0].get("body") or ""))
    return PageIncident(
        id=data["id"],
        status=str(data.get("status") or ""),
        shortlink=data.get("shortlink") if isinstance(data.get("shortlink"), str) else None,
        latest_update=latest,
    )
