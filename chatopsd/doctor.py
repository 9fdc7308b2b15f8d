"""`chatopsd doctor`: probe every configured part live and say, one line each, what to fix.

Every probe is a plain read-only request against the documented endpoint (no messages are sent,
nothing is paged), runs with a timeout, and turns any failure into a line, never a traceback.
Tokens are never printed: lines name the key and the credential file, not the value.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TextIO

from chatopsd import config as config_mod
from chatopsd import locations, redact
from chatopsd.checks import STATUS_WORDS, TIMEOUT, Result, token_hint, why
from chatopsd.config import (
    CommandSource,
    Config,
    PagerDutySection,
    StatusSourceConfig,
)
from chatopsd.core.capabilities import (
    CHANNEL_INVITES,
    CHANNEL_TOPICS,
    DIRECT_MESSAGES,
    INCIDENT_CHANNELS,
    MESSAGE_PINS,
    POSTED_ANSWERS,
    THREADS,
    USER_GROUPS,
    USER_PROFILES,
    Capability,
)
from chatopsd.core.errors import ConfigError
from chatopsd.core.ports import SystemClock
from chatopsd.httpclient import HttpError, HttpTransport
from chatopsd.store.backend import open_readonly


def _why(exc: BaseException) -> str:
    """A failure as the operator needs it (checks.why), with the PagerDuty client's and the
    status sources' own errors."""
    from chatopsd.features.pagerduty.client import PagerDutyError
    from chatopsd.features.status.sources.http import MissingField

    if isinstance(exc, PagerDutyError):
        # the client's words name what to fix in chat; here the status says it per line
        return STATUS_WORDS.get(exc.status or 0, exc.message)
    if isinstance(exc, MissingField):
        return f"field {exc.field!r} is not in the answer"
    return why(exc)


async def check_state_db(cfg: Config, env: Mapping[str, str] | None = None) -> list[Result]:
    """The service's database, found as `ctl` finds its socket (locations.py), opened
    read-only: doctor never creates, migrates or writes a database, so a wrong path is
    reported instead of leaving a stray empty file that `audit` would then read."""
    if cfg.chatopsd.database:
        return await _check_postgresql(cfg.chatopsd.database)
    found = locations.locate(cfg, env, client=True)
    path, name = found.state_db, "state database"
    where = f"{path} (from {found.db_source})"
    if not path.is_file():
        return [
            Result(
                name,
                False,
                f"{where} does not exist: not the service's database, or the service has not "
                "started yet (it creates it at its first start). doctor creates none: give "
                "--config with chatopsd.state_db, or run it where the daemon runs",
            )
        ]
    try:
        db = await open_readonly(None, path)
    except Exception as exc:
        return [Result(name, False, f"{where}: cannot read it ({_why(exc)})")]
    await db.close()
    return [Result(name, True, f"{where}: readable, schema current")]


async def _check_postgresql(url: str) -> list[Result]:
    """chatopsd.database: connect (password from the credential or PGPASSWORD) read-only and
    check the schema; never migrates or writes, never prints the password."""
    from chatopsd.store.postgres import redact

    name, where = "state database", redact(url)
    try:
        db = await open_readonly(url, Path("unused"))
    except ConnectionError as exc:
        return [
            Result(
                name,
                False,
                f"{where}: cannot connect ({_why(exc)}); check the URL, sslmode, and the "
                "password in the credential chatopsd_database_password or PGPASSWORD",
            )
        ]
    except Exception as exc:
        return [Result(name, False, f"{where}: cannot read it ({_why(exc)})")]
    await db.close()
    return [Result(name, True, f"{where}: reachable, schema current (PostgreSQL)")]


