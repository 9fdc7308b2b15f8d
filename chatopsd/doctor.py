"""`chatopsd doctor`: probe every configured part live and say, one line each, what to fix.

Every probe is a plain read-only request against the documented endpoint (no messages are sent,
nothing is paged), runs with a timeout, and turns any failure into a line, never a traceback.
Tokens are never printed: lines name the key and the credential file, not the value.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import ssl
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from chatopsd import config as config_mod
from chatopsd import locations, redact
from chatopsd.config import (
    CommandSource,
    Config,
    MattermostSection,
    PagerDutySection,
    StatusSourceConfig,
)
from chatopsd.core.errors import ConfigError
from chatopsd.core.ports import SystemClock
from chatopsd.httpclient import HttpError, HttpTransport
from chatopsd.platforms import configured
from chatopsd.store.backend import open_readonly

# What the Slack connector needs: post, see mentions, see prefixed commands in channels.
SLACK_SCOPES = ("chat:write", "app_mentions:read", "channels:history")
# Discord application flags: the message content intent, approved (large bot) or limited.
DISCORD_MESSAGE_CONTENT = (1 << 18) | (1 << 19)
TIMEOUT = 10.0


@dataclass(frozen=True)
class Result:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'✓' if self.ok else '✗'} {self.name}: {self.detail}"


def _token_hint(section: str, key: str) -> str:
    return (
        f"set {section}.{key} (credential {section}_{key}, "
        f"env CHATOPSD_{section.upper()}_{key.upper()}, or the config file)"
    )


_STATUS_WORDS = {
    401: "HTTP 401: the token is not accepted",
    403: "HTTP 403: the token lacks permission",
    404: "HTTP 404: not found",
    429: "HTTP 429: rate limited, try again in a minute",
}


def _why(exc: BaseException) -> str:
    """A failure as the operator needs it: no token, no traceback."""
    from chatopsd.features.pagerduty.client import PagerDutyError
    from chatopsd.features.status.sources.http import MissingField

    if isinstance(exc, TimeoutError):
        return "no answer in time (timeout)"
    if isinstance(exc, HttpError):
        if exc.kind == "timeout":
            return "no answer in time (timeout)"
        if exc.kind == "malformed":
            return "the answer is not JSON"
        if exc.kind == "unreachable":
            return exc.detail or exc.text
        status = exc.status or 0
        return _STATUS_WORDS.get(status, f"HTTP {status}")
    if isinstance(exc, PagerDutyError):
        # the client's words name what to fix in chat; here the status says it per line
        return _STATUS_WORDS.get(exc.status or 0, exc.message)
    if isinstance(exc, MissingField):
        return f"field {exc.field!r} is not in the answer"
    return f"{type(exc).__name__}: {exc}"


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


async def check_slack(cfg: Config, http: HttpTransport) -> list[Result]:
    from slack_sdk.errors import SlackApiError
    from slack_sdk.web.async_client import AsyncWebClient

    assert cfg.slack is not None
    base = cfg.slack.api_url if cfg.slack.api_url.endswith("/") else cfg.slack.api_url + "/"
    out: list[Result] = []
    bot = AsyncWebClient(
        token=cfg.slack.bot_token.get_secret_value(), base_url=base, timeout=int(TIMEOUT)
    )
    try:
        auth = await bot.auth_test()
        scopes = set(filter(None, auth.headers.get("x-oauth-scopes", "").split(",")))
        scopes = {s.strip() for s in scopes}
        missing = [s for s in SLACK_SCOPES if s not in scopes]
        who = f"@{auth.get('user')} in {auth.get('team')}"
        if missing:
            out.append(
                Result(
                    "slack bot token",
                    False,
                    f"{who}, but missing scopes "
                    f"{', '.join(missing)}: add them under OAuth & Permissions and "
                    "reinstall the app",
                )
            )
        else:
            out.append(Result("slack bot token", True, f"{who}, scopes ok"))
    except SlackApiError as exc:
        out.append(
            Result(
                "slack bot token",
                False,
                f"{exc.response.get('error')}: {_token_hint('slack', 'bot_token')}",
            )
        )
    except Exception as exc:
        out.append(Result("slack bot token", False, f"{base}: {_why(exc)}"))
    # apps.connections.open takes the app-level token (xapp-), not the bot token.
    app_token = cfg.slack.app_token.get_secret_value()
    app = AsyncWebClient(token=app_token, base_url=base, timeout=int(TIMEOUT))
    try:
        await app.apps_connections_open(app_token=app_token)
        out.append(Result("slack socket mode", True, "app token opens a Socket Mode connection"))
    except SlackApiError as exc:
        error = exc.response.get("error")
        fix = (
            "enable Socket Mode in the app settings"
            if error in ("not_allowed_token_type", "not_authed", "socket_mode_not_enabled")
            else "an app-level token with connections:write is needed"
        )
        out.append(
            Result(
                "slack socket mode", False, f"{error}: {fix}; {_token_hint('slack', 'app_token')}"
            )
        )
    except Exception as exc:
        out.append(Result("slack socket mode", False, f"{base}: {_why(exc)}"))
    return out


async def check_discord(cfg: Config, http: HttpTransport) -> list[Result]:
    assert cfg.discord is not None
    api = cfg.discord.api_url.rstrip("/")
    headers = {"Authorization": f"Bot {cfg.discord.token.get_secret_value()}"}
    try:
        me = await http.get_json(f"{api}/users/@me", headers=headers)
    except Exception as exc:
        if isinstance(exc, HttpError) and exc.status in (401, 403):
            why = f"{_why(exc)}; {_token_hint('discord', 'token')}"
        else:
            # Not an answer about the token: the network, a proxy or discord.api_url is at fault.
            why = f"{api}: {_why(exc)} (the token could not be checked: check the network)"
        return [Result("discord token", False, why)]
    out = [Result("discord token", True, f"logged in as {me.get('username', '?')}")]
    try:
        app = await http.get_json(f"{api}/oauth2/applications/@me", headers=headers)
        flags = int(app.get("flags") or 0)
    except Exception as exc:
        out.append(Result("discord intents", False, f"cannot read the application: {_why(exc)}"))
        return out
    if flags & DISCORD_MESSAGE_CONTENT:
        out.append(Result("discord intents", True, "message content intent enabled"))
    else:
        out.append(
            Result(
                "discord intents",
                False,
                "message content intent is off: enable it "
                "under Bot → Privileged Gateway Intents (else only mentions work)",
            )
        )
    return out


def _mattermost_tls(section: MattermostSection) -> ssl.SSLContext | bool:
    if not section.verify_tls:
        return False
    ctx = ssl.create_default_context()
    if section.ca_file is not None:
        ctx.load_verify_locations(cafile=str(section.ca_file))
    return ctx


async def check_mattermost(cfg: Config, http: HttpTransport) -> list[Result]:
    section = cfg.mattermost
    assert section is not None
    base = section.url.rstrip("/")
    out: list[Result] = []
    if base.startswith("https://"):
        if section.verify_tls:
            out.append(Result("mattermost TLS", True, "https with certificate verification"))
        else:
            out.append(
                Result(
                    "mattermost TLS",
                    False,
                    "verify_tls = false: set "
                    "mattermost.ca_file to your CA instead of turning checks off",
                )
            )
    elif base.startswith("http://"):
        out.append(
            Result(
                "mattermost TLS",
                False,
                "url is http://: the token crosses the network in clear; use https://",
            )
        )
    else:
        return [Result("mattermost url", False, f"{base!r} is not an http(s) URL")]
    try:
        ctx = _mattermost_tls(section)
    except (OSError, ssl.SSLError) as exc:
        out.append(Result("mattermost token", False, f"cannot load ca_file: {exc}"))
        return out
    headers = {"Authorization": f"Bearer {section.token.get_secret_value()}"}
    try:
        me = await http.get_json(f"{base}/api/v4/users/me", headers=headers, ssl=ctx)
    except Exception as exc:
        answered = isinstance(exc, HttpError) and exc.kind == "status"
        hint = f"; {_token_hint('mattermost', 'token')}" if answered else ""
        out.append(Result("mattermost token", False, f"{base}: {_why(exc)}{hint}"))
        return out
    out.append(Result("mattermost token", True, f"{base}: logged in as {me.get('username')}"))
    return out


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
        hint = f"; {_token_hint('pagerduty', 'api_token')}" if answered else ""
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


Probe = Callable[[Config, HttpTransport], Awaitable[list[Result]]]


async def run_checks(
    cfg: Config, timeout_seconds: float = TIMEOUT, env: Mapping[str, str] | None = None
) -> list[Result]:
    probes: list[Probe] = [platform.probe for platform, _section in configured(cfg)]
    if cfg.pagerduty is not None:
        probes.append(check_pagerduty)
    if cfg.status.sources:
        probes.append(check_status_sources)
    # one attempt per probe: doctor says what it finds now, it does not wait out an outage
    http = HttpTransport(SystemClock(), secrets=config_mod.secrets_of(cfg), timeout=timeout_seconds)
    try:
        groups = await asyncio.gather(check_state_db(cfg, env), *(p(cfg, http) for p in probes))
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
    results = [Result("config", True, f"{path or 'defaults'} is valid")]
    results += asyncio.run(run_checks(cfg, timeout_seconds, env))
    secrets = config_mod.secrets_of(cfg)
    for r in results:
        # tokens (a server could echo one back), URL credentials and query values
        print(redact.text(r.line(), secrets), file=out)
    failed = [r for r in results if not r.ok]
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed", file=out)
    return 1 if failed else 0
