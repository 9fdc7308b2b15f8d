"""One small aiohttp server that answers the read-only endpoints `chatopsd doctor` probes:
Slack Web API, Discord REST, Mattermost REST (over TLS), PagerDuty REST, Alertmanager,
Prometheus and a plain JSON health endpoint. Shapes follow the platforms' documented answers.

It runs in its own thread with its own loop, because `chatopsd doctor` calls asyncio.run().
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

SLACK_BOT = "xoxb-test-doctor-bot"
SLACK_APP = "xapp-test-doctor-app"
DISCORD = "discord-test-doctor-token"
MATTERMOST = "mm-test-doctor-token"
PAGERDUTY = "pd-test-doctor-token"


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    # Exactly application/json, as discord.py and friends expect.
    import json

    return web.Response(
        body=json.dumps(body).encode(),
        status=status,
        headers={"Content-Type": "application/json", **(headers or {})},
    )


@dataclass
class Targets:
    # every bot scope docs/slack.md's manifest grants
    slack_scopes: str = (
        "app_mentions:read,channels:history,groups:history,im:history,mpim:history,"
        "chat:write,commands,channels:manage,pins:write,reactions:read,users:read,"
        "users:read.email,im:write,usergroups:write"
    )
    socket_mode: bool = True
    discord_flags: int = 1 << 19
    pd_users: list[str] = field(default_factory=lambda: ["oncall-bot@example.com"])
    pd_services: set[str] = field(default_factory=lambda: {"PSVC01"})
    pd_schedules: set[str] = field(default_factory=lambda: {"PSCHED1", "PSCHED2"})
    requests: list[str] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.middlewares.append(self._record)
        r = app.router
        r.add_post("/slack/api/auth.test", self.slack_auth_test)
        r.add_post("/slack/api/apps.connections.open", self.slack_connections_open)
        r.add_get("/discord/api/v10/users/@me", self.discord_me)
        r.add_get("/discord/api/v10/oauth2/applications/@me", self.discord_app)
        r.add_get("/api/v4/users/me", self.mattermost_me)
        r.add_get("/pd/users", self.pd_users_list)
        r.add_get("/pd/services/{id}", self.pd_service)
        r.add_get("/pd/schedules/{id}", self.pd_schedule)
        r.add_get("/am/api/v2/alerts", self.am_alerts)
        r.add_get("/prom/api/v1/query", self.prom_query)
        r.add_get("/health", self.health)
        r.add_get("/broken/{how}", self.broken)
        return app

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append(f"{request.method} {request.path}")
        return await handler(request)  # type: ignore[no-any-return]

    # Slack: errors are HTTP 200 with ok=false
    async def slack_auth_test(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {SLACK_BOT}":
            return _json({"ok": False, "error": "invalid_auth"})
        body = {
            "ok": True,
            "url": "https://acme.slack.com/",
            "team": "Acme",
            "user": "chatopsd",
            "team_id": "T0001",
            "user_id": "U0001",
            "bot_id": "B0001",
        }
        return _json(body, headers={"x-oauth-scopes": self.slack_scopes})

    async def slack_connections_open(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        if auth == f"Bearer {SLACK_BOT}":
            return _json({"ok": False, "error": "not_allowed_token_type"})
        if auth != f"Bearer {SLACK_APP}":
            return _json({"ok": False, "error": "invalid_auth"})
        if not self.socket_mode:
            return _json({"ok": False, "error": "not_allowed_token_type"})
        return _json({"ok": True, "url": "wss://127.0.0.1:1/link/?ticket=t"})

    # Discord
    def _discord_ok(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bot {DISCORD}"

    async def discord_me(self, request: web.Request) -> web.Response:
        if not self._discord_ok(request):
            return _json({"message": "401: Unauthorized", "code": 0}, 401)
        return _json({"id": "1001", "username": "chatopsd", "discriminator": "0", "bot": True})

    async def discord_app(self, request: web.Request) -> web.Response:
        if not self._discord_ok(request):
            return _json({"message": "401: Unauthorized", "code": 0}, 401)
        return _json({"id": "2002", "name": "chatopsd", "flags": self.discord_flags})

    # Mattermost
    async def mattermost_me(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {MATTERMOST}":
            return _json(
                {
                    "id": "api.context.session_expired.app_error",
                    "message": "Invalid or expired session, please login again.",
                    "status_code": 401,
                },
                401,
            )
        return _json({"id": "u1", "username": "chatopsd", "is_bot": True})

    # PagerDuty
    def _pd_ok(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Token token={PAGERDUTY}"

    def _pd_denied(self) -> web.Response:
        return _json({"error": {"message": "Unauthorized", "code": 2006}}, 401)

    def _pd_missing(self) -> web.Response:
        return _json({"error": {"message": "Not Found", "code": 2100}}, 404)

    async def pd_users_list(self, request: web.Request) -> web.Response:
        if not self._pd_ok(request):
            return self._pd_denied()
        query = request.query.get("query", "").lower()
        users = [
            {"id": f"PU{i}", "type": "user", "name": e.split("@")[0], "email": e}
            for i, e in enumerate(self.pd_users)
            if query in e.lower()
        ]
        return _json({"users": users, "limit": 25, "offset": 0, "more": False, "total": None})

    async def pd_service(self, request: web.Request) -> web.Response:
        if not self._pd_ok(request):
            return self._pd_denied()
        sid = request.match_info["id"]
        if sid not in self.pd_services:
            return self._pd_missing()
        return _json({"service": {"id": sid, "type": "service", "name": "Checkout"}})

    async def pd_schedule(self, request: web.Request) -> web.Response:
        if not self._pd_ok(request):
            return self._pd_denied()
        sid = request.match_info["id"]
        if sid not in self.pd_schedules:
            return self._pd_missing()
        return _json({"schedule": {"id": sid, "type": "schedule", "name": f"Rota {sid}"}})

    # Status sources
    async def am_alerts(self, request: web.Request) -> web.Response:
        return _json([])

    async def prom_query(self, request: web.Request) -> web.Response:
        if not request.query.get("query"):
            return _json({"status": "error", "errorType": "bad_data", "error": "no query"}, 400)
        return _json({"status": "success", "data": {"resultType": "vector", "result": []}})

    async def health(self, request: web.Request) -> web.Response:
        return _json({"status": {"indicator": "none", "description": "All good"}})

    async def broken(self, request: web.Request) -> web.StreamResponse:
        how = request.match_info["how"]
        if how == "slow":
            await asyncio.sleep(5)
        if how == "500":
            return web.Response(status=500, text="internal error")
        if how == "429":
            return _json({"error": "rate limited"}, 429, {"Retry-After": "30"})
        if how == "garbage":
            return web.Response(text="<html>not json</html>", content_type="text/html")
        if how == "drop":
            assert request.transport is not None
            request.transport.close()  # the connection dies mid-request
        return _json({})


class ServerThread:
    """Serves `Targets` on 127.0.0.1 (plain HTTP) and, with a context, on a second TLS port."""

    def __init__(self, targets: Targets, tls: ssl.SSLContext | None = None) -> None:
        self.targets = targets
        self.tls = tls
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self.tls_port = 0
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._main, name="probe-targets", daemon=True)
        self._runner: web.AppRunner | None = None

    def __enter__(self) -> ServerThread:
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("fake server did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._start())
        self._started.set()
        self.loop.run_forever()
        self.loop.close()

    async def _start(self) -> None:
        self._runner = web.AppRunner(self.targets.app(), shutdown_timeout=0.2)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = _port(site)
        if self.tls is not None:
            tls_site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.tls)
            await tls_site.start()
            self.tls_port = _port(tls_site)

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def _port(site: web.TCPSite) -> int:
    server = site._server
    assert server is not None
    return int(server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
