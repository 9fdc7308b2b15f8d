"""A fake Atlassian Statuspage v1 API on 127.0.0.1 that validates every request against the spec.

The spec is read through `shared_spec` (Statuspage's document carries no licence, so it is not
copied into the repository; see tests/specs/README.md). Every request is checked with
openapi-core against `statuspage-extract.patched.openapi.json`; a violation is recorded in
`violations` (tests fail on any) and answered 400.

One deliberate tightening: the request bodies of the incident endpoints get
`additionalProperties: false` (the published schemas allow any key, so a misspelt field would
pass unnoticed and be ignored by the real API). Component ids must be ones this page has.

Fault modes (`fault`, for `fault_times` requests, then normal): "429" / "420" (with Retry-After
`retry_after`), "429-bare" / "420-bare" (no header), "500", "hang" (until closed),
"badjson" (does the work, then answers malformed JSON: the answer is lost), "hang-after"
(does the work, then hangs until closed: as if the daemon died waiting), "echo-auth" (a 400
whose body quotes the request's Authorization header back, key and all).
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from aiohttp import web
from multidict import CIMultiDict, MultiDict
from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters

from tests.spec_files import shared_spec

API_KEY = "sp-test-key-0000"
PAGE_ID = "pg1test"


@cache
def openapi() -> OpenAPI:
    spec = json.loads(
        shared_spec("statuspage", "statuspage-extract.patched.openapi.json").read_text()
    )
    spec = copy.deepcopy(spec)
    for name in ("postPagesPageIdIncidents", "patchPagesPageIdIncidents"):
        schema = spec["components"]["schemas"][name]
        schema["additionalProperties"] = False
        schema["properties"]["incident"]["additionalProperties"] = False
    return OpenAPI.from_dict(spec, config=Config(spec_validator_cls=None))


class _Request:
    def __init__(self, request: web.Request, body: bytes) -> None:
        self.host_url = "https://api.statuspage.io"
        self.path = request.path  # "/v1/pages/...": the spec's server carries the /v1
        self.method = request.method.lower()
        self.body = body or None
        self.content_type = request.content_type
        self.parameters = RequestParameters(
            query=MultiDict(request.query), header=CIMultiDict(request.headers), cookie={}
        )


@dataclass
class FakeStatuspage:
    components: dict[str, str] = field(
        default_factory=lambda: {"cmp_pay": "operational", "cmp_api": "operational"}
    )
    fault: str | None = None
    fault_times: int = 1
    retry_after: str = "7"
    violations: list[str] = field(default_factory=list)
    requests: list[tuple[str, str, Any]] = field(default_factory=list)
    incidents: dict[str, dict[str, Any]] = field(default_factory=dict)
    hits: int = 0  # every request that reached the server, answered or not
    url: str = ""

    async def start(self) -> None:
        openapi()
        self._closing = asyncio.Event()
        self.created = asyncio.Event()  # set when an incident is created
        self._ids = itertools.count(1)
        app = web.Application(middlewares=[self._validate])
        base = f"/v1/pages/{PAGE_ID}/incidents"
        app.router.add_post(base, self._create)
        app.router.add_get(base + "/unresolved", self._unresolved)
        app.router.add_patch(base + "/{id}", self._update)
        app.router.add_get(base + "/{id}", self._get)
        app.router.add_get(f"/v1/pages/{PAGE_ID}/components", self._components)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/v1"

    async def close(self) -> None:
        self._closing.set()
        await self._runner.cleanup()

    def calls(self, method: str) -> list[Any]:
        """Bodies of the requests made with `method` that were answered normally."""
        return [body for m, _, body in self.requests if m == method]

    @web.middleware
    async def _validate(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.hits += 1
        raw = await request.read()
        try:
            openapi().validate_request(_Request(request, raw))
        except Exception as exc:
            self.violations.append(f"{request.method} {request.path_qs}: {exc}")
            return web.json_response({"error": f"spec violation: {exc}"}, status=400)
        if request.headers.get("Authorization") != f"OAuth {API_KEY}":
            return web.json_response({"error": "Could not authenticate"}, status=401)
        fault = self.fault if self.fault_times > 0 else None
        if fault is not None:
            self.fault_times -= 1
        if fault in ("429", "420"):
            return web.json_response(
                {"error": "Rate limit exceeded"},
                status=int(fault),
                headers={"Retry-After": self.retry_after},
            )
        if fault in ("429-bare", "420-bare"):
            return web.Response(status=int(fault[:3]))
        if fault == "500":
            return web.json_response({"error": "Internal Server Error"}, status=500)
        if fault == "echo-auth":
            quoted = f"bad request with 'Authorization': '{request.headers['Authorization']}'"
            return web.json_response({"error": quoted}, status=400)
        if fault == "hang":
            await self._closing.wait()
            return web.json_response({"error": "hung up"}, status=503)
        body = json.loads(raw) if raw else None
        response: web.StreamResponse = await handler(request)
        if response.status < 300:
            self.requests.append((request.method, request.path, body))
        if fault == "badjson":
            return web.Response(text="{not json", content_type="application/json")
        if fault == "hang-after":
            await self._closing.wait()
        return response

    def _check_components(self, inc: dict[str, Any]) -> str | None:
        for cid in [*inc.get("components", {}), *inc.get("component_ids", [])]:
            if cid not in self.components:
                self.violations.append(f"unknown component {cid}")
                return cid
        return None

    def _apply(self, record: dict[str, Any], inc: dict[str, Any]) -> None:
        for cid, status in inc.get("components", {}).items():
            self.components[cid] = status
        if "status" in inc:
            record["status"] = inc["status"]
        record["incident_updates"].insert(
            0,
            {
                "id": f"upd{len(record['incident_updates']) + 1}",
                "status": record["status"],
                "body": inc.get("body", ""),
                "incident_id": record["id"],
            },
        )
        record["components"] = [
            {"id": cid, "status": self.components[cid], "page_id": PAGE_ID}
            for cid in record["component_ids"]
        ]

    async def _create(self, request: web.Request) -> web.Response:
        inc = (await request.json())["incident"]
        if (bad := self._check_components(inc)) is not None:
            return web.json_response({"error": f"component {bad} not found"}, status=422)
        n = next(self._ids)
        record: dict[str, Any] = {
            "id": f"spinc{n}",
            "page_id": PAGE_ID,
            "name": inc["name"],
            "status": inc.get("status", "investigating"),
            "impact": inc.get("impact_override", "none"),
            "impact_override": inc.get("impact_override"),
            "metadata": inc.get("metadata", {}),
            "shortlink": f"https://stspg.io/fake{n}",
            "component_ids": list(inc.get("component_ids", [])),
            "incident_updates": [],
            "created_at": "2026-11-23T12:00:00Z",
        }
        self._apply(record, inc)
        self.incidents[record["id"]] = record
        self.created.set()
        return web.json_response(record, status=201)

    async def _update(self, request: web.Request) -> web.Response:
        record = self.incidents.get(request.match_info["id"])
        if record is None:
            return web.json_response({"error": "not found"}, status=404)
        inc = (await request.json())["incident"]
        if (bad := self._check_components(inc)) is not None:
            return web.json_response({"error": f"component {bad} not found"}, status=422)
        self._apply(record, inc)
        return web.json_response(record)

    async def _get(self, request: web.Request) -> web.Response:
        record = self.incidents.get(request.match_info["id"])
        if record is None:
            return web.json_response({"error": "not found"}, status=404)
        return web.json_response(record)

    async def _components(self, request: web.Request) -> web.Response:
        """The page's components, paginated as Statuspage does (at most 100 a page)."""
        page = int(request.query.get("page", "1"))
        per_page = min(int(request.query.get("per_page", "100")), 100)
        rows = [
            {"id": cid, "page_id": PAGE_ID, "name": cid, "status": status}
            for cid, status in self.components.items()
        ]
        return web.json_response(rows[(page - 1) * per_page : page * per_page])

    async def _unresolved(self, request: web.Request) -> web.Response:
        return web.json_response([r for r in self.incidents.values() if r["status"] != "resolved"])