async def check_pagerduty(cfg: Config, http: HttpTransport) -> list[Result]:
    """The PagerDuty client's own calls: the user search `!ic who` uses, then the configured
    service and schedules."""
    from chatopsd.features.pagerduty.client import PagerDutyClient, PagerDutyError

    pd: PagerDutySection | None = cfg.pagerduty
    assert pd is not None
    api = pd.api_url.rstrip("/")
    client = PagerDutyClient(
        http, api, pd.api_token.get_secret_value(), request_timeout=http.timeout, max_attempts=1
    )
    try:
        users = await client.search_users(pd.from_email, deadline=http.timeout)
    except Exception as exc:
        answered = isinstance(exc, PagerDutyError) and exc.status is not None
        hint = f"; {token_hint('pagerduty', 'api_token')}" if answered else ""
        return [Result("pagerduty token", False, f"{api}: {_why(exc)}{hint}")]
    out = [Result("pagerduty token", True, f"{api} accepts the token")]
    emails = {str(u.get("email", "")).lower() for u in users}
    if pd.from_email.lower() in emails:
        out.append(Result("pagerduty from_email", True, f"{pd.from_email} is a user"))
    else:
        out.append(
            Result(
                "pagerduty from_email",
                False,
                f"{pd.from_email} is not a PagerDuty "
                "user: set pagerduty.from_email to a real user's login email",
            )
        )

    async def exists(
        read: Callable[[str], Awaitable[dict[str, Any]]], key: str, ident: str
    ) -> Result:
        try:
            found = await read(ident)
            return Result(f"pagerduty {key}", True, f"{ident} ({found.get('name', '?')})")
        except Exception as exc:
            return Result(f"pagerduty {key}", False, f"{ident}: {_why(exc)}; check pagerduty.{key}")

    probes = [exists(client.service, "service_id", pd.service_id)]
    probes += [exists(client.schedule, "ic_schedules", s) for s in pd.ic_schedules]
    probes += [exists(client.schedule, "responder_schedules", s) for s in pd.responder_schedules]
    out += await asyncio.gather(*probes)
    return out


async def check_status_sources(cfg: Config, http: HttpTransport) -> list[Result]:
    """Each source read as the daemon reads it (its own request and parsing), within the
    doctor's timeout; commands are run and their exit status checked against exit_map."""
    from chatopsd.features.status import sources
    from chatopsd.features.status.sources.alertmanager import AlertmanagerStatus
    from chatopsd.features.status.sources.http import HttpStatus
    from chatopsd.features.status.sources.prometheus import PrometheusStatus

    async def one(src: StatusSourceConfig) -> Result:
        name = f"status source {src.name}"
        if isinstance(src, CommandSource):
            return await _probe_command(name, src)
        limited = src.model_copy(update={"timeout_seconds": min(src.timeout_seconds, http.timeout)})
        [reader] = sources.build([limited], http)
        assert isinstance(reader, AlertmanagerStatus | PrometheusStatus | HttpStatus)
        try:
            reading = await reader.fetch()
        except Exception as exc:
            return Result(name, False, f"{getattr(src, 'url', '')}: {_why(exc)}")
        alerts = f", {len(reading.alerts)} alerts" if reading.alerts else ""
        return Result(name, True, f"{src.kind} answers: {reading.verdict.value}{alerts}")

    return list(await asyncio.gather(*(one(s) for s in cfg.status.sources)))


