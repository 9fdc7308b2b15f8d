"""The demo PagerDuty: an in-process account with people, schedules, overrides and incidents,
for a daemon with nothing real configured (`Config.demo`), so every `!ic` and `!pd` command
can be tried with no account.

It is the real PagerDuty client with its one way out (`PagerDutyClient.request`) answered in
memory, in PagerDuty's REST shapes: the refresher, the pager, the incident commands, the
lookahead and the overrides run their real code against it. Nothing leaves the machine, and
everything it shows says "demo": schedule and service names, incident titles, links on the
reserved `.invalid` domain. Its state lasts as long as the process.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from chatopsd.config import PagerDutySection
from chatopsd.core.retry import Deadline
from chatopsd.features.pagerduty.client import PagerDutyClient, PagerDutyError, Query, rest_path
from chatopsd.httpclient import HttpTransport

WEB = "https://demo.pagerduty.invalid"
BOT_EMAIL = "chatopsd-bot@example.com"  # the PagerDuty user the demo bot pages as
OPERATOR_EMAIL = "operator@example.com"  # who the console's operator is in the demo
SERVICE = "PDEMOSV"
IC_PRIMARY, IC_BACKUP = "PDEMOIC", "PDEMOIB"
PAYMENTS, DATABASE = "PDEMOPY", "PDEMODB"
# Shifts count from this hand-over time: daily IC shifts at 09:00 UTC, weekly responders.
EPOCH = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class _User:
    id: str
    name: str
    email: str
    phone: str  # national number; the country code is 1

    def ref(self) -> dict[str, Any]:
        return {"id": self.id, "type": "user_reference", "summary": self.name}

    def full(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "user",
            "name": self.name,
            "summary": self.name,
            "email": self.email,
            "contact_methods": [
                {"type": "phone_contact_method", "country_code": 1, "address": self.phone},
                {"type": "email_contact_method", "address": self.email},
            ]
            if self.phone
            else [],
        }


USERS = (
    _User("PDEMO00", "You (demo operator)", OPERATOR_EMAIL, "555 0199"),
    _User("PDEMO01", "Ada Lovelace", "ada@example.com", "555 0100"),
    _User("PDEMO02", "Grace Hopper", "grace@example.com", "555 0101"),
    _User("PDEMO03", "Alan Turing", "alan@example.com", "555 0102"),
    _User("PDEMO04", "Edsger Dijkstra", "edsger@example.com", "555 0103"),
    _User("PDEMO05", "Barbara Liskov", "barbara@example.com", "555 0104"),
    _User("PDEMO09", "chatopsd (demo bot)", BOT_EMAIL, ""),
)


@dataclass(frozen=True, slots=True)
class _Schedule:
    id: str
    name: str
    level: int  # the escalation level it sits at
    members: tuple[str, ...]  # user ids, in rotation order
    shift: timedelta

    def base(self, since: datetime, until: datetime) -> list[tuple[str, datetime, datetime]]:
        """The rotation's shifts overlapping since..until: (user id, start, end)."""
        k = int((since - EPOCH) // self.shift)
        found: list[tuple[str, datetime, datetime]] = []
        while True:
            start = EPOCH + k * self.shift
            if start >= until:
                return found
            found.append((self.members[k % len(self.members)], start, start + self.shift))
            k += 1


DAY, WEEK = timedelta(days=1), timedelta(days=7)
SCHEDULES = {
    s.id: s
    for s in (
        _Schedule(IC_PRIMARY, "IC Primary (demo)", 1, ("PDEMO01", "PDEMO02", "PDEMO03"), DAY),
        _Schedule(IC_BACKUP, "IC Backup (demo)", 2, ("PDEMO02", "PDEMO03", "PDEMO01"), DAY),
        _Schedule(PAYMENTS, "Payments (demo)", 1, ("PDEMO04", "PDEMO05"), WEEK),
        _Schedule(DATABASE, "Database (demo)", 1, ("PDEMO05", "PDEMO04"), WEEK),
    )
}
TEAMS = ({"id": "PDEMOT1", "name": "Payments"}, {"id": "PDEMOT2", "name": "Database"})


def section() -> PagerDutySection:
    """The `[pagerduty]` section the demo runs with: its schedules, service and fallback
    contacts. (The console's operator is the demo user OPERATOR_EMAIL: kernel.py's
    identities, so `!pd ack` acts as someone.)"""
    return PagerDutySection.model_validate(
        {
            "api_token": "demo",
            "api_url": WEB,
            "from_email": BOT_EMAIL,
            "service_id": SERVICE,
            "ic_schedules": [IC_PRIMARY, IC_BACKUP],
            "responder_schedules": [PAYMENTS, DATABASE],
            "services": [
                {"name": "payments", "schedules": [PAYMENTS]},
                {"name": "database", "schedules": [DATABASE]},
            ],
            "fallback_contacts": [{"name": "Ops desk (demo)", "phone": "+1 555 0150"}],
        }
    )


def identities(console_user: str) -> dict[str, str]:
    """Who is who in the demo: the console's own user is the demo operator, and a jsonl
    script's actors named after the demo's Incident Commanders act as them (`ada`, `grace`,
    `alan`), so swaps and hand-overs between people can be tried. The responders are left
    unlinked, for `!pd link` to be tried."""
    found = {f"console:{u.email.partition('@')[0]}": u.email for u in USERS[1:4]}
    found[f"console:{console_user}"] = OPERATOR_EMAIL
    return found


@dataclass
class _Incident:
    id: str
    number: int
    title: str
    key: str
    assignees: list[str]
    created: datetime
    status: str = "triggered"
    changed: datetime | None = None
    changed_by: str = ""  # a user id, or "" for the service
    level: int = 1
    notes: list[str] = field(default_factory=list)


class DemoPagerDuty(PagerDutyClient):
    """PagerDuty's REST API, answered in memory (see the module's docstring)."""

    def __init__(self, http: HttpTransport) -> None:
        super().__init__(http, WEB, "demo")
        self._users = {u.id: u for u in USERS}
        self._incidents: dict[str, _Incident] = {}
        self._numbers = itertools.count(1)
        self._overrides: dict[str, tuple[str, str, datetime, datetime]] = {}
        self._override_ids = itertools.count(1)
        now = self._now()
        self._open("Checkout error rate above 5% (demo)", ["PDEMO01"], now - timedelta(minutes=12))
        replica = self._open("Replica lag on db-2 (demo)", ["PDEMO05"], now - timedelta(hours=1))
        replica.status, replica.changed, replica.changed_by = "acknowledged", now, "PDEMO05"

    def _now(self) -> datetime:
        return self.http.clock.now()

    def _open(self, title: str, assignees: list[str], at: datetime, key: str = "") -> _Incident:
        n = next(self._numbers)
        inc = _Incident(f"PDEMOI{n}", n, title, key, assignees, at)
        self._incidents[inc.id] = inc
        return inc

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
        rest_path(template, ids)  # the same refusal of a bad id as the real client
        self.requests += 1
        q: dict[str, list[str]] = {}
        for k, v in query:
            q.setdefault(k, []).append(v)
        sender = (headers or {}).get("From")
        body = json_body if isinstance(json_body, dict) else {}
        route = (method, template)
        if route == ("GET", "/oncalls"):
            return self._page(q, "oncalls", self._oncalls(q))
        if route == ("GET", "/users/{}"):
            return {"user": self._user(ids[0]).full()}
        if route == ("GET", "/users"):
            text = (q.get("query") or [""])[0].lower()
            found = [u.full() for u in USERS if text in u.name.lower() or text in u.email]
            return self._page(q, "users", found)
        if route == ("GET", "/teams"):
            text = (q.get("query") or [""])[0].lower()
            return {"teams": [t for t in TEAMS if text in t["name"].lower()], "more": False}
        if route == ("GET", "/escalation_policies"):
            team = (q.get("team_ids[]") or [""])[0]
            return {"escalation_policies": [{"id": f"PDEMOEP{team[-1:]}"}], "more": False}
        if route == ("GET", "/incidents"):
            return self._page(q, "incidents", self._list(q))
        if route == ("POST", "/incidents"):
            return {"incident": self._create(self._from(sender), body.get("incident") or {})}
        if route == ("GET", "/incidents/{}"):
            return {"incident": self._shown(self._incident(ids[0]))}
        if route == ("PUT", "/incidents/{}"):
            change = body.get("incident") or {}
            return {"incident": self._update(self._incident(ids[0]), self._from(sender), change)}
        if route == ("POST", "/incidents/{}/notes"):
            inc, who = self._incident(ids[0]), self._from(sender)
            inc.notes.append(str((body.get("note") or {}).get("content", "")))
            return {"note": {"id": f"PDEMON{len(inc.notes)}", "user": who.ref()}}
        if route == ("POST", "/incidents/{}/snooze"):
            inc, who = self._incident(ids[0]), self._from(sender)
            if inc.status != "acknowledged":
                raise _refused("Incident must be acknowledged to be snoozed")
            return {"incident": self._shown(inc)}
        if route == ("POST", "/schedules/{}/overrides"):
            return {"items": self._override(ids[0], self._from(sender), body)}
        if route == ("DELETE", "/schedules/{}/overrides/{}"):
            self._from(sender)
            if self._overrides.pop(ids[1], None) is None:
                raise PagerDutyError("not found", status=404)
            return {"items": []}
        if route == ("GET", "/schedules/{}"):
            s = self._schedule(ids[0])
            return {"schedule": {"id": s.id, "name": s.name, "summary": s.name}}
        if route == ("GET", "/services/{}"):
            if ids[0] != SERVICE:
                raise PagerDutyError("not found", status=404)
            return {"service": {"id": SERVICE, "name": "Checkout (demo)"}}
        raise PagerDutyError(f"the demo PagerDuty has no {method} {template}", status=404)

    # -- people and schedules ----------------------------------------------------------

    def _user(self, user_id: str) -> _User:
        user = self._users.get(user_id)
        if user is None:
            raise PagerDutyError("user not found", status=404)
        return user

    def _from(self, email: str | None) -> _User:
        """The `From` header's user: PagerDuty refuses a write without a valid one."""
        for user in USERS:
            if email and user.email == email.lower():
                return user
        raise _refused("The From header must be the email of a valid user")

    def _schedule(self, schedule_id: str) -> _Schedule:
        found = SCHEDULES.get(schedule_id)
        if found is None:
            raise PagerDutyError("schedule not found", status=404)
        return found

    def _final(
        self, schedule: _Schedule, since: datetime, until: datetime
    ) -> list[tuple[str, datetime, datetime]]:
        """The final schedule: the rotation, with each override laid over its hours."""
        shifts = schedule.base(since, until)
        for _id, (sid, user, start, end) in sorted(self._overrides.items()):
            if sid != schedule.id:
                continue
            cut: list[tuple[str, datetime, datetime]] = []
            for who, s, e in shifts:
                if s < start:
                    cut.append((who, s, min(e, start)))
                if e > end:
                    cut.append((who, max(s, end), e))
            if start < until and end > since:
                cut.append((user, start, end))
            shifts = sorted(cut, key=lambda row: row[1])
        return [(who, s, e) for who, s, e in shifts if e > since and s < until]

    def _oncalls(self, q: dict[str, list[str]]) -> list[dict[str, Any]]:
        now = self._now()
        since = _time(q.get("since"), now)
        until = _time(q.get("until"), now + timedelta(seconds=1))
        rows = []
        for sid in q.get("schedule_ids[]") or list(SCHEDULES):
            schedule = self._schedule(sid)
            ref = {"id": sid, "type": "schedule_reference", "summary": schedule.name}
            policy = {"id": "PDEMOEP0", "type": "escalation_policy_reference"}
            for who, start, end in self._final(schedule, since, until):
                rows.append(
                    {
                        "user": self._user(who).ref(),
                        "schedule": ref,
                        "escalation_policy": policy,
                        "escalation_level": schedule.level,
                        "start": _iso(start),
                        "end": _iso(end),
                    }
                )
        return rows

    def _override(self, schedule_id: str, who: _User, body: dict[str, Any]) -> list[Any]:
        self._schedule(schedule_id)
        answers = []
        for raw in body.get("overrides") or []:
            start, end = _time([raw.get("start")], None), _time([raw.get("end")], None)
            user = self._user(str((raw.get("user") or {}).get("id")))
            if start >= end:
                answers.append({"status": 400, "errors": ["the override ends before it starts"]})
                continue
            oid = f"PDEMOO{next(self._override_ids)}"
            self._overrides[oid] = (schedule_id, user.id, start, end)
            override = {"id": oid, "start": _iso(start), "end": _iso(end), "user": user.ref()}
            answers.append({"status": 201, "override": override})
        return answers

    # -- incidents ---------------------------------------------------------------------

    def _incident(self, incident_id: str) -> _Incident:
        inc = self._incidents.get(incident_id)
        if inc is None:
            raise PagerDutyError("incident not found", status=404)
        return inc

    def _list(self, q: dict[str, list[str]]) -> list[dict[str, Any]]:
        statuses = set(q.get("statuses[]") or ())
        keys = set(q.get("incident_key") or ())
        since = _time(q.get("since"), None) if q.get("since") else None
        found = []
        for inc in self._incidents.values():
            if statuses and inc.status not in statuses:
                continue
            if keys and inc.key not in keys:
                continue
            if since is not None and (inc.changed or inc.created) < since:
                continue
            found.append(self._shown(inc))
        return found

    def _create(self, who: _User, raw: dict[str, Any]) -> dict[str, Any]:
        key = str(raw.get("incident_key") or "")
        if key and any(i.key == key and i.status != "resolved" for i in self._incidents.values()):
            raise _refused("Open incident with matching dedup key already exists on this service")
        assigned = [
            str((a.get("assignee") or {}).get("id"))
            for a in raw.get("assignments") or []
            if isinstance(a, dict)
        ]
        for uid in assigned:
            self._user(uid)
        if not assigned:  # the service's escalation policy: who is on call on IC Primary
            now = self._now()
            assigned = [w for w, _s, _e in self._final(SCHEDULES[IC_PRIMARY], now, now)][:1]
        inc = self._open(str(raw.get("title") or "")[:1024], assigned, self._now(), key)
        if assigned == [who.id]:  # PagerDuty's rule: the creator's own incident is acknowledged
            inc.status, inc.changed, inc.changed_by = "acknowledged", inc.created, who.id
        return self._shown(inc)

    def _update(self, inc: _Incident, who: _User, change: dict[str, Any]) -> dict[str, Any]:
        status = change.get("status")
        if status in ("acknowledged", "resolved") and status != inc.status:
            if inc.status == "resolved":
                raise _refused("Incident Already Resolved")
            inc.status, inc.changed, inc.changed_by = str(status), self._now(), who.id
        level = change.get("escalation_level")
        if isinstance(level, int) and level >= 1:
            inc.level = level
            inc.status, inc.changed, inc.changed_by = "triggered", self._now(), ""
        assigned = [
            str((a.get("assignee") or {}).get("id"))
            for a in change.get("assignments") or []
            if isinstance(a, dict)
        ]
        if assigned:
            for uid in assigned:
                self._user(uid)
            inc.assignees = assigned
            inc.status, inc.changed, inc.changed_by = "triggered", self._now(), who.id
        return self._shown(inc)

    def _shown(self, inc: _Incident) -> dict[str, Any]:
        by: dict[str, Any] = (
            self._users[inc.changed_by].ref()
            if inc.changed_by
            else {"id": SERVICE, "type": "service_reference", "summary": "Checkout (demo)"}
        )
        return {
            "id": inc.id,
            "type": "incident",
            "incident_number": inc.number,
            "title": inc.title,
            "status": inc.status,
            "urgency": "high",
            "incident_key": inc.key,
            "service": {"id": SERVICE, "type": "service_reference", "summary": "Checkout (demo)"},
            "assignments": [{"assignee": self._users[u].ref()} for u in inc.assignees],
            "html_url": f"{WEB}/incidents/{inc.id}",
            "created_at": _iso(inc.created),
            "last_status_change_at": _iso(inc.changed or inc.created),
            "last_status_change_by": by,
            "escalation_level": inc.level,
        }

    @staticmethod
    def _page(q: dict[str, list[str]], key: str, items: list[Any]) -> dict[str, Any]:
        offset = int((q.get("offset") or ["0"])[0])
        limit = int((q.get("limit") or ["100"])[0])
        return {key: items[offset : offset + limit], "more": offset + limit < len(items)}


def _refused(message: str) -> PagerDutyError:
    body = {"error": {"message": "Invalid Input Provided", "code": 2001, "errors": [message]}}
    return PagerDutyError(
        f"PagerDuty refused the request as invalid (400): {message}", status=400, body=body
    )


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _time(values: list[Any] | None, default: datetime | None) -> datetime:
    value = values[0] if values else None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        except ValueError:
            pass
    if default is None:
        raise _refused(f"not a time: {value!r}")
    return default
