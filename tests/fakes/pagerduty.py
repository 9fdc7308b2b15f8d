"""A fake PagerDuty REST API on 127.0.0.1 that validates every request against the spec.

Every request is checked with openapi-core against shared/specs/pagerduty/rest-openapiv3.json;
a violation is recorded in `violations` (the fixture fails the test on any) and answered 400.

One deliberate patch to the spec: its `Reference` schema marks `id` and `type` readOnly while
also requiring them, so no request that references a service or user could ever validate
(the real API requires both). We drop readOnly on those two properties for references only.

Fault modes (`fault`, applied to paths starting with `fault_path`): "500", "429" (with
ratelimit-reset and Retry-After), "429-bare" (neither header nor body), "hang", "badjson",
"empty" (no one on call), "401", "drop-after" (do it, then drop the connection).
"""

from __future__ import annotations

import asyncio
import copy
import json
from dataclasses import dataclass, field
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
        if self.fault != "empty":
            for sid in wanted:
                if sid not in self.schedules:
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
        if not any(u.email == sender for u in self.users.values()):
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
        for uid in assignees:
            if uid not in self.users:
                return _error(400, "Invalid Input Provided", [f"Assignee {uid} not found"])
        n = len(self.incidents) + 1
        sender_ids = [u.id for u in self.users.values() if u.email == sender]
        incident = {
            "id": f"PINC{n:03d}",
            "type": "incident",
            "incident_number": n,
            "title": inc["title"],
            "incident_key": key,
            "status": "acknowledged" if assignees == sender_ids else "triggered",
            "html_url": f"https://example.pagerduty.com/incidents/PINC{n:03d}",
            "assignees": assignees,
        }
        self.incidents.append(incident)
        return web.json_response({"incident": incident}, status=201)

    async def _list_incidents(self, request: web.Request) -> web.Response:
        key = request.query.get("incident_key")
        found = [i for i in self.incidents if i["incident_key"] == key]
        return web.json_response({"incidents": found, "limit": 25, "offset": 0, "more": False})


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
