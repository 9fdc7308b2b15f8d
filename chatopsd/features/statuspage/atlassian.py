"""A small Atlassian Statuspage v1 client on the HTTP transport: create, update, find incidents.

One request per call and no retries here: the durable queue (handlers/publish.py) decides
when to try again, so retries survive a restart and keep each incident's calls in order.
Every failure is a `StatuspageError` whose message a person can act on; `retry_after` is set
when Statuspage asked us to slow down (420 or 429), and `maybe_done` when the request may have
taken effect although we got no usable answer (timeout, dropped connection, malformed JSON).
The API key never appears in an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chatopsd.httpclient import HttpError, HttpTransport

SLOW_DOWN = (420, 429)


class StatuspageError(Exception):
    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        maybe_done: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.maybe_done = maybe_done

    @property
    def slow_down(self) -> bool:
        return self.status in SLOW_DOWN


@dataclass(frozen=True, slots=True)
class PageIncident:
    id: str
    status: str
    shortlink: str | None
    metadata: dict[str, Any]
    latest_update: tuple[str, str] | None = None  # (status, body) of the newest update


class StatuspageClient:
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

    async def create_incident(self, incident: dict[str, Any]) -> PageIncident:
        return _incident(
            await self._call("POST", f"/pages/{self.page_id}/incidents", {"incident": incident})
        )

    async def update_incident(
        self, page_incident_id: str, incident: dict[str, Any]
    ) -> PageIncident:
        path = f"/pages/{self.page_id}/incidents/{page_incident_id}"
        return _incident(await self._call("PATCH", path, {"incident": incident}))

    async def get_incident(self, page_incident_id: str) -> PageIncident:
        return _incident(
            await self._call("GET", f"/pages/{self.page_id}/incidents/{page_incident_id}", None)
        )

    async def unresolved(self) -> list[PageIncident]:
        found = await self._call("GET", f"/pages/{self.page_id}/incidents/unresolved", None)
        if not isinstance(found, list):
            raise StatuspageError(
                "Statuspage answered an unexpected shape for unresolved incidents"
            )
        return [_incident(i) for i in found]

    async def _call(self, method: str, path: str, body: dict[str, Any] | None) -> Any:
        headers = {"Authorization": f"OAuth {self._key}", "Accept": "application/json"}
        try:
            answer = await self.http.request(
                method, self.base + path, json=body, headers=headers, timeout=self.timeout
            )
            return answer.json()
        except HttpError as exc:
            raise _mapped(exc, method, path) from None


def _mapped(exc: HttpError, method: str, path: str) -> StatuspageError:
    """The transport's error in Statuspage's words: 420 and 429 say "slow down"."""
    if exc.kind == "status" and exc.status is not None:
        what = "rate limited" if exc.status in SLOW_DOWN else "error"
        shown = f": {exc.detail}" if exc.detail and exc.status not in SLOW_DOWN else ""
        return StatuspageError(
            f"HTTP {exc.status} ({what}) from Statuspage {method} {path}{shown}",
            status=exc.status,
            retry_after=exc.retry_after,
        )
    if exc.kind == "malformed":
        return StatuspageError(
            f"Statuspage answered {method} {path} with malformed JSON ({exc.detail})",
            status=exc.status,
            maybe_done=exc.maybe_done,
        )
    return StatuspageError(exc.text, maybe_done=exc.maybe_done)


def _incident(data: Any) -> PageIncident:
    if not isinstance(data, dict) or not isinstance(data.get("id"), str):
        raise StatuspageError("Statuspage answered without an incident id", maybe_done=True)
    metadata = data.get("metadata")
    updates = data.get("incident_updates")
    latest = None
    if isinstance(updates, list) and updates and isinstance(updates[0], dict):
        latest = (str(updates[0].get("status") or ""), str(updates[0].get("body") or ""))
    return PageIncident(
        id=data["id"],
        status=str(data.get("status") or ""),
        shortlink=data.get("shortlink") if isinstance(data.get("shortlink"), str) else None,
        metadata=metadata if isinstance(metadata, dict) else {},
        latest_update=latest,
    )
