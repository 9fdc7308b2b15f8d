"""Prometheus as a status source: an instant query; a non-empty result is the configured state."""

from __future__ import annotations

from typing import Any

from chatopsd.features.status.api import MORE_KEY, Alert, Reading, SourceError, Verdict
from chatopsd.httpclient import HttpError, HttpTransport, display, join

_MAX_ALERTS = 50  # a query matching thousands of series must not flood the reply


class PrometheusStatus:
    def __init__(
        self,
        name: str,
        url: str,
        query: str,
        http: HttpTransport,
        *,
        timeout: float = 5.0,
        firing_verdict: str = "CRITICAL",
        alert_name: str | None = None,
    ) -> None:
        self.name = name
        self.url = join(url, "/api/v1/query")
        self.query = query
        self.http = http
        self.timeout = timeout
        self.firing = Verdict(firing_verdict)
        self.alert_name = alert_name

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
        # Prometheus' own deadline slightly under ours, so a slow query says why it failed.
        # (Its durations take no fractions: "4.5s" is refused, "4500ms" is not.)
        params = {
            "query": self.query,
            "timeout": f"{int(max(self.timeout - 0.5, 0.5) * 1000)}ms",
        }
        payload = await self.http.get_json(
            self.url, params=params, timeout=self.timeout, json_errors=(400, 422, 503)
        )
        alerts = self._parse(payload)
        return Reading(self.name, self.firing if alerts else Verdict.NORMAL, tuple(alerts))

    def _parse(self, payload: Any) -> list[Alert]:
        if not isinstance(payload, dict) or "status" not in payload:
            raise SourceError(f"{display(self.url)}: not a Prometheus API answer")
        if payload["status"] != "success":
            kind = payload.get("errorType", "error")
            raise SourceError(f"query failed ({kind}): {payload.get('error', 'no reason given')}")
        data = payload.get("data")
        if not isinstance(data, dict):
            raise SourceError(f"{display(self.url)}: answer has no data")
        kind, result = data.get("resultType"), data.get("result")
        if kind in ("scalar", "string"):
            # [time, "value"]: a scalar "fires" when it is neither 0 nor NaN
            value = result[1] if isinstance(result, list) and len(result) == 2 else None
            if value in (None, "0", "NaN", "") or (kind == "scalar" and _zero(value)):
                return []
            return [Alert(self.alert_name or self.name, self.firing, f"= {value}", self.name)]
        if not isinstance(result, list):
            raise SourceError(f"{display(self.url)}: result is not a list")
        alerts = []
        for series in result[:_MAX_ALERTS]:
            metric = series.get("metric", {}) if isinstance(series, dict) else {}
            name = self.alert_name or metric.get("alertname") or metric.get("__name__") or self.name
            labels = ", ".join(
                f"{k}={v}" for k, v in sorted(metric.items()) if k not in ("__name__", "alertname")
            )
            value = series.get("value", [None, None]) if isinstance(series, dict) else [None, None]
            summary = f"{labels} = {value[1]}" if labels else f"= {value[1]}"
            key = repr(sorted(metric.items()))
            alerts.append(Alert(str(name), self.firing, summary, self.name, key))
        if len(result) > _MAX_ALERTS:
            more = len(result) - _MAX_ALERTS
            alerts.append(
                Alert(
                    self.alert_name or self.name,
                    self.firing,
                    f"and {more} more series",
                    self.name,
                    MORE_KEY,
                )
            )
        return alerts


def _zero(value: Any) -> bool:
    try:
        return float(value) == 0.0
    except (TypeError, ValueError):
        return False
