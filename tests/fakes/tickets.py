"""Fake ticket trackers on 127.0.0.1: GitHub's create-issue and Jira Cloud's create-issue, and
the read-only calls `chatopsd doctor` probes with (GitHub's get-repository, Jira's get-project
and get-current-user).

Each request is validated with openapi-core against the vendored extracts
(tests/specs/github/, tests/specs/jira/), and so is each answer of the read-only calls (its
body built from the description's own example); Jira's `fields.description`, which the
OpenAPI leaves untyped, is validated against the Atlassian Document Format schema
(tests/specs/atlassian-adf/).
A violation is recorded in `violations` (tests fail on any) and answered 400.

Fault modes (`fault`, for `fault_times` requests): "500", "hang" (until closed), "drop-after"
(creates the issue, then drops the connection: the answer is lost), "echo-auth" (a 400 whose
body quotes the request's headers, Authorization included, as some proxies and APIs do),
"badjson" (a 200 whose body is not JSON), "403" (GitHub's answer for a token not authorised
for the organisation's SAML SSO). `fault_after` requests are answered normally first.

`repos` are the GitHub repositories the token can see (owner/repo -> has_issues, archived);
`projects` the Jira projects the account can see (key -> issue type names). Anything else is
a 404, as both trackers answer for what the credentials cannot see.

`mentions` lists who a created issue would notify, found the way the trackers find them: on
GitHub an `@user` or `@org/team` in the title or body that does not follow a word character;
on Jira a `mention` node in the ADF description, or wiki mention markup (`[~name]`) in it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from aiohttp import web
from jsonschema import Draft4Validator  # type: ignore[import-untyped]
from multidict import CIMultiDict, MultiDict
from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters

from tests.spec_files import vendored_spec

TOKEN = "tk-test-token-0000"
# GitHub's mention: "@" not after a word character, then a login (and a team after "/")
_GITHUB_MENTION = re.compile(r"(?<!\w)@([A-Za-z0-9][A-Za-z0-9-]*(?:/[A-Za-z0-9][\w.-]*)?)")
_JIRA_WIKI_MENTION = re.compile(r"\[~[^\]\s]+\]")
JIRA_EMAIL = "bot@example.com"
GITHUB_GET = "github-get-repository.extract.openapi.json"
JIRA_GET = "jira-get-project-myself.extract.openapi.json"


@cache
def _spec(provider: str, name: str) -> OpenAPI:
    spec = json.loads(vendored_spec(provider, name).read_text())
    return OpenAPI.from_dict(spec, config=Config(spec_validator_cls=None))


@cache
def adf_validator() -> Draft4Validator:
    return Draft4Validator(
        json.loads(vendored_spec("atlassian-adf", "adf-full.schema.json").read_text())
    )


class _Response:
    def __init__(self, answer: web.Response) -> None:
        self.status_code = answer.status
        self.content_type = answer.content_type
        self.headers = CIMultiDict(answer.headers)
        self.data = answer.body if isinstance(answer.body, bytes) else None


def _example(provider: str, name: str, path: str, example: str | None = None) -> dict[str, Any]:
    """The 200 answer's example from the description: a named one from components/examples,
    else the operation's own (Jira's is a JSON string)."""
    spec = json.loads(vendored_spec(provider, name).read_text())
    if example is not None:
        value: Any = spec["components"]["examples"][example]["value"]
    else:
        value = spec["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]
        value = json.loads(value["example"])
    assert isinstance(value, dict)
    return value


class _Request:
    def __init__(self, request: web.Request, body: bytes, host: str) -> None:
        self.host_url = host
        self.path = request.path
        self.method = request.method.lower()
        self.body = body or None
        self.content_type = request.content_type
        self.parameters = RequestParameters(
            query=MultiDict(request.query), header=CIMultiDict(request.headers), cookie={}
        )


@dataclass
class FakeTrackers:
    fault: str | None = None
    fault_times: int = 1
    fault_after: int = 0  # requests answered normally before the fault starts
    violations: list[str] = field(default_factory=list)
    github: list[dict[str, Any]] = field(default_factory=list)  # created issues (request bodies)
    jira: list[dict[str, Any]] = field(default_factory=list)
    hits: int = 0  # requests that reached the server, answered or not
    url: str = ""
    mentions: list[str] = field(default_factory=list)  # who the created issues would notify
    repos: dict[str, tuple[bool, bool]] = field(
        default_factory=lambda: {"acme/infra": (True, False)}  # has_issues, archived
    )
    projects: dict[str, list[str]] = field(default_factory=lambda: {"OPS": ["Task", "Bug"]})
    reads: list[str] = field(default_factory=list)  # paths of the read-only calls answered

    async def start(self) -> None:
        self._closing = asyncio.Event()
        self.reached = asyncio.Event()  # set when a request reaches the server
        app = web.Application()
        app.router.add_post("/repos/{owner}/{repo}/issues", self._github)
        app.router.add_post("/rest/api/3/issue", self._jira)
        app.router.add_get("/repos/{owner}/{repo}", self._github_repo)
        app.router.add_get("/rest/api/3/myself", self._jira_myself)
        app.router.add_get("/rest/api/3/project/{key}", self._jira_project)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        self._closing.set()
        await self._runner.cleanup()

    async def _check(
        self, request: web.Request, provider: str, name: str, host: str, auth: str
    ) -> tuple[dict[str, Any] | None, web.StreamResponse | None, str | None]:
        self.hits += 1
        self.reached.set()
        raw = await request.read()
        try:
            _spec(provider, name).validate_request(_Request(request, raw, host))
        except Exception as exc:
            self.violations.append(f"{provider} {request.method} {request.path}: {exc}")
            return None, web.json_response({"message": f"spec violation: {exc}"}, status=400), None
        if request.headers.get("Authorization") != auth:
            return None, web.json_response({"message": "Bad credentials"}, status=401), None
        fault = self.fault if self.fault_times > 0 and self.fault_after <= 0 else None
        self.fault_after -= 1
        if fault is not None:
            self.fault_times -= 1
        if fault == "500":
            return None, web.json_response({"message": "Server Error"}, status=500), None
        if fault == "403":
            # as GitHub answers a token not authorised for an organisation's SAML SSO
            sso = {
                "message": "Resource protected by organization SAML enforcement.",
                "documentation_url": "https://docs.github.com/articles/authenticating-to-a-github-organization-with-saml-single-sign-on/",
            }
            return None, web.json_response(sso, status=403), None
        if fault == "echo-auth":
            headers = {h: request.headers.get(h) for h in ("Authorization", "Accept")}
            echoed = {"message": "Bad request", "request_headers": headers}
            return None, web.Response(text=str(echoed), status=400), None
        if fault == "hang":
            await self._closing.wait()
            return None, web.json_response({"message": "hung"}, status=503), None
        if fault == "badjson":
            bad = web.Response(text="{not json", content_type="application/json")
            return None, bad, None
        return (json.loads(raw) if raw else {}), None, fault

    def _answer(
        self, request: web.Request, provider: str, name: str, host: str, answer: web.Response
    ) -> web.Response:
        """`answer`, checked against the operation's responses in the description."""
        try:
            _spec(provider, name).validate_response(_Request(request, b"", host), _Response(answer))
        except Exception as exc:
            self.violations.append(f"{provider} answer to {request.method} {request.path}: {exc}")
        if answer.status == 200:
            self.reads.append(request.path)
        return answer

    async def _github_repo(self, request: web.Request) -> web.StreamResponse:
        host = "https://api.github.com"
        _, refused, _ = await self._check(request, "github", GITHUB_GET, host, f"Bearer {TOKEN}")
        if refused is not None:
            return refused
        owner, repo = request.match_info["owner"], request.match_info["repo"]
        if f"{owner}/{repo}" not in self.repos:
            missing = {
                "message": "Not Found",
                "documentation_url": "https://docs.github.com/rest/repos/repos#get-a-repository",
                "status": "404",
            }
            answer = web.json_response(missing, status=404)
            return self._answer(request, "github", GITHUB_GET, host, answer)
        has_issues, archived = self.repos[f"{owner}/{repo}"]
        body = _example("github", GITHUB_GET, "", "full-repository-default-response")
        body.update(name=repo, full_name=f"{owner}/{repo}", has_issues=has_issues)
        body.update(archived=archived)
        body["owner"] = {**body["owner"], "login": owner}
        # the published example lacks `language`, which the schema requires (nullable), and
        # describes a fork; this repository is none
        body["language"] = None
        for key in ("parent", "source"):
            body.pop(key, None)
        answer = web.json_response(body)
        return self._answer(request, "github", GITHUB_GET, host, answer)

    def _jira_auth(self) -> str:
        return "Basic " + base64.b64encode(f"{JIRA_EMAIL}:{TOKEN}".encode()).decode()

    async def _jira_myself(self, request: web.Request) -> web.StreamResponse:
        host = "https://your-domain.atlassian.net"
        _, refused, _ = await self._check(request, "jira", JIRA_GET, host, self._jira_auth())
        if refused is not None:
            return refused
        body = _example("jira", JIRA_GET, "/rest/api/3/myself")
        body.update(displayName="Chatops Bot", emailAddress=JIRA_EMAIL)
        return self._answer(request, "jira", JIRA_GET, host, web.json_response(body))

    async def _jira_project(self, request: web.Request) -> web.StreamResponse:
        host = "https://your-domain.atlassian.net"
        _, refused, _ = await self._check(request, "jira", JIRA_GET, host, self._jira_auth())
        if refused is not None:
            return refused
        key = request.match_info["key"]
        if key not in self.projects:
            message = f"No project could be found with key '{key}'."
            answer = web.json_response({"errorMessages": [message], "errors": {}}, status=404)
            return self._answer(request, "jira", JIRA_GET, host, answer)
        body = _example("jira", JIRA_GET, "/rest/api/3/project/{projectIdOrKey}")
        template = body["issueTypes"][0]
        body.update(key=key, name=f"{key} project")
        # the published example writes this date-time as Jira prints them, "+0000", which
        # the schema's `format: date-time` (RFC 3339) does not accept
        body["insight"]["lastIssueUpdateTime"] = "2021-04-22T05:37:05.000+00:00"
        body["issueTypes"] = [
            {**template, "id": str(10000 + i), "name": name}
            for i, name in enumerate(self.projects[key])
        ]
        return self._answer(request, "jira", JIRA_GET, host, web.json_response(body))

    async def _github(self, request: web.Request) -> web.StreamResponse:
        body, refused, fault = await self._check(
            request,
            "github",
            "github-create-issue.extract.openapi.json",
            "https://api.github.com",
            f"Bearer {TOKEN}",
        )
        if refused is not None or body is None:
            return refused or web.Response(status=500)
        self.github.append(body)
        for text in (body["title"], body.get("body") or ""):
            self.mentions += _GITHUB_MENTION.findall(text)
        n = len(self.github)
        owner, repo = request.match_info["owner"], request.match_info["repo"]
        answer = web.json_response(
            {
                "id": 1000 + n,
                "number": n,
                "title": body["title"],
                "state": "open",
                "html_url": f"https://github.com/{owner}/{repo}/issues/{n}",
                "url": f"https://api.github.com/repos/{owner}/{repo}/issues/{n}",
            },
            status=201,
        )
        return self._maybe_drop(request, fault, answer)

    async def _jira(self, request: web.Request) -> web.StreamResponse:
        pair = base64.b64encode(f"{JIRA_EMAIL}:{TOKEN}".encode()).decode()
        body, refused, fault = await self._check(
            request,
            "jira",
            "jira-create-issue.extract.openapi.json",
            "https://your-domain.atlassian.net",
            f"Basic {pair}",
        )
        if refused is not None or body is None:
            return refused or web.Response(status=500)
        description = body.get("fields", {}).get("description")
        errors = [e.message for e in adf_validator().iter_errors(description)]
        if description is None or errors:
            self.violations.append(f"jira description is not ADF: {errors or 'missing'}")
            return web.json_response({"errorMessages": errors}, status=400)
        self.jira.append(body)
        self.mentions += _JIRA_WIKI_MENTION.findall(body["fields"].get("summary", ""))
        self.mentions += _adf_mentions(description)
        n = len(self.jira)
        key = f"{body['fields']['project']['key']}-{n}"
        answer = web.json_response(
            {"id": str(10000 + n), "key": key, "self": f"{self.url}/rest/api/3/issue/{10000 + n}"},
            status=201,
        )
        return self._maybe_drop(request, fault, answer)

    def _maybe_drop(
        self, request: web.Request, fault: str | None, answer: web.StreamResponse
    ) -> web.StreamResponse:
        if fault == "drop-after" and request.transport is not None:
            request.transport.abort()  # created, but the answer never arrives
        return answer


def _adf_mentions(node: Any) -> list[str]:
    """Mentions in an ADF document: `mention` nodes, and wiki mention markup in its text."""
    if isinstance(node, list):
        return [m for child in node for m in _adf_mentions(child)]
    if not isinstance(node, dict):
        return []
    found: list[str] = []
    if node.get("type") == "mention":
        found.append(str(node.get("attrs", {}).get("id")))
    if node.get("type") == "text":
        found += _JIRA_WIKI_MENTION.findall(str(node.get("text", "")))
    return found + _adf_mentions(node.get("content", []))
