"""A fake Azure Bot Service on 127.0.0.1 (port 0): the parts of login.microsoftonline.com,
login.botframework.com, the Bot Connector and Microsoft Graph a Teams bot talks to, plus the
Teams channel that sends activities through the fake Relay.

Keys: RSA keys are made when the module is first used (2048 bit): "a" signs channel tokens and
is published endorsed for `msteams`; "b" is published endorsed for `webchat` only; "c" is not
published until a test calls `publish("c")` (a rotation); "entra" signs the access tokens the
token endpoint issues.

  GET  /v1/.well-known/openidconfiguration   issuer, jwks_uri, RS256 (counted: `openid_hits`)
  GET  /v1/.well-known/keys                  the published keys (counted: `jwks_hits`)
  POST /{tenant}/oauth2/v2.0/token           client credentials: tenant, client id, secret and
                                             scope checked, Entra's AADSTS errors otherwise
  /{region}/{tenant}/v3/…                    the Bot Connector: every request and response is
                                             validated with openapi-core against
                                             tests/specs/teams/botframework-channel.openapi3.json
                                             (violations recorded, requests answered 400)
  POST /v1.0/teams/{team}/channels           Graph channel creation (displayName at most 50,
                                             a Graph-scoped token; 403 with refuse_channels)

The Connector checks the bearer token (signed by "entra", audience the Bot Framework), refuses
a message over 100 KB counted in UTF-16 with 413 `MessageSizeTooBig`, and answers the next
calls with `faults` ((status, headers) pairs) when a test queues them. Every request the server
receives is recorded in `requests` (method, Host header, path, Authorization).

`post_activity` is the Teams channel: it signs a token (claims and key overridable, for the
refusal matrix) and POSTs the activity to the relay's sender endpoint; the activity is first
validated against the Activity JSON schema (tests/specs/teams/botframework.json) unless the
test sends a deliberately malformed one.
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import aiohttp
import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa
from jsonschema import Draft7Validator  # type: ignore[import-untyped]
from jwt.algorithms import RSAAlgorithm
from multidict import CIMultiDict, MultiDict
from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters

from tests.spec_files import vendored_spec
from tests.teams_helpers import APP_ID, APP_PASSWORD, TENANT

ISSUER = "https://api.botframework.com"
BOT_AUDIENCE = "https://api.botframework.com"
GRAPH_AUDIENCE = "https://graph.microsoft.com"
SCOPES = {
    "https://api.botframework.com/.default": BOT_AUDIENCE,
    "https://graph.microsoft.com/.default": GRAPH_AUDIENCE,
}
REGION = "amer"
BOT_ID = f"28:{APP_ID}"
USER_ID = "29:1user-alice-000000000000000000000000000000000000000000"
USER_AAD = "aaaaaaaa-1111-4222-8333-444444444444"
TEAM_ID = "19:team0000000000000000000000000000@thread.tacv2"
CHANNEL = "19:chan0000000000000000000000000000@thread.tacv2"
MESSAGE_LIMIT = 100 * 1024  # bytes of UTF-16


@cache
def keys() -> dict[str, rsa.RSAPrivateKey]:
    return {
        name: rsa.generate_private_key(public_exponent=65537, key_size=2048)
        for name in ("a", "b", "c", "entra")
    }


ENDORSEMENTS = {"a": ["msteams"], "b": ["webchat"], "c": ["msteams"]}


@cache
def connector_spec() -> OpenAPI:
    spec = json.loads(vendored_spec("teams", "botframework-channel.openapi3.json").read_text())
    return OpenAPI.from_dict(spec, config=Config(spec_validator_cls=None))


@cache
def activity_schema() -> Draft7Validator:
    schema = json.loads(vendored_spec("teams", "botframework.json").read_text())
    return Draft7Validator({"$ref": "#/definitions/Activity", "definitions": schema["definitions"]})


class _Request:
    """openapi-core's request protocol over an aiohttp request, host pinned to the spec's."""

    def __init__(self, request: web.Request, path: str, body: bytes) -> None:
        self.host_url = "https://api.botframework.com"
        self.path = path
        self.method = request.method.lower()
        self.body = body or None
        self.content_type = request.content_type
        self.parameters = RequestParameters(
            query=MultiDict(request.query), header=CIMultiDict(request.headers), cookie={}
        )


@dataclass
class _Response:
    status_code: int
    content_type: str
    headers: Any
    data: bytes | None


def jwk(name: str) -> dict[str, Any]:
    public = RSAAlgorithm.to_jwk(keys()[name].public_key(), as_dict=True)
    return {**public, "kid": f"key-{name}", "use": "sig", "endorsements": ENDORSEMENTS[name]}


@dataclass
class FakeBotService:
    faults: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    published: list[str] = field(default_factory=lambda: ["a", "b"])
    token_lifetime: int = 3599
    openid_hits: int = 0
    jwks_hits: int = 0
    token_requests: list[dict[str, str]] = field(default_factory=list)
    requests: list[tuple[str, str, str, str]] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    # (method, conversation id, activity id or "", body) of every Connector write
    activities: list[tuple[str, str, str, Any]] = field(default_factory=list)
    conversations: list[dict[str, Any]] = field(default_factory=list)  # create bodies
    channels: list[dict[str, Any]] = field(default_factory=list)  # Graph creations
    call_times: list[float] = field(default_factory=list)  # time.monotonic() per Connector call
    refuse_channels: bool = False  # Graph answers 403 (Channel.Create.Group not granted)
    url: str = ""

    def __post_init__(self) -> None:
        self._ids = itertools.count(1_700_000_000_000)

    # -- addresses -----------------------------------------------------------------------

    @property
    def service_url(self) -> str:
        return f"{self.url}/{REGION}/{TENANT}/"

    @property
    def openid_url(self) -> str:
        return f"{self.url}/v1/.well-known/openidconfiguration"

    def section(self, relay_url: str | None = None, **overrides: Any) -> dict[str, Any]:
        """The [teams] keys that point at this fake."""
        return {
            "login_url": self.url,
            "openid_url": self.openid_url,
            "graph_url": f"{self.url}/v1.0",
            **overrides,
        }

    # -- life ------------------------------------------------------------------------------

    async def start(self) -> None:
        connector_spec()
        app = web.Application(middlewares=[self._record])
        app.router.add_get("/v1/.well-known/openidconfiguration", self._openid)
        app.router.add_get("/v1/.well-known/keys", self._jwks)
        app.router.add_post("/{tenant}/oauth2/v2.0/token", self._token)
        app.router.add_post("/v1.0/teams/{team}/channels", self._graph_channel)
        base = "/{region}/{tenant}/v3"
        app.router.add_post(base + "/conversations", self._create)
        app.router.add_post(base + "/conversations/{cid}/activities", self._send)
        app.router.add_post(base + "/conversations/{cid}/activities/{aid}", self._reply)
        app.router.add_put(base + "/conversations/{cid}/activities/{aid}", self._update)
        app.router.add_delete(base + "/conversations/{cid}/activities/{aid}", self._delete)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        await self._runner.cleanup()

    def publish(self, name: str) -> None:
        self.published.append(name)

    # -- tokens for the channel side -----------------------------------------------------

    def channel_token(
        self, *, key: str = "a", header: dict[str, Any] | None = None, **claims: Any
    ) -> str:
        """A Bot Connector token as the Teams channel sends it; any claim overridable
        (None removes it)."""
        now = int(time.time())
        body: dict[str, Any] = {
            "iss": ISSUER,
            "aud": APP_ID,
            "serviceurl": self.service_url,
            "nbf": now - 5,
            "exp": now + 3600,
            "iat": now - 5,
        }
        body.update(claims)
        body = {k: v for k, v in body.items() if v is not None}
        headers = {"kid": f"key-{key}", **(header or {})}
        return jwt.encode(body, keys()[key], algorithm="RS256", headers=headers)

    def activity(self, text: str = "<at>chatopsd</at> ic", **fields: Any) -> dict[str, Any]:
        """A Teams channel message mentioning the bot (fields overridable, None removes)."""
        aid = str(next(self._ids))
        activity: dict[str, Any] = {
            "type": "message",
            "id": aid,
            "timestamp": "2026-11-23T12:00:00.000Z",
            "serviceUrl": self.service_url,
            "channelId": "msteams",
            "from": {"id": USER_ID, "name": "Alice", "aadObjectId": USER_AAD},
            "conversation": {
                "isGroup": True,
                "conversationType": "channel",
                "tenantId": TENANT,
                "id": f"{CHANNEL};messageid={aid}",
            },
            "recipient": {"id": BOT_ID, "name": "chatopsd"},
            "textFormat": "plain",
            "text": text,
            "entities": [
                {
                    "type": "mention",
                    "text": "<at>chatopsd</at>",
                    "mentioned": {"id": BOT_ID, "name": "chatopsd"},
                },
                {"type": "clientInfo", "locale": "en-US", "platform": "Web"},
            ],
            "channelData": {
                "teamsChannelId": CHANNEL,
                "teamsTeamId": TEAM_ID,
                "channel": {"id": CHANNEL},
                "team": {"id": TEAM_ID},
                "tenant": {"id": TENANT},
            },
            "locale": "en-US",
        }
        activity.update(fields)
        return {k: v for k, v in activity.items() if v is not None}

    async def post_activity(
        self,
        endpoint: str,
        activity: dict[str, Any],
        *,
        token: str | None = "sign",
        authorization: str | None = None,
        validate: bool = True,
        http: aiohttp.ClientSession | None = None,
        content_type: str = "application/json; charset=utf-8",
        method: str = "POST",
    ) -> tuple[int, dict[str, str], bytes]:
        """The channel posts an activity to the bot's messaging endpoint (the relay)."""
        if validate:
            errors = [e.message for e in activity_schema().iter_errors(activity)]
            assert errors == [], f"the test's activity is not a Bot Framework activity: {errors}"
        headers = {"Content-Type": content_type}
        if authorization is not None:
            headers["Authorization"] = authorization
        elif token == "sign":
            headers["Authorization"] = f"Bearer {self.channel_token()}"
        elif token is not None:
            headers["Authorization"] = f"Bearer {token}"
        own = http is None
        session = http or aiohttp.ClientSession()
        try:
            async with session.request(
                method, endpoint, data=json.dumps(activity).encode(), headers=headers
            ) as r:
                return r.status, dict(r.headers), await r.read()
        finally:
            if own:
                await session.close()

    # -- server --------------------------------------------------------------------------

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append(
            (
                request.method,
                request.headers.get("Host", ""),
                request.path,
                request.headers.get("Authorization", ""),
            )
        )
        parts = request.path.split("/")
        if len(parts) > 3 and parts[3] == "v3":
            return await self._connector(request, handler, "/" + "/".join(parts[3:]))
        return await handler(request)

    async def _connector(self, request: web.Request, handler: Any, path: str) -> web.StreamResponse:
        self.call_times.append(time.monotonic())
        body = await request.read()
        spec_request = _Request(request, path, body)
        try:
            connector_spec().validate_request(spec_request)
        except Exception as exc:
            self.violations.append(f"{request.method} {path}: {exc}")
            return _error(400, "BadSyntax", f"spec violation: {exc}")
        if request.match_info.get("tenant") != TENANT:
            return _error(403, "Forbidden", "wrong tenant in the serviceUrl")
        if not self._token_ok(request, BOT_AUDIENCE):
            return _error(401, "Unauthorized", "Authorization has been denied for this request")
        if self.faults:
            status, headers = self.faults.pop(0)
            return _error(
                status, "Throttled" if status == 429 else "ServiceError", "fault", headers
            )
        if body and _utf16_size(body) > MESSAGE_LIMIT:
            return _error(413, "MessageSizeTooBig", "Message size too big")
        response = await handler(request)
        assert isinstance(response, web.Response)
        try:
            connector_spec().validate_response(
                spec_request,
                _Response(
                    response.status,
                    (response.content_type or "").lower(),
                    response.headers,
                    response.body if isinstance(response.body, bytes) else None,
                ),
            )
        except Exception as exc:
            self.violations.append(f"response to {request.method} {path}: {exc}")
        return response

    def _token_ok(self, request: web.Request, audience: str) -> bool:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer":
            return False
        try:
            jwt.decode(token, keys()["entra"].public_key(), algorithms=["RS256"], audience=audience)
        except jwt.PyJWTError:
            return False
        return True

    async def _openid(self, request: web.Request) -> web.Response:
        self.openid_hits += 1
        return web.json_response(
            {
                "issuer": ISSUER,
                "authorization_endpoint": "https://invalid.botframework.com",
                "jwks_uri": f"{self.url}/v1/.well-known/keys",
                "id_token_signing_alg_values_supported": ["RS256"],
                "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            }
        )

    async def _jwks(self, request: web.Request) -> web.Response:
        self.jwks_hits += 1
        return web.json_response({"keys": [jwk(name) for name in self.published]})

    async def _token(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        self.token_requests.append({k: str(v) for k, v in form.items()})
        tenant = request.match_info["tenant"]
        if tenant == "botframework.com":
            return _aad(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{form.get('client_id')}' was not found in the "
                "directory 'Bot Framework'.",
            )
        if tenant != TENANT:
            return _aad(400, "invalid_request", 90002, f"Tenant '{tenant}' not found.")
        if form.get("grant_type") != "client_credentials" or form.get("client_id") != APP_ID:
            return _aad(400, "unauthorized_client", 700016, "Application not found.")
        if form.get("client_secret") != APP_PASSWORD:
            return _aad(401, "invalid_client", 7000215, "Invalid client secret provided.")
        audience = SCOPES.get(str(form.get("scope")))
        if audience is None:
            return _aad(400, "invalid_scope", 500011, "The resource principal was not found.")
        now = int(time.time())
        token = jwt.encode(
            {
                "aud": audience,
                "iss": f"https://sts.windows.net/{TENANT}/",
                "appid": APP_ID,
                "tid": TENANT,
                "nbf": now,
                "exp": now + self.token_lifetime,
                "jti": uuid.uuid4().hex,
            },
            keys()["entra"],
            algorithm="RS256",
            headers={"kid": "key-entra"},
        )
        return web.json_response(
            {
                "token_type": "Bearer",
                "expires_in": self.token_lifetime,
                "ext_expires_in": self.token_lifetime,
                "access_token": token,
            }
        )

    # -- the Connector -------------------------------------------------------------------

    def _new_id(self) -> str:
        return str(next(self._ids))

    async def _create(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.conversations.append(body)
        channel = (body.get("channelData") or {}).get("channel", {}).get("id")
        activity_id = self._new_id() if body.get("activity") else None
        if channel:
            cid = f"{channel};messageid={activity_id or self._new_id()}"
        else:
            members = body.get("members") or []
            if not members:
                return _error(400, "BadArgument", "members or a channel are required")
            cid = f"a:1dm-{members[0]['id']}"
        if body.get("activity"):
            self.activities.append(("CREATE", cid, activity_id or "", body["activity"]))
        found: dict[str, Any] = {"id": cid, "serviceUrl": self.service_url}
        if activity_id:
            found["activityId"] = activity_id
        return web.json_response(found, status=201)

    async def _send(self, request: web.Request) -> web.Response:
        body = await request.json()
        new = self._new_id()
        self.activities.append(("SEND", request.match_info["cid"], new, body))
        return web.json_response({"id": new}, status=201)

    async def _reply(self, request: web.Request) -> web.Response:
        body = await request.json()
        new = self._new_id()
        self.activities.append(
            ("REPLY", request.match_info["cid"], request.match_info["aid"], body)
        )
        return web.json_response({"id": new}, status=201)

    async def _update(self, request: web.Request) -> web.Response:
        body = await request.json()
        aid = request.match_info["aid"]
        self.activities.append(("UPDATE", request.match_info["cid"], aid, body))
        return web.json_response({"id": aid}, status=200)

    async def _delete(self, request: web.Request) -> web.Response:
        self.activities.append(
            ("DELETE", request.match_info["cid"], request.match_info["aid"], None)
        )
        return web.Response(status=200)

    # -- Graph ---------------------------------------------------------------------------

    async def _graph_channel(self, request: web.Request) -> web.Response:
        if self.refuse_channels:
            return web.json_response(
                {"error": {"code": "Forbidden", "message": "Missing role permissions."}},
                status=403,
            )
        if not self._token_ok(request, GRAPH_AUDIENCE):
            return web.json_response(
                {
                    "error": {
                        "code": "InvalidAuthenticationToken",
                        "message": "Access token validation failure.",
                    }
                },
                status=401,
            )
        body = await request.json()
        name = body.get("displayName")
        if not isinstance(name, str) or not 0 < len(name) <= 50:
            return web.json_response(
                {
                    "error": {
                        "code": "BadRequest",
                        "message": "displayName must be 1 to 50 characters",
                    }
                },
                status=400,
            )
        channel = {
            "id": f"19:{uuid.uuid4().hex}@thread.tacv2",
            "displayName": name,
            "membershipType": body.get("membershipType", "standard"),
        }
        self.channels.append({"team": request.match_info["team"], **body, "id": channel["id"]})
        return web.json_response(channel, status=201)


def _utf16_size(body: bytes) -> int:
    """The activity's size as Teams counts it: its JSON text (escapes undone) in UTF-16."""
    try:
        text = json.dumps(json.loads(body), ensure_ascii=False)
    except ValueError:
        text = body.decode("utf-8", "replace")
    return len(text.encode("utf-16-le"))


def _error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response(
        {"error": {"code": code, "message": message}}, status=status, headers=headers or {}
    )


def _aad(status: int, error: str, code: int, message: str) -> web.Response:
    trace = uuid.uuid4()
    return web.json_response(
        {
            "error": error,
            "error_description": f"AADSTS{code}: {message} Trace ID: {trace}",
            "error_codes": [code],
            "trace_id": str(trace),
        },
        status=status,
    )
