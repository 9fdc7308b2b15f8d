"""Alertmanager as a status source: GET {url}/api/v2/alerts, active alerts only.

Silenced and inhibited alerts (state "suppressed") and ones not yet processed are left out,
both by the query filters and again by their `status.state`, so an Alertmanager that ignores a
filter cannot make a silenced alert page the channel. The worst severity label wins.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from chatopsd.features.status.api import Alert, Reading, SourceError, Verdict
from chatopsd.httpclient import HttpError, HttpTransport, display, join

DEFAULT_SEVERITIES = {"critical": "CRITICAL", "page": "CRITICAL", "warning": "DEGRADED"}


class AlertmanagerStatus:
    def __init__(
        self,
        name: str,
        url: str,
        http: HttpTransport,
        *,
        timeout: float = 5.0,
        severity_map: Mapping[str, str] | None = None,
        default_verdict: str = "DEGRADED",
        matchers: tuple[str, ...] = (),
    ) -> None:
        self.name = name
        self.url = join(url, "/api/v2/alerts")
        self.http = http
        self.timeout = timeout
        self.severity_map = {
            k.lower(): Verdict(v) for k, v in (severity_map or DEFAULT_SEVERITIES).items()
        }
        self.default_verdict = Verdict(default_verdict)
        self.params = [
            ("active", "true"),
            ("silenced", "false"),
            ("inhibited", "false"),
            ("unprocessed", "false"),
            *(("filter", m) for m in matchers),
        ]

    async def read(self) -> Reading:
        try:
            return await self.fetch()
        except (HttpError, SourceError) as exc:
            return Reading(self.name, Verdict.UNKNOWN, error=str(exc))
        except Exception as exc:  # never raise out of read()
            return Reading(self.name, Verdict.UNKNOWN, error=f"{type(exc).__name__}: {exc}")

    async def fetch(self) -> Reading:
        """One read that raises what went wrong (HttpError, SourceError): what `read` and
        `doctor` both call."""
        payload = await self.http.get_json(self.url, params=self.params, timeout=self.timeout)
        alerts = self._parse(payload)
        verdict = max((a.verdict for a in alerts), key=lambda v: v.rank, default=Verdict.NORMAL)
        return Reading(self.name, verdict, tuple(alerts))

    def _parse(self, payload: Any) -> list[Alert]:
        if not isinstance(payload, list):
            raise SourceError(f"{display(self.url)}: expected a JSON list of alerts")
        alerts = []
        for item in payload:
            if not isinstance(item, dict):
                raise SourceError(f"{display(self.url)}: an alert is not a JSON object")
            status = item.get("status")
            state = status.get("state") if isinstance(status, dict) else None
            if state != "active":
                continue  # suppressed (silenced/inhibited) or unprocessed
            labels = _table(item.get("labels"))
            notes = _table(item.get("annotations"))
            severity = str(labels.get("severity", "")).lower()
            verdict = self.severity_map.get(severity, self.default_verdict)
            name = str(labels.get("alertname") or "(unnamed alert)")
            summary = str(notes.get("summary") or notes.get("description") or "")
            key = str(item.get("fingerprint") or sorted(labels.items()))
            alerts.append(
                Alert(name, verdict, summary, self.name, key, _time(item.get("startsAt")))
            )
        return alerts


def _time(value: Any) -> datetime | None:
    """startsAt (RFC 3339, e.g. 2026-11-29T21:05:00.123456789Z); None if absent or odd."""
    if not isinstance(value, str) or not value:
        return None
    text = value.replace("Z", "+00:00")
    # Go prints nanoseconds; fromisoformat takes at most microseconds.
    if "." in text:
        head, _, rest = text.partition(".")
        digits = len(rest) - len(rest.lstrip("0123456789"))
        text = f"{head}.{rest[: min(digits, 6)]}{rest[digits:]}"
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        return None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _table(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
