"""A fake PagerDuty REST API on 127.0.0.1 that validates every request against the spec.

Every request is checked with openapi-core against shared/specs/pagerduty/rest-openapiv3.json;
a violation is recorded in `violations` (the fixture fails the test on any) and answered 400.

One deliberate patch to the spec: its `Reference` schema marks `id` and `type` readOnly while
also requiring them, so no request that references a service or user could ever validate
(the real API requires both). We drop readOnly on those two properties for references only.

Fault modes (`fault`, applied to paths starting with `fault_path`): "500", "429" (with
ratelimit-reset and Retry-After), "429-bare" (neither header nor body), "hang", "badjson",
"empty" (no one on call), "401", "drop-after" (do it, then drop the connection), "echo-auth"
(a 400 whose error detail quotes the request's Authorization header back, token and all).

Incident state: incidents created by `POST /incidents` or `trigger()` live in
`incidents` (our internal dicts; `_incident_json` renders PagerDuty's shape). `PUT /incidents`,
`PUT /incidents/{id}` (status, escalation_level, assignments, resolution), notes, snooze,
`GET /incidents` (statuses[], service_ids[], since on created_at, date_range=all, offset
pagination) and `GET /incidents/{id}`; schedule overrides (`POST`/`DELETE`). Every write's `From`
must be the email of one of `users` (else 400 as PagerDuty answers), and is recorded in
`writes` as (method, path, From) so tests can see who PagerDuty would log. `act()` changes an
incident out of band, as PagerDuty's app or a phone call would.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from aiohttp import web
from multidict import CIMultiDict, MultiDict
from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters

from tests.spec_files import shared_spec

TOKEN = "pd-test-token-0000"


@cache
def openapi() -> OpenAPI:
    spec = json.loads(shared_spec("pagerduty", "rest-openapiv3.json").read_text())
    schemas = spec["components"]["schemas"]
    base = copy.deepcopy(schemas["Tag"]["allOf"][0])
    for name in ("id", "type"):
        base["properties"][name].pop("readOnly", None)
    schemas["Reference"] = {"allOf": [base, {"type": "object", "required": ["type", "id"]}]}
    # The spec itself does not validate (a string default on an integer), so skip that check.
    return OpenAPI.from_dict(spec, config=Config(spec_validator_cls=None))


class _Request:
    """openapi-core's request protocol over an aiohttp request, host pinned to the spec's."""

    def __init__(self, request: web.Request, body: bytes) -> None:
        self.host_url = "https://api.pagerduty.com"
        self.path = request.path
        self.method = request.method.lower()
        self.body = body or None
        self.content_type = request.content_type
        self.parameters = RequestParameters(
            query=MultiDict(request.query), header=CIMultiDict(request.headers), cookie={}
        )


@dataclass
class FakeUser:
    id: str
    name: str
    email: str
    phones: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class FakePagerDuty:
    users: dict[str, FakeUser] = field(default_factory=dict)
    # schedule id -> (name, [(user id, escalation level)]); each listed once per policy too
    schedules: dict[str, tuple[str, list[tuple[str, int]]]] = field(default_factory=dict)
    policies_per_entry: int = 2  # how many times /oncalls repeats each (schedule, user)
    page_size_cap: int = 3  # small pages, so pagination is exercised
    validate: bool = True  # the benchmark turns it off: it measures the client, not openapi-core
    fault: str | None = None
    deleted: set[str] = field(default_factory=set)  # on call, but GET /users/{id} is a 404
    fault_path: str = "/"
    fault_times: int | None = None  # fault this many requests, then answer normally
    retry_after: str = "30"  # the ratelimit-reset / Retry-After sent with "429"
    violations: list[str] = field(default_factory=list)
    requests: list[tuple[str, str]] = field(default_factory=list)
    incidents: list[dict[str, Any]] = field(default_factory=list)
    from_emails: list[str] = field(default_factory=list)
    url: str = ""
    # (method, path, From) of every write that changed something, in order
    writes: list[tuple[str, str, str]] = field(default_factory=list)
    notes: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # id -> (From, text)
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)  # override id -> body
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    incident_page_cap: int = 100  # GET /incidents page size ceiling (PagerDuty's is 100)
    gate: asyncio.Event | None = None  # when set, writes wait for it (simultaneous clicks)
    # team id -> (name, escalation policy id); policy id -> (name, user ids at its first level)
    teams: dict[str, tuple[str, str]] = field(default_factory=dict)
    policies: dict[str, tuple[str, list[str]]] = field(default_factory=dict)
    # Timed shifts, schedule id -> [(user id, level, start, end)]. A schedule listed
    # here answers GET /oncalls from them (the shift covering `now`, or every shift overlapping
    # `since`..`until`); its entry in `schedules` then only gives the name.
    shifts: dict[str, list[tuple[str, int, datetime, datetime]]] = field(default_factory=dict)

    async def start(self) -> None:
        if self.validate:
            openapi()
        self._closing = asyncio.Event()
        app = web.Application(middlewares=[self._validate])
        app.router.add_get("/oncalls", self._oncalls)
        app.router.add_get("/users", self._search)
        app.router.add_get("/users/{id}", self._user)
        app.router.add_post("/incidents", self._create)
        app.router.add_get("/incidents", self._list_incidents)
        app.router.add_put("/incidents", self._update_many)
        app.router.add_get("/incidents/{id}", self._get_incident)
        app.router.add_put("/incidents/{id}", self._update_one)
        app.router.add_post("/incidents/{id}/notes", self._note)
        app.router.add_post("/incidents/{id}/snooze", self._snooze)
        app.router.add_post("/schedules/{id}/overrides", self._add_overrides)
        app.router.add_get("/teams", self._teams)
        app.router.add_get("/escalation_policies", self._policies)
        app.router.add_delete("/schedules/{id}/overrides/{override_id}", self._del_override)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        self._closing.set()  # release hanging handlers, or cleanup waits 60 s for them
        await self._runner.cleanup()

    def count(self, method: str, path: str) -> int:
        return sum(1 for m, p in self.requests if m == method and p.startswith(path))

    @web.middleware
    async def _validate(self, request: web.Request, handler: Any) -> web.StreamResponse:
        body = await request.read()
        self.requests.append((request.method, request.path))
        try:
            if self.validate:
                openapi().validate_request(_Request(request, body))
        except Exception as exc:
            self.violations.append(f"{request.method} {request.path_qs}: {exc}")
            return _error(400, f"spec violation: {exc}")
        if request.headers.get("Authorization") != f"Token token={TOKEN}":
            return _error(401, "Authentication failed")
        fault = self.fault if request.path.startswith(self.fault_path) else None
        if fault is not None and self.fault_times is not None:
            if self.fault_times <= 0:
                fault = None
            self.fault_times -= 1
        if fault == "401":
            return _error(401, "Authentication failed")
        if fault == "500":
            return _error(500, "Internal Server Error")
        if fault == "echo-auth":
            quoted = f"unexpected header 'Authorization': '{request.headers['Authorization']}'"
            return _error(400, "Invalid Input Provided", [quoted])
        if fault == "429":
            return web.json_response(
                {"error": {"message": "Rate Limit Exceeded", "code": 2020}},
                status=429,
                headers={"ratelimit-reset": self.retry_after, "Retry-After": self.retry_after},
            )
        if fault == "429-bare":
            return web.Response(status=429)
        if fault == "hang":
            await self._closing.wait()
            return _error(503, "hung up")
        if fault == "badjson":
            return web.Response(text="{not json", content_type="application/json")
        response: web.StreamResponse = await handler(request)
        if fault == "drop-after" and request.transport is not None:
            request.transport.abort()  # did the work, then the answer is lost on the wire
        return response

    async def _oncalls(self, request: web.Request) -> web.Response:
        wanted = request.query.getall("schedule_ids[]", [])
        rows: list[dict[str, Any]] = []
        now = self.now()
        since = _parse(request.query["since"]) if "since" in request.query else now
        until = _parse(request.query["until"]) if "until" in request.query else now
        if self.fault != "empty":
            for sid in wanted:
                if sid not in self.schedules:
                    continue
                if sid in self.shifts:
                    rows += self._shift_rows(sid, since, until)
                    continue
                name, entries = self.schedules[sid]
                for policy in range(self.policies_per_entry):
                    for uid, level in entries:
                        user = self.users[uid]
                        rows.append(
                            {
                                "escalation_policy": _ref("escalation_policy", f"EP{policy}"),
                                "escalation_level": level,
                                "schedule": _ref("schedule", sid, name),
                                "user": _ref("user", uid, user.name),
                                "start": "2026-11-23T08:00:00Z",
                                "end": "2026-11-24T08:00:00Z",
                            }
                        )
        limit = min(int(request.query.get("limit", "25")), self.page_size_cap)
        offset = int(request.query.get("offset", "0"))
        page = rows[offset : offset + limit]
        return web.json_response(
            {
                "oncalls": page,
                "limit": limit,
                "offset": offset,
                "more": offset + limit < len(rows),
                "total": None,
            }
        )

    def _shift_rows(self, sid: str, since: datetime, until: datetime) -> list[dict[str, Any]]:
        """PagerDuty's overlap rule: a shift is listed if it overlaps since..until (a shift
        covering the instant when both are now)."""
        name = self.schedules[sid][0]
        rows = []
        for policy in range(self.policies_per_entry):
            for uid, level, start, end in self.shifts[sid]:
                if since == until:
                    if not start <= since < end:
                        continue
                elif not (start < until and end > since):
                    continue
                rows.append(
                    {
                        "escalation_policy": _ref("escalation_policy", f"EP{policy}"),
                        "escalation_level": level,
                        "schedule": _ref("schedule", sid, name),
                        "user": _ref("user", uid, self.users[uid].name),
                        "start": _iso(start),
                        "end": _iso(end),
                    }
                )
        return rows

    def _user_json(self, user: FakeUser) -> dict[str, Any]:
        return {
            "id": user.id,
            "type": "user",
            "summary": user.name,
            "name": user.name,
            "email": user.email,
            "contact_methods": [{"id": f"{user.id}C{i}", **m} for i, m in enumerate(user.phones)]
            + [
                {
                    "id": f"{user.id}E",
                    "type": "email_contact_method",
                    "address": user.email,
                    "label": "Work",
                }
            ],
        }

    async def _user(self, request: web.Request) -> web.Response:
        user = self.users.get(request.match_info["id"])
        if user is None or user.id in self.deleted:
            return _error(404, "Not Found")
        return web.json_response({"user": self._user_json(user)})

    async def _search(self, request: web.Request) -> web.Response:
        q = request.query.get("query", "").lower()
        found = [
            self._user_json(u)
            for u in self.users.values()
            if q in u.name.lower() or q in u.email.lower()
        ]
        return web.json_response({"users": found, "limit": 25, "offset": 0, "more": False})

    async def _create(self, request: web.Request) -> web.Response:
        body = await request.json()
        inc = body["incident"]
        sender = request.headers["From"]
        self.from_emails.append(sender)
        if self._user_by_email(sender) is None:
            return _error(400, "Invalid Input Provided", ["Requester User Not Found"])
        key = inc.get("incident_key")
        for existing in self.incidents:
            if key and existing["incident_key"] == key:
                return _error(
                    400,
                    "Invalid Input Provided",
                    ["Open incident with matching dedup key already exists on this service"],
                )
        assignees = [a["assignee"]["id"] for a in inc.get("assignments", [])]
        if not assignees and isinstance(inc.get("escalation_policy"), dict):
            policy = self.policies.get(inc["escalation_policy"]["id"])
            if policy is None:
                return _error(400, "Invalid Input Provided", ["Escalation policy not found"])
            assignees = list(policy[1])
        for uid in assignees:
            if uid not in self.users:
                return _error(400, "Invalid Input Provided", [f"Assignee {uid} not found"])
        sender_ids = [u.id for u in self.users.values() if u.email == sender]
        incident = self.trigger(
            inc["title"],
            service_id=inc["service"]["id"],
            assignees=assignees,
            key=key,
            urgency=inc.get("urgency", "high"),
        )
        if assignees == sender_ids:  # assigned only to the requester: born acknowledged
            self.act(incident["id"], "acknowledged", sender_ids[0])
        self.writes.append(("POST", "/incidents", sender))
        return web.json_response({"incident": self._incident_json(incident)}, status=201)

    # -- incident state ---------------------------------------------------------------------

    def trigger(
        self,
        title: str,
        *,
        service_id: str = "PSVC1",
        assignees: list[str] | None = None,
        key: str | None = None,
        urgency: str = "high",
    ) -> dict[str, Any]:
        """A new triggered incident, as an alert or someone else would open it."""
        n = len(self.incidents) + 1
        now = _iso(self.now())
        incident: dict[str, Any] = {
            "id": f"PINC{n:03d}",
            "incident_number": n,
            "title": title,
            "incident_key": key,
            "status": "triggered",
            "urgency": urgency,
            "service_id": service_id,
            "html_url": f"https://example.pagerduty.com/incidents/PINC{n:03d}",
            "assignees": list(assignees or []),
            "created_at": now,
            "updated_at": now,
            "last_status_change_at": now,
            "last_status_change_by": None,
            "escalation_level": 1,
            "acknowledgers": [],
        }
        self.incidents.append(incident)
        return incident

    def act(self, incident_id: str, status: str, by: str | None) -> dict[str, Any]:
        """Change an incident's status out of band (PagerDuty's app, a phone call)."""
        incident = self.incident(incident_id)
        now = _iso(self.now())
        incident["status"] = status
        incident["last_status_change_at"] = incident["updated_at"] = now
        incident["last_status_change_by"] = by
        if status == "acknowledged" and by:
            incident["acknowledgers"].append((by, now))
        if status == "triggered":
            incident["acknowledgers"] = []
        return incident

    def incident(self, incident_id: str) -> dict[str, Any]:
        return next(i for i in self.incidents if i["id"] == incident_id)

    def _user_by_email(self, email: str) -> FakeUser | None:
        return next((u for u in self.users.values() if u.email == email.lower()), None)

    def _incident_json(self, inc: dict[str, Any]) -> dict[str, Any]:
        def user_ref(uid: str) -> dict[str, Any]:
            name = self.users[uid].name if uid in self.users else uid
            return _ref("user", uid, name)

        by = inc["last_status_change_by"]
        return {
            "id": inc["id"],
            "type": "incident",
            "summary": f"[#{inc['incident_number']}] {inc['title']}",
            "incident_number": inc["incident_number"],
            "title": inc["title"],
            "incident_key": inc["incident_key"],
            "status": inc["status"],
            "urgency": inc["urgency"],
            "html_url": inc["html_url"],
            "created_at": inc["created_at"],
            "updated_at": inc["updated_at"],
            "service": _ref("service", inc["service_id"], f"Service {inc['service_id']}"),
            "escalation_policy": _ref("escalation_policy", "EP0", "Default"),
            "last_status_change_at": inc["last_status_change_at"],
            "last_status_change_by": user_ref(by) if by else _ref("service", inc["service_id"]),
            "assignments": [
                {"at": inc["updated_at"], "assignee": user_ref(uid)} for uid in inc["assignees"]
            ],
            "acknowledgements": [
                {"at": at, "acknowledger": user_ref(uid)} for uid, at in inc["acknowledgers"]
            ],
            # Not in the published Incident schema; the fake exposes it so tests can read it.
            "escalation_level": inc["escalation_level"],
        }

    async def _writer(self, request: web.Request) -> tuple[str, FakeUser] | web.Response:
        """The From of a write, checked against the account's users."""
        sender = request.headers.get("From", "")
        self.from_emails.append(sender)
        user = self._user_by_email(sender)
        if user is None:
            return _error(400, "Invalid Input Provided", ["Requester User Not Found"])
        if self.gate is not None:
            await self.gate.wait()
        return sender, user

    def _apply(
        self, incident: dict[str, Any], change: dict[str, Any], user: FakeUser
    ) -> str | None:
        """Apply one incident update; an error text if PagerDuty would refuse it."""
        status = change.get("status")
        if status is not None and status != incident["status"]:
            if incident["status"] == "resolved" and status != "resolved":
                return "Incident Already Resolved"
            self.act(incident["id"], status, user.id)
        level = change.get("escalation_level")
        if level is not None:
            if incident["status"] == "resolved":
                return "Incident Already Resolved"
            incident["escalation_level"] = int(level)
            incident["updated_at"] = _iso(self.now())
        if "assignments" in change:
            ids = [a["assignee"]["id"] for a in change["assignments"]]
            if any(uid not in self.users for uid in ids):
                return "Assignee not found"
            incident["assignees"] = ids
            incident["updated_at"] = _iso(self.now())
        return None

    async def _update_one(self, request: web.Request) -> web.Response:
        who = await self._writer(request)
        if isinstance(who, web.Response):
            return who
        sender, user = who
        incident = self._find(request.match_info["id"])
        if incident is None:
            return _error(404, "Not Found")
        problem = self._apply(incident, (await request.json())["incident"], user)
        if problem:
            return _error(400, "Invalid Input Provided", [problem])
        self.writes.append(("PUT", request.path, sender))
        return web.json_response({"incident": self._incident_json(incident)})

    async def _update_many(self, request: web.Request) -> web.Response:
        who = await self._writer(request)
        if isinstance(who, web.Response):
            return who
        sender, user = who
        done = []
        for change in (await request.json())["incidents"]:
            incident = self._find(str(change.get("id")))
            if incident is None:
                return _error(404, "Not Found")
            problem = self._apply(incident, change, user)
            if problem:
                return _error(400, "Invalid Input Provided", [problem])
            done.append(self._incident_json(incident))
        self.writes.append(("PUT", "/incidents", sender))
        return web.json_response({"incidents": done, "limit": 25, "offset": 0, "more": False})

    async def _note(self, request: web.Request) -> web.Response:
        who = await self._writer(request)
        if isinstance(who, web.Response):
            return who
        sender, user = who
        incident = self._find(request.match_info["id"])
        if incident is None:
            return _error(404, "Not Found")
        content = (await request.json())["note"]["content"]
        self.notes.setdefault(incident["id"], []).append((sender, content))
        self.writes.append(("POST", request.path, sender))
        note = {
            "id": f"PNOTE{sum(len(n) for n in self.notes.values())}",
            "user": _ref("user", user.id, user.name),
            "content": content,
            "created_at": _iso(self.now()),
        }
        return web.json_response({"note": note}, status=201)

    async def _snooze(self, request: web.Request) -> web.Response:
        who = await self._writer(request)
        if isinstance(who, web.Response):
            return who
        sender, _user = who
        incident = self._find(request.match_info["id"])
        if incident is None:
            return _error(404, "Not Found")
        if incident["status"] != "acknowledged":
            return _error(400, "Invalid Input Provided", ["Incident must be acknowledged"])
        seconds = int((await request.json())["duration"])
        incident["snoozed_until"] = _iso(self.now() + timedelta(seconds=seconds))
        self.writes.append(("POST", request.path, sender))
        return web.json_response({"incident": self._incident_json(incident)}, status=201)

    def _find(self, incident_id: str) -> dict[str, Any] | None:
        return next((i for i in self.incidents if i["id"] == incident_id), None)

    async def _get_incident(self, request: web.Request) -> web.Response:
        incident = self._find(request.match_info["id"])
        if incident is None:
            return _error(404, "Not Found")
        return web.json_response({"incident": self._incident_json(incident)})

    async def _list_incidents(self, request: web.Request) -> web.Response:
        q = request.query
        found = list(self.incidents)
        if key := q.get("incident_key"):
            found = [i for i in found if i["incident_key"] == key]
        if statuses := q.getall("statuses[]", []):
            found = [i for i in found if i["status"] in statuses]
        if services := q.getall("service_ids[]", []):
            found = [i for i in found if i["service_id"] in services]
        if q.get("date_range") != "all":
            since = _parse(q["since"]) if "since" in q else self.now() - timedelta(days=30)
            found = [i for i in found if _parse(i["created_at"]) >= since]
        limit = min(int(q.get("limit", "25")), self.incident_page_cap)
        offset = int(q.get("offset", "0"))
        page = found[offset : offset + limit]
        return web.json_response(
            {
                "incidents": [self._incident_json(i) for i in page],
                "limit": limit,
                "offset": offset,
                "more": offset + limit < len(found),
            }
        )

    async def _teams(self, request: web.Request) -> web.Response:
        q = request.query.get("query", "").lower()
        found = [
            {"id": tid, "type": "team", "name": name, "summary": name}
            for tid, (name, _) in self.teams.items()
            if q in name.lower()
        ]
        return web.json_response({"teams": found, "limit": 25, "offset": 0, "more": False})

    async def _policies(self, request: web.Request) -> web.Response:
        wanted = request.query.getall("team_ids[]", [])
        found = [
            {
                "id": pid,
                "type": "escalation_policy",
                "name": self.policies[pid][0],
                "summary": self.policies[pid][0],
            }
            for tid, (_, pid) in self.teams.items()
            if tid in wanted and pid in self.policies
        ]
        return web.json_response(
            {"escalation_policies": found, "limit": 25, "offset": 0, "more": False}
        )

    # -- schedule overrides -----------------------------------------------------------------

    async def _add_overrides(self, request: web.Request) -> web.Response:
        sender = request.headers.get("From")
        if sender is not None and self._user_by_email(sender) is None:
            return _error(400, "Invalid Input Provided", ["Requester User Not Found"])
        sid = request.match_info["id"]
        if sid not in self.schedules:
            return _error(404, "Not Found")
        results = []
        for item in (await request.json())["overrides"]:
            uid = item["user"]["id"]
            if uid not in self.users:
                results.append({"status": 400, "errors": ["User not found"], "override": item})
                continue
            oid = f"POVR{next(_override_ids)}"
            self.overrides[oid] = {"schedule": sid, **item, "id": oid}
            user = self.users[uid]
            override = {**item, "id": oid, "user": _ref("user", uid, user.name)}
            results.append({"status": 201, "override": override})
        self.writes.append(("POST", request.path, sender or ""))
        return web.json_response(results, status=201)

    async def _del_override(self, request: web.Request) -> web.Response:
        oid = request.match_info["override_id"]
        found = self.overrides.get(oid)
        if found is None or found["schedule"] != request.match_info["id"]:
            return _error(404, "Not Found")
        del self.overrides[oid]
        self.writes.append(("DELETE", request.path, request.headers.get("From", "")))
        return web.Response(status=204)


_override_ids = itertools.count(1)


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _ref(kind: str, id_: str, summary: str = "") -> dict[str, Any]:
    return {"id": id_, "type": f"{kind}_reference", "summary": summary or id_}


def _error(status: int, message: str, errors: list[str] | None = None) -> web.Response:
    payload: dict[str, Any] = {"error": {"message": message, "code": 2001}}
    if errors:
        payload["error"]["errors"] = errors
    return web.json_response(payload, status=status)


def phone(number: str, *, sms: bool = False, **extra: Any) -> dict[str, Any]:
    return {
        "type": "sms_contact_method" if sms else "phone_contact_method",
        "country_code": 1,
        "address": number,
        "label": "Mobile",
        **extra,
    }