async def _probe_command(name: str, src: CommandSource) -> Result:
    exe = shutil.which(src.argv[0])
    if exe is None:
        return Result(name, False, f"{src.argv[0]}: not found or not executable")
    proc = await asyncio.create_subprocess_exec(
        exe,
        *src.argv[1:],
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        code = await asyncio.wait_for(proc.wait(), src.timeout_seconds)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return Result(name, False, f"no exit within {src.timeout_seconds} s")
    if str(code) not in src.exit_map:
        return Result(name, False, f"exit status {code} is not in exit_map")
    return Result(name, True, f"exit {code} = {src.exit_map[str(code)]}")


_PER_PAGE, _MAX_PAGES = 100, 20


async def check_statuspage(cfg: Config, http: HttpTransport) -> list[Result]:
    """[statuspage]: the key and the page, read-only (GET /pages/{page_id}/components, which
    the key must be allowed to read), and each component id of `statuspage.components` among
    the page's components: a wrong id is refused by Statuspage only when an incident is
    published, in the middle of one."""
    sp = cfg.statuspage
    assert sp is not None
    api = sp.api_url.rstrip("/")
    headers = {"Authorization": f"OAuth {sp.api_key.get_secret_value()}"}
    found: list[Any] = []
    try:
        # paginated, at most 100 a page: read on while pages come back full
        for page in range(1, _MAX_PAGES + 1):
            batch = await http.get_json(
                f"{api}/pages/{sp.page_id}/components",
                params={"page": str(page), "per_page": str(_PER_PAGE)},
                headers=headers,
            )
            if not isinstance(batch, list):
                return [Result("statuspage", False, f"{api}: the answer is not a list")]
            found += batch
            if len(batch) < _PER_PAGE:
                break
    except HttpError as exc:
        hint = ""
        if exc.status in (401, 403):
            hint = f"; {token_hint('statuspage', 'api_key')}"
        elif exc.status == 404:
            hint = "; check statuspage.page_id"
        return [Result("statuspage", False, f"{api}: {_why(exc)}{hint}")]
    ids = {str(c.get("id")) for c in found if isinstance(c, dict)}
    out = [Result("statuspage", True, f"page {sp.page_id} accepts the key ({len(ids)} components)")]
    unknown = sorted(
        f"{service} = {cid}" for service, cid in sp.components.items() if cid not in ids
    )
    if sp.components:
        out.append(
            Result(
                "statuspage components",
                not unknown,
                f"not on page {sp.page_id}: {', '.join(unknown)}; check statuspage.components"
                if unknown
                else f"all {len(sp.components)} are on the page",
            )
        )
    return out


def _refused(exc: BaseException, fix: str) -> str:
    """A refused tracker call, with the key to fix: the token for 401, `fix` otherwise."""
    if isinstance(exc, HttpError) and exc.status == 401:
        return f"{_why(exc)}; {token_hint('tickets', 'token')}"
    if isinstance(exc, HttpError) and exc.status in (403, 404):
        return f"{_why(exc)}; {fix}"
    return _why(exc)


async def check_tickets(cfg: Config, http: HttpTransport) -> list[Result]:
    """[tickets], read-only and with the daemon's own tracker client (its address and
    credentials): on GitHub the repository as the token sees it, issues enabled and not
    archived; on Jira the account the credentials belong to, then the project and whether
    `tickets.issue_type` is one of its issue types. Whether the token may write is not
    checked: that would take creating an issue."""
    from chatopsd.features.followups.trackers import GitHubIssues, JiraIssues

    t = cfg.tickets
    assert t is not None
    token, timeout = t.token.get_secret_value(), min(t.timeout_seconds, http.timeout)
    if t.kind == "github":
        api = (t.url or "https://api.github.com").rstrip("/")
        github = GitHubIssues(http, token, t.project, api_url=api, timeout=timeout)
        try:
            repo = await github.get_repository()
        except Exception as exc:
            fix = (
                f"check tickets.project ({t.project}) and that tickets.token can see it "
                "(a fine-grained token must list the repository)"
            )
            if isinstance(exc, HttpError) and exc.status == 403:
                fix = (
                    f"tickets.token may not read {t.project}: authorise it for the "
                    "organisation's SAML SSO, or check its IP allow list and rate limit"
                )
            return [Result("tickets", False, f"{api}: {_refused(exc, fix)}")]
        if not isinstance(repo, dict) or not isinstance(repo.get("has_issues"), bool):
            return [Result("tickets", False, f"{api}: field 'has_issues' is not in the answer")]
        move = "set tickets.project to another repository"
        if not repo["has_issues"]:
            why = f"{t.project} has issues turned off: turn them on in its settings, or {move}"
            return [Result("tickets", False, why)]
        if repo.get("archived") is True:
            why = f"{t.project} is archived (read-only), no issue can be opened: {move}"
            return [Result("tickets", False, why)]
        return [Result("tickets", True, f"{t.project}: the token can see it, issues are on")]
    assert t.url is not None  # the config requires it for jira
    site = t.url.rstrip("/")
    jira = JiraIssues(
        http,
        token,
        t.project,
        site_url=site,
        email=t.email,
        issue_type=t.issue_type,
        timeout=timeout,
    )
    try:
        me = await jira.get_myself()
    except Exception as exc:
        account = (
            "check tickets.email, the account the API token belongs to"
            if t.email
            else "tickets.email is not set: a Jira Cloud API token needs its account's email"
        )
        fix = "the account of tickets.email has no access to Jira on this site"
        line = _refused(exc, fix)
        if isinstance(exc, HttpError) and exc.status == 401:
            line += f"; {account}"
        return [Result("tickets token", False, f"{site}: {line}")]
    who = me.get("displayName") if isinstance(me, dict) else None
    if not isinstance(who, str):
        return [Result("tickets token", False, f"{site}: field 'displayName' is not in the answer")]
    out = [Result("tickets token", True, f"{site} accepts the credentials (account {who})")]
    try:
        project = await jira.get_project()
    except Exception as exc:
        fix = f"check tickets.project ({t.project}), a project key the account can see"
        out.append(Result("tickets project", False, f"{t.project}: {_refused(exc, fix)}"))
        return out
    types = project.get("issueTypes") if isinstance(project, dict) else None
    if not isinstance(types, list):
        why = f"{t.project}: field 'issueTypes' is not in the answer"
        out.append(Result("tickets project", False, why))
        return out
    names = sorted({str(i.get("name")) for i in types if isinstance(i, dict)})
    if t.issue_type not in names:
        why = (
            f"{t.project} has no issue type {t.issue_type!r}: set tickets.issue_type to one "
            f"of {', '.join(names) or '(none)'}"
        )
        out.append(Result("tickets project", False, why))
        return out
    name = project.get("name", "?")
    out.append(Result("tickets project", True, f"{t.project} ({name}), issue type {t.issue_type}"))
    return out


Probe = Callable[[Config, HttpTransport], Awaitable[list[Result]]]


def capabilities_used(cfg: Config) -> frozenset[Capability[Any]]:
    """The platform capabilities this config's features call on, so each platform's probe
    can say which permissions they need that its token lacks (features/*: where each
    capability is asked for)."""
    used: set[Capability[Any]] = {THREADS, USER_PROFILES}  # replies, who is who
    if cfg.chatopsd.database:
        used.add(POSTED_ANSWERS)  # a take-over asks whether the dead instance answered
    if cfg.incidents.create_channels:
        used |= {INCIDENT_CHANNELS, CHANNEL_INVITES, MESSAGE_PINS}  # its status message
    if cfg.incidents.bridge_url:
        used.add(MESSAGE_PINS)
    pd = cfg.pagerduty
    if pd is not None:
        used.add(DIRECT_MESSAGES)  # `!pd link`'s code, shift reminders
        if pd.topic_channels:
            used.add(CHANNEL_TOPICS)
        if pd.slack_usergroups:
            used.add(USER_GROUPS)
    return frozenset(used)


async def run_checks(
    cfg: Config, timeout_seconds: float = TIMEOUT, env: Mapping[str, str] | None = None
) -> list[Result]:
    probes: list[Probe] = []
    if cfg.pagerduty is not None:
        probes.append(check_pagerduty)
    if cfg.status.sources:
        probes.append(check_status_sources)
    if cfg.statuspage is not None:
        probes.append(check_statuspage)
    if cfg.tickets is not None:
        probes.append(check_tickets)
    # one attempt per probe: doctor says what it finds now, it does not wait out an outage
    http = HttpTransport(SystemClock(), secrets=config_mod.secrets_of(cfg), timeout=timeout_seconds)
    try:
        # each configured platform's own probe (its package's), with its section
        uses = capabilities_used(cfg)
        platforms = [p.probe(section, http, uses) for p, section in cfg.configured_platforms()]
        groups = await asyncio.gather(
            check_state_db(cfg, env), *platforms, *(p(cfg, http) for p in probes)
        )
    finally:
        await http.close()
    return [r for group in groups for r in group]


def main(
    path: Path | None,
    out: TextIO | None = None,
    env: dict[str, str] | None = None,
    timeout_seconds: float = TIMEOUT,
) -> int:
    """Print one line per check; 0 only if every check passed (2 for an unreadable config)."""
    out = out or sys.stdout
    env = dict(os.environ) if env is None else env
    try:
        cfg = config_mod.load(path, env=env)
    except ConfigError as exc:
        print(f"✗ config: {exc}", file=out)
        return 2
    # The config check is a result like the others: the summary counts every ✓ and ✗ line.
    unreachable = cfg.unreachable()
    results = [
        Result("config", False, unreachable)
        if unreachable is not None
        else Result("config", True, f"{path or 'defaults'} is valid")
    ]
    results += asyncio.run(run_checks(cfg, timeout_seconds, env))
    secrets = config_mod.secrets_of(cfg)
    for r in results:
        # tokens (a server could echo one back), URL credentials and query values
        print(redact.text(r.line(), secrets), file=out)
    failed = [r for r in results if not r.ok]
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed", file=out)
    return 1 if failed else 0
