"""A JSON endpoint as a status source: one field, found by a dotted path, mapped to a state.

`field = "status.indicator"` reads {"status": {"indicator": "minor"}}; a number in the path
indexes a list ("components.0.status").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chatopsd.features.status.api import Alert, Reading, SourceError, Verdict
from chatopsd.httpclient import HttpError, HttpTransport, display

# Words status pages commonly use (Statuspage's indicator: none/minor/major/critical).
DEFAULT_VALUES: dict[str, str] = {
    **dict.fromkeys(
        ("normal", "ok", "up", "healthy", "pass", "green", "operational", "none", "true"),
        "NORMAL",
    ),
    **dict.fromkeys(
        ("degraded", "warning", "warn", "minor", "yellow", "degraded_performance"), "DEGRADED"
    ),
    **dict.fromkeys(
        (
            "critical",
            "down",
            "fail",
            "error",
            "red",
            "major",
            "major_outage",
            "partial_outage",
            "false",
        ),
        "CRITICAL",
    ),
    "unknown": "UNKNOWN",
}


class HttpStatus:
    def __init__(
        self,
        name: str,
        url: str,
        field: str,
        http: HttpTransport,
        *,
        timeout: float = 5.0,
        value_map: Mapping[str, str] | None = None,
        default_verdict: str = "UNKNOWN",
    ) -> None:
        self.name = name
        self.url = url
        self.path = [p for p in field.split(".") if p]
        self.field = field
        self.http = http
        self.timeout = timeout
        self.values = {k.lower(): Verdict(v) for k, v in (value_map or DEFAULT_VALUES).items()}
        self.default = Verdict(default_verdict)

    async def read(self) -> Reading:
        try:
            return await self.fetch()
        except (HttpError, SourceError) as exc:
            return Reading(self.name, Verdict.UNKNOWN, error=str(exc))
        except Exception as exc:  # never raise out of read()
            return Reading(self.name, Verdict.UNKNOWN, error=f"{type(exc).__name__}: {exc}")

    async def fetch(self) -> Reading:
        """One read that raises what went wrong (HttpError, SourceError, MissingField): what
        `read` and `doctor` both call."""
        value = dig(await self.http.get_json(self.url, timeout=self.timeout), self.path)
        if value is None:
            raise MissingField(f"{display(self.url)}: no field {self.field!r}", self.field)
        text = str(value).lower()  # JSON true/false arrive as True/False: "true"/"false"
        verdict = self.values.get(text)
        if verdict is None:
            if self.default is Verdict.UNKNOWN:
                raise SourceError(
                    f"{self.field} = {value!r} is not a known state (add it to value_map)"
                )
            verdict = self.default
        if verdict is Verdict.NORMAL:
            return Reading(self.name, verdict)
        alert = Alert(
            self.name, verdict, f"{self.field} = {value}", self.name, f"{self.field}={text}"
        )
        return Reading(self.name, verdict, (alert,))


class MissingField(SourceError):
    """The answer has no value at the configured field."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


def dig(doc: Any, path: list[str]) -> Any:
    """The value at a dotted path, or None when any step is missing."""
    for part in path:
        if isinstance(doc, dict):
            doc = doc.get(part)
        elif isinstance(doc, list) and part.lstrip("-").isdigit():
            i = int(part)
            doc = doc[i] if -len(doc) <= i < len(doc) else None
        else:
            return None
        if doc is None:
            return None
    return doc
