"""Follow-ups as tickets: GitHub issues or Jira Cloud issues, on the HTTP transport.

One request per ticket, no retries here (the follow-up store decides what may be sent again).
`get_repository`, `get_project` and `get_myself` are the read-only calls `chatopsd doctor`
probes with, sent with the same address and credentials as `create`; they raise the
transport's HttpError.
`TicketError.maybe_created` is True when the request may have reached the tracker although we
got no usable answer (timeout, dropped connection): such a follow-up is not sent again on its
own. Tokens never appear in an error.

Exported text never mentions anyone: a mention in a ticket notifies people from the bot's
account (GitHub `@user` and `@org/team`, Jira's wiki `[~user]` / `[~accountid:…]`). `inert`
puts a zero-width space after the `@` or the `[`, so the text reads as typed but neither
tracker sees a mention.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

from chatopsd.httpclient import HttpError, HttpTransport

_ZWSP = "\u200b"
# "@" where GitHub starts a mention (not inside a word: "ada@example.com" is no mention);
# "[" opening Jira's wiki mention "[~name]".
_MENTION = re.compile(r"(?<!\w)@(?=[A-Za-z0-9])|\[(?=~)")


def inert(text: str) -> str:
    """The text with every mention made inert (linear: one pass, no backtracking)."""
    return _MENTION.sub(lambda m: m.group(0) + _ZWSP, text)


class TicketError(Exception):
    def __init__(self, message: str, *, maybe_created: bool = False) -> None:
        super().__init__(message)
        self.maybe_created = maybe_created


@dataclass(frozen=True, slots=True)
class Ticket:
    key: str  # "#12" on GitHub, "OPS-12" on Jira
    url: str


@dataclass(frozen=True, slots=True)
class TicketDraft:
    title: str
    paragraphs: tuple[str, ...]
    link: tuple[str, str] | None = None  # (text, url) back to the incident, when it has one
    labels: tuple[str, ...] = ()


class Tracker(Protocol):
    name: str

    async def create(self, draft: TicketDraft) -> Ticket: ...


async def _post(
    http: HttpTransport,
    url: str,
    body: dict[str, Any],
    headers: dict[str, str],
    timeout: float,
    what: str,
) -> Any:
    """One POST, no retry; failures in the tracker's words. The transport masks the token of
    `headers` (and an echo of it in the answer) in every error."""
    try:
        answer = await http.request("POST", url, json=body, headers=headers, timeout=timeout)
        if answer.status not in (200, 201):
            raise TicketError(f"HTTP {answer.status} from {what}")
        return answer.json()
    except HttpError as exc:
        if exc.kind == "status":
            detail = f": {exc.detail}" if exc.detail else ""
            raise TicketError(f"HTTP {exc.status} from {what}{detail}") from None
        if exc.kind == "malformed":
            # created (2xx), but we cannot say which ticket: treat as unconfirmed
            raise TicketError(f"{what} answered malformed JSON", maybe_created=True) from None
        raise TicketError(exc.text, maybe_created=exc.maybe_done) from None


class GitHubIssues:
    name = "GitHub"

    def __init__(
        self,
        http: HttpTransport,
        token: str,
        repo: str,
        *,
        api_url: str = "https://api.github.com",
        timeout: float = 10.0,
    ) -> None:
        self.http, self._token, self.repo = http, token, repo
        self.base, self.timeout = api_url.rstrip("/"), timeout

    def _headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self._token}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
        }

    async def get_repository(self) -> Any:
        """The repository as the token sees it (GET /repos/{owner}/{repo}): a 404 or 403
        when the token cannot see it; `has_issues` and `archived` say whether issues can be
        opened there."""
        return await self.http.get_json(
            f"{self.base}/repos/{self.repo}", headers=self._headers(), timeout=self.timeout
        )

    async def create(self, draft: TicketDraft) -> Ticket:
        text = "\n\n".join(inert(p) for p in draft.paragraphs)
        if draft.link is not None:
            text += f"\n\n[{inert(draft.link[0])}]({draft.link[1]})"
        body: dict[str, Any] = {"title": inert(draft.title), "body": text}
        if draft.labels:
            body["labels"] = list(draft.labels)
        data = await _post(
            self.http,
            f"{self.base}/repos/{self.repo}/issues",
            body,
            self._headers(),
            self.timeout,
            "GitHub",
        )
        if not isinstance(data, dict) or not isinstance(data.get("html_url"), str):
            raise TicketError("GitHub answered without the issue's URL", maybe_created=True)
        return Ticket(f"#{data.get('number')}", data["html_url"])


class JiraIssues:
    name = "Jira"

    def __init__(
        self,
        http: HttpTransport,
        token: str,
        project: str,
        *,
        site_url: str,
        email: str | None = None,
        issue_type: str = "Task",
        timeout: float = 10.0,
    ) -> None:
        self.http, self.project, self.issue_type = http, project, issue_type
        self.base, self.timeout = site_url.rstrip("/"), timeout
        # Jira Cloud: basic auth with the account's email and an API token; else a bearer token.
        if email:
            pair = base64.b64encode(f"{email}:{token}".encode()).decode()
            self._auth = f"Basic {pair}"
        else:
            self._auth = f"Bearer {token}"

    async def get_myself(self) -> Any:
        """The account the credentials belong to (GET /rest/api/3/myself): 401 when Jira
        does not accept them."""
        return await self.http.get_json(
            f"{self.base}/rest/api/3/myself", headers=self._headers(), timeout=self.timeout
        )

    async def get_project(self) -> Any:
        """The project (GET /rest/api/3/project/{key}), with its issue types: 404 when it
        does not exist or the account cannot see it."""
        return await self.http.get_json(
            f"{self.base}/rest/api/3/project/{quote(self.project, safe='')}",
            headers=self._headers(),
            timeout=self.timeout,
        )

    def _headers(self) -> dict[str, str]:
        return {"Authorization": self._auth, "Accept": "application/json"}

    async def create(self, draft: TicketDraft) -> Ticket:
        fields: dict[str, Any] = {
            "project": {"key": self.project},
            "summary": inert(draft.title)[:255],
            "issuetype": {"name": self.issue_type},
            "description": adf(draft.paragraphs, draft.link),
        }
        if draft.labels:
            # Jira labels cannot contain spaces
            fields["labels"] = [label.replace(" ", "-") for label in draft.labels]
        data = await _post(
            self.http,
            f"{self.base}/rest/api/3/issue",
            {"fields": fields},
            self._headers(),
            self.timeout,
            "Jira",
        )
        if not isinstance(data, dict) or not isinstance(data.get("key"), str):
            raise TicketError("Jira answered without the issue's key", maybe_created=True)
        return Ticket(data["key"], f"{self.base}/browse/{data['key']}")


def adf(paragraphs: Sequence[str], link: tuple[str, str] | None = None) -> dict[str, Any]:
    """An Atlassian Document Format document: one paragraph per text, then the link; the
    texts with their mentions made inert."""
    content: list[dict[str, Any]] = [
        {"type": "paragraph", "content": [{"type": "text", "text": inert(p)}]}
        for p in paragraphs
        if p
    ]
    if link is not None:
        content.append(
            {
                "type": "paragraph",
                "content": [
                    {
                        "type": "text",
                        "text": inert(link[0]),
                        "marks": [{"type": "link", "attrs": {"href": link[1]}}],
                    }
                ],
            }
        )
    return {"version": 1, "type": "doc", "content": content}
