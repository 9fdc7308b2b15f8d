"""A small async PagerDuty REST v2 client on the HTTP transport, and the Pager built on it.

Why not the official `pagerduty` package (7.x): it is synchronous (it would block the loop or
need a thread per call), retries 429 without limit by default while ignoring `Retry-After`,
returns 5xx without retrying, waits 60 s per attempt, refuses non-https base URLs (so it cannot
talk to a loopback fake) and its `iter_all` yields nothing on cursor-paginated paths. We need
a few endpoints with hard deadlines, so a small client on our transport is simpler and testable.

Every call has a deadline covering all of its attempts; retries (5xx, 429, timeouts, dropped
connections) are the transport's, bounded, and sleep for `ratelimit-reset` / `Retry-After`
when PagerDuty says, never past the deadline. Errors become `PagerDutyError` with a message
fit for chat (the token is never part of it).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from chatopsd.core.errors import Unavailable, UsageError
from chatopsd.core.retry import Backoff, Deadline, RetryPolicy
from chatopsd.features.paging.api import PageResult, Person
from chatopsd.httpclient import HttpError, HttpTransport

log = logging.getLogger("chatopsd.pagerduty")

Query = Sequence[tuple[str, str]]
_ACCEPT = "application/vnd.pagerduty+json;version=2"
# Waits between attempts: 0.25 s doubling to 4 s (full jitter), or what PagerDuty asks for;
# the call's deadline bounds them all.
BACKOFF = Backoff(base=0.125, cap=4.0)

# PagerDuty's object ids (PABC123, Q2KEIG9RMGOSUL): capital letters and digits, short.
PD_ID = re.compile(r"[A-Z0-9]{1,64}")
# A REST path template: literal lower-case segments, and `{}` where an id goes.
_TEMPLATE = re.compile(r"(?:/(?:[a-z_]+|\{\}))+")


def rest_path(template: str, ids: Sequence[str] = ()) -> str:
    """The ONE place a PagerDuty REST path is built from ids (`request` calls it).

    Each `{}` of `template` takes the next id, which must look like a PagerDuty id and is
    percent-quoted as one path segment besides: an id from chat (`PIC1/../PRS1`, `PINC1?x=`)
    can neither leave its segment nor reach another endpoint. A bad id is the asker's
    mistake (a usage error), refused before any request."""
    if not _TEMPLATE.fullmatch(template) or template.count("{}") != len(ids):
        raise ValueError(f"not a PagerDuty path template for {len(ids)} ids: {template!r}")
    parts = template.split("{}")
    path = parts[0]
    for value, rest in zip(ids, parts[1:], strict=True):
        if not PD_ID.fullmatch(value):
            shown = value if len(value) <= 40 else value[:40] + "…"
            raise UsageError(
                f"{shown!r} is not a PagerDuty id (capital letters and digits, e.g. PABC123)"
            )
        path += quote(value, safe="") + rest
    return path


class PagerDutyError(Exception):
    """A PagerDuty call failed; `message` is safe to show in chat, `status` the HTTP status."""

    def __init__(self, message: str, *, status: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.body = body


@dataclass(frozen=True, slots=True)
class OnCallRow:
    """One (schedule, user) on call, de-duplicated across policies and levels."""

    schedule_id: str
    schedule_name: str
    user_id: str
    user_name: str
    level: int
    until: str | None


@dataclass(frozen=True, slots=True)
class ShiftRow:
    """One shift in the lookahead: who, on which schedule and level, from when until when."""

    row: OnCallRow
    start: str
    end: str


class PagerDutyClient:
    def __init__(
        self,
        http: HttpTransport,
        api_url: str,
        token: str,
        *,
        request_timeout: float = 10.0,
        max_attempts: int = 4,
        page_size: int = 100,
    ) -> None:
        self.http = http
        self.api_url = api_url.rstrip("/")
        self._headers = {
            "Accept": _ACCEPT,
            "Authorization": f"Token token={token}",
        }
        self.request_timeout = request_timeout
        self.retry = RetryPolicy(attempts=max_attempts, backoff=BACKOFF)
        self.page_size = page_size
        self.requests = 0  # attempts sent, counted for the benchmark and for tests

    def deadline(self, seconds: float) -> Deadline:
        """A deadline on the transport's clock, for several calls that share one (pages)."""
        return Deadline(seconds, self.http.clock.monotonic)

    # -- endpoints ---------------------------------------------------------------------

    async def oncalls(
        self, schedule_ids: Sequence[str], *, deadline: float = 30.0
    ) -> list[OnCallRow]:
        """Everyone on call now on these schedules; one row per (schedule, user), lowest level.

        GET /oncalls lists a user once per escalation policy, level and schedule, and pages
        with offset/limit/more (PagerDuty also accepts cursor pagination there; offset is what
        the published spec documents)."""
        best: dict[tuple[str, str], OnCallRow] = {}
        offset = 0
        until = self.deadline(deadline)
        while True:
            query: list[tuple[str, str]] = [("schedule_ids[]", s) for s in schedule_ids]
            query += [("limit", str(self.page_size)), ("offset", str(offset))]
            body = await self.request("GET", "/oncalls", query, deadline=until)
            items = _list(body, "oncalls")
            for item in items:
                row = _oncall_row(item)
                if row is None:
                    continue
                key = (row.schedule_id, row.user_id)
                if key not in best or row.level < best[key].level:
                    best[key] = row
            if not body.get("more") or not items:
                break
            offset += len(items)
        # Grouped by schedule, then escalation level: one compact message per group.
        return sorted(best.values(), key=lambda r: (r.schedule_name, r.level, r.user_name))

    async def shifts(
        self,
        schedule_ids: Sequence[str],
        since: datetime,
        until: datetime,
        *,
        deadline: float = 30.0,
    ) -> list[ShiftRow]:
        """Every on-call shift on these schedules overlapping since..until (the lookahead),
        one row per (schedule, user, start), at its lowest escalation level."""
        best: dict[tuple[str, str, str], ShiftRow] = {}
        offset = 0
        stop = self.deadline(deadline)
        window = [("since", _iso(since)), ("until", _iso(until))]
        while True:
            query: list[tuple[str, str]] = [("schedule_ids[]", s) for s in schedule_ids]
            query += [*window, ("limit", str(self.page_size)), ("offset", str(offset))]
            body = await self.request("GET", "/oncalls", query, deadline=stop)
            items = _list(body, "oncalls")
            for item in items:
                row = _oncall_row(item)
                start = item.get("start") if isinstance(item, dict) else None
                if row is None or not isinstance(start, str) or row.until is None:
                    continue  # a permanent on-call (no start/end) is no shift
                key = (row.schedule_id, row.user_id, start)
                if key not in best or row.level < best[key].row.level:
                    best[key] = ShiftRow(row, start, row.until)
            if not body.get("more") or not items:
                break
            offset += len(items)
        return sorted(best.values(), key=lambda r: (r.start, r.row.schedule_name, r.row.level))

    async def user(self, user_id: str, *, deadline: float = 30.0) -> dict[str, Any]:
        body = await self.request(
            "GET",
            "/users/{}",
            [("include[]", "contact_methods")],
            ids=(user_id,),
            deadline=deadline,
        )
        user = body.get("user")
        if not isinstance(user, dict):
            raise PagerDutyError("PagerDuty sent a user without a 'user' object", body=body)
        return user

    async def search_users(self, query: str, *, deadline: float = 5.0) -> list[dict[str, Any]]:
        body = await self.request(
            "GET",
            "/users",
            [("query", query), ("limit", "25"), ("include[]", "contact_methods")],
            deadline=deadline,
        )
        return [u for u in _list(body, "users") if isinstance(u, dict)]

    async def create_incident(
        self,
        *,
        from_email: str,
        service_id: str,
        title: str,
        user_ids: Sequence[str],
        incident_key: str,
        deadline: float,
    ) -> tuple[dict[str, Any], bool]:
        """Create the incident; (incident, duplicate). A duplicate open incident_key (our own
        earlier attempt, or a redelivered command) is looked up and returned, not re-paged.

        No `body.details`: the published spec types it as an object, the live API as a string;
        the title carries the summary and the incident_key the chat event."""
        until = self.deadline(deadline)
        payload: dict[str, dict[str, Any]] = {
            "incident": {
                "type": "incident",
                "title": title[:1024],
                "service": {"id": service_id, "type": "service_reference"},
                "urgency": "high",
                "incident_key": incident_key,
            }
        }
        if user_ids:  # none: the service's escalation policy assigns it
            payload["incident"]["assignments"] = [
                {"assignee": {"id": uid, "type": "user_reference"}} for uid in user_ids
            ]
        try:
            body = await self.request(
                "POST",
                "/incidents",
                (),
                deadline=until,
                json_body=payload,
                headers={"From": from_email},
            )
        except PagerDutyError as exc:
            if exc.status == 400 and _is_duplicate_key(exc.body):
                found = await self.find_incident(service_id, incident_key, deadline=until)
                if found is not None:
                    return found, True
            raise
        incident = body.get("incident")
        if not isinstance(incident, dict):
            raise PagerDutyError("PagerDuty sent an incident reply without 'incident'", body=body)
        return incident, False

    async def find_incident(
        self, service_id: str, incident_key: str, *, deadline: float | Deadline
    ) -> dict[str, Any] | None:
        body = await self.request(
            "GET",
            "/incidents",
            [("incident_key", incident_key), ("service_ids[]", service_id)],
            deadline=deadline,
        )
        items = _list(body, "incidents")
        return items[0] if items and isinstance(items[0], dict) else None

    async def service(self, service_id: str, *, deadline: float = 10.0) -> dict[str, Any]:
        """GET /services/{id}: the service object (doctor checks the configured one)."""
        body = await self.request("GET", "/services/{}", ids=(service_id,), deadline=deadline)
        return _object(body, "service")

    async def schedule(self, schedule_id: str, *, deadline: float = 10.0) -> dict[str, Any]:
        """GET /schedules/{id}: the schedule object (doctor checks the configured ones)."""
        body = await self.request("GET", "/schedules/{}", ids=(schedule_id,), deadline=deadline)
        return _object(body, "schedule")

    # -- the one way a request leaves --------------------------------------------------

    async def request(
        self,
        method: str,
        template: str,
        query: Query = (),
        *,
        ids: Sequence[str] = (),
        deadline: float | Deadline,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """`template` is a literal path with `{}` for each of `ids` (see `rest_path`); the
        answer's JSON object (a bare list or an empty 204 as {"items": [...]})."""
        path = rest_path(template, ids)
        what = f"{method} {path}"
        try:
            answer = await self.http.request(
                method,
                self.api_url + path,
                params=list(query),
                json=json_body,
                headers={**self._headers, **(headers or {})},
                timeout=self.request_timeout,
                deadline=deadline,
                retry=self.retry,
            )
            self.requests += answer.attempts
            if answer.status == 204:  # DELETE answers 204 without a body
                return {"items": []}
            body = answer.json()
        except HttpError as exc:
            self.requests += exc.attempts
            failed = self._mapped(what, exc)
            # DEBUG: the caller says it once (the page's log line, the refresh job's outage
            # log), so an outage costs a line every 5 minutes, not one per attempt.
            log.debug("pagerduty %s failed: %s", what, failed.message)
            raise failed from None
        if isinstance(body, list):  # schedule overrides answer a bare list
            return {"items": body}
        if not isinstance(body, dict):
            raise PagerDutyError(
                "PagerDuty sent an unreadable answer (not a JSON object)", status=answer.status
            )
        return body

    def _mapped(self, what: str, exc: HttpError) -> PagerDutyError:
        """The transport's error in PagerDuty's words."""
        if exc.kind == "timeout":
            within = f" within {exc.timeout:.0f} s" if exc.timeout else ""
            message = f"no answer from PagerDuty{within}"
        elif exc.kind == "unreachable":
            message = f"cannot reach PagerDuty ({exc.detail or 'connection failed'})"
        elif exc.kind == "malformed":
            return PagerDutyError(
                "PagerDuty sent an unreadable answer (not JSON)", status=exc.status
            )
        elif exc.status == 429:
            message = "PagerDuty is rate limiting us (429)"
        elif exc.status is not None and exc.status >= 500:
            message = f"PagerDuty server error ({exc.status})"
        else:
            return _client_error(what, exc.status or 0, exc.body, self.http.redact)
        if exc.gave_up:
            message += f"; {exc.gave_up}"
        return PagerDutyError(message, status=exc.status)


class PagerDutyPager:
    """Pager: one incident on the configured service, assigned to everyone paged."""

    def __init__(
        self,
        client: PagerDutyClient,
        *,
        from_email: str,
        service_id: str,
        deadline: float,
        web_url: str = "https://app.pagerduty.com",
    ) -> None:
        self.client = client
        self.from_email = from_email
        self.service_id = service_id
        self.deadline = deadline
        self.web_url = web_url.rstrip("/")

    async def page(self, people: Sequence[Person], summary: str, key: str) -> PageResult:
        """Nobody listed (an empty on-call cache) opens the incident without assignees: the
        service's escalation policy then notifies whoever PagerDuty knows is on call."""
        me = self.from_email.lower()
        if people and all(p.email.lower() == me for p in people):
            # PagerDuty would create it acknowledged by the From user and notify nobody.
            raise Unavailable(
                f"the only person to page is {people[0].name}, the PagerDuty user this bot "
                "pages as (pagerduty.from_email); PagerDuty would create the incident "
                "acknowledged and ring nobody"
            )
        targets = [p for p in people if p.email.lower() != me]
        notes: list[str] = []
        if len(targets) < len(people):
            notes.append(f"Not paged: {self.from_email} (the bot's own PagerDuty user).")
        try:
            incident, duplicate = await self.client.create_incident(
                from_email=self.from_email,
                service_id=self.service_id,
                title=summary,
                user_ids=[p.id for p in targets],
                incident_key=key,
                deadline=self.deadline,
            )
        except PagerDutyError as exc:
            raise Unavailable(f"PagerDuty: {exc.message}") from exc
        incident_id = str(incident.get("id", "?"))
        url = str(incident.get("html_url") or f"{self.web_url}/incidents/{incident_id}")
        return PageResult(incident_id, url, tuple(targets), duplicate=duplicate, notes=tuple(notes))


# -- helpers -------------------------------------------------------------------------------


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _object(body: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = body.get(key)
    if not isinstance(value, dict):
        raise PagerDutyError(f"PagerDuty sent an answer without a '{key}' object")
    return value


def _list(body: Mapping[str, Any], key: str) -> list[Any]:
    value = body.get(key)
    if not isinstance(value, list):
        raise PagerDutyError(f"PagerDuty sent an answer without a '{key}' list")
    return value


def _oncall_row(item: Any) -> OnCallRow | None:
    """A row from one /oncalls entry; entries without a schedule (direct escalation to a user)
    or without a user are skipped."""
    if not isinstance(item, dict):
        return None
    user, schedule = item.get("user"), item.get("schedule")
    if not isinstance(user, dict) or not isinstance(schedule, dict):
        return None
    if not PD_ID.fullmatch(str(user.get("id") or "")) or not schedule.get("id"):
        return None  # no user id, or none we could ever put in a path
    level = item.get("escalation_level")
    return OnCallRow(
        schedule_id=str(schedule["id"]),
        schedule_name=str(schedule.get("summary") or schedule.get("name") or schedule["id"]),
        user_id=str(user["id"]),
        user_name=str(user.get("summary") or user.get("name") or user["id"]),
        level=level if isinstance(level, int) else 1,
        until=item.get("end") if isinstance(item.get("end"), str) else None,
    )


def _errors(body: Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        details = err.get("errors")
        message = str(err.get("message") or "")
        if isinstance(details, list) and details:
            message += ": " + "; ".join(str(d) for d in details)
        return message
    return ""


def _is_duplicate_key(body: Any) -> bool:
    text = _errors(body).lower()
    return "incident_key" in text or "dedup key" in text or "matching" in text


def _client_error(
    what: str, status: int, body: Any, redact: Callable[[str], str]
) -> PagerDutyError:
    detail = redact(_errors(body))  # PagerDuty's words, which may quote what we sent
    if status == 401:
        message = "PagerDuty rejected the API token (401): check pagerduty.api_token"
    elif status == 403:
        message = "the PagerDuty token may not do this (403): it needs a full-access REST key"
    elif status == 404:
        message = (
            f"PagerDuty does not know what {what} asked for (404): check pagerduty.service_id, "
            "the schedule ids and pagerduty.from_email"
        )
    elif status == 400:
        message = f"PagerDuty refused the request as invalid (400): {detail or 'no detail'}"
    else:
        message = f"PagerDuty answered {status}: {detail or 'no detail'}"
    # debug only: the caller reports it (the page's own log line, the refresh's outage log)
    log.debug("pagerduty %s -> %d %s", what, status, detail)
    return PagerDutyError(message, status=status, body=body)


def pd_time(value: str | None) -> datetime | None:
    """A time PagerDuty sent (ISO 8601, "Z" for UTC); None if absent or unreadable."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def role_of(row: OnCallRow) -> str:
    """What a person on call is there as: trainee or shadow by the schedule's name, else by
    escalation level (primary, backup, level N)."""
    name = row.schedule_name.lower()
    for word in ("trainee", "shadow"):
        if word in name:
            return word
    return {1: "primary", 2: "backup"}.get(row.level, f"level {row.level}")
