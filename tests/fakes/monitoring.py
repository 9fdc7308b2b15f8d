"""A protocol-level fake of the HTTP monitoring endpoints the status sources read.

Serves Prometheus' `GET /api/v1/query` (instant query answer shape), Alertmanager's
`GET /api/v2/alerts` (for failure modes the real one cannot produce), and any other path as
a JSON status document. `mode` makes every answer fail in one way: "500", "429", "slow",
"malformed", "drop" (connection closed without an answer), "html".
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from aiohttp import web


class FakeMonitoring:
    def __init__(self) -> None:
        self.mode = "ok"
        self.slow_seconds = 5.0
        self.prom_result: list[dict[str, Any]] = []
        self.prom_type = "vector"
        self.prom_error: str | None = None
        self.alerts: list[dict[str, Any]] = []
        self.doc: Any = {"status": {"indicator": "none"}}
        self.hits: Counter[str] = Counter()
        # Set by a test to hold every request until it is set: a poll caught mid-read.
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()
        self.queries: list[dict[str, str]] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> FakeMonitoring:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.hits[request.path] += 1
        self.queries.append(dict(request.query))
        if self.gate is not None:
            self.entered.set()
            await self.gate.wait()
        if self.mode == "500":
            return web.Response(status=500, text="internal server error")
        if self.mode == "429":
            return web.Response(status=429, text="slow down", headers={"Retry-After": "3"})
        if self.mode == "slow":
            await asyncio.sleep(self.slow_seconds)
        if self.mode == "malformed":
            return web.Response(text='{"status": "succ', content_type="application/json")
        if self.mode == "html":
            return web.Response(text="<html>login</html>", content_type="text/html")
        if self.mode == "drop":
            assert request.transport is not None
            request.transport.close()
            return web.Response()
        if request.path == "/api/v1/query":
            if self.prom_error:
                return web.json_response(
                    {"status": "error", "errorType": "bad_data", "error": self.prom_error},
                    status=400,
                )
            return web.json_response(
                {
                    "status": "success",
                    "data": {"resultType": self.prom_type, "result": self.prom_result},
                }
            )
        if request.path == "/api/v2/alerts":
            return web.json_response(self.alerts)
        return web.json_response(self.doc)
