"""The fallback card: what to do by hand when chatopsd itself is down (a bad release, an
expired token, the chat platform's outage), written to the state directory as Markdown so a
team can sync it to a wiki or print it, and printed by `chatopsd runbook` with the daemon
stopped.

It says who is on call now and next with the phone numbers from the on-call cache, the
fallback contacts, the PagerDuty, status page and bridge links, and what to do instead of each
command. The daemon writes it after a refresh whenever what it says changed (an on-call
change), and at least once a day so its date shows it is current; `render` is pure.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from chatopsd.core.times import Times
from chatopsd.features.oncall.handoff_rules import label
from chatopsd.features.oncall.shift_rules import Shift, primary
from chatopsd.features.paging.api import OnCall, Person

if TYPE_CHECKING:
    from chatopsd.config import Config, PagerDutySection

log = logging.getLogger("chatopsd.oncall")

TITLE = "# chatopsd fallback card"
WRITTEN = "Written "  # the one line that changes every time; the rest is compared
EVERY = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class OpsCommand:
    """A `[[commands]]` entry as the card shows it: what to run by hand, and who approves."""

    name: str
    argv: str
    approval: str


@dataclass(frozen=True, slots=True)
class Setting:
    """What the card says that comes from the config, not from PagerDuty."""

    pagerduty_url: str  # PagerDuty's web app
    service_id: str  # the service `!ic page` opens incidents on
    ic_schedules: tuple[str, ...]
    fallback: tuple[tuple[str, str], ...] = ()  # (name, phone)
    status_page: str | None = None  # where the public status page is edited
    bridge: str | None = None  # incidents.bridge_url, with its placeholder shown
    sources: tuple[str, ...] = ()  # the monitoring `!status` reads (names and kinds)
    ops: tuple[OpsCommand, ...] = ()
    demo: bool = False


@dataclass(frozen=True, slots=True)
class Facts:
    """What the card is rendered from: the on-call cache and the coming shifts."""

    now: datetime
    on_call: tuple[OnCall, ...]
    people: dict[str, Person]
    as_of: datetime | None
    failing_since: datetime | None = None
    error: str | None = None
    shifts: tuple[Shift, ...] = field(default=())


def render(facts: Facts, setting: Setting, times: Times) -> str:
    when = _when(times)
    lines = [TITLE, "", f"{WRITTEN}{when(facts.now)} by chatopsd."]
    if setting.demo:
        lines.append("DEMO: made-up people and numbers (nothing real is configured).")
    lines += [
        "Use it when chatopsd does not answer: call, page and publish by hand, as below.",
        "",
        "## On call now",
        "",
    ]
    if facts.as_of is None:
        lines.append("The on-call cache is empty: PagerDuty was never read. Call the fallback")
        lines.append("contacts below, and look in PagerDuty's app.")
    else:
        stale = ""
        if facts.failing_since is not None:
            stale = f"; PagerDuty unreachable since {when(facts.failing_since)}"
            if facts.error:
                stale += f" ({facts.error})"
        lines.append(f"From the on-call cache as of {when(facts.as_of)}{stale}.")
        lines += ["", "| who | on call as | until | phone | email |", "|---|---|---|---|---|"]
        seen: set[tuple[str, str]] = set()
        for entry in facts.on_call:
            key = (entry.person.id, entry.schedule_id)
            if key in seen:
                continue
            seen.add(key)
            person = entry.person
            lines.append(
                _row(
                    person.name,
                    label(entry.schedule_name, entry.role),
                    when(entry.until) if entry.until else "",
                    ", ".join(person.phones) or "no number in the cache",
                    person.email,
                )
            )
    lines += ["", "## On call next", ""]
    coming = _next(facts)
    if not coming:
        lines.append("No coming shifts are known (see PagerDuty's schedules).")
    else:
        lines += ["| who | on call as | from | until | phone |", "|---|---|---|---|---|"]
        for shift in coming:
            cached = facts.people.get(shift.person_id)
            phones = ", ".join(cached.phones) if cached and cached.phones else "see PagerDuty"
            lines.append(
                _row(
                    shift.person_name,
                    shift.label,
                    when(shift.start),
                    when(shift.end),
                    phones,
                )
            )
    lines += ["", "## Fallback contacts", ""]
    if setting.fallback:
        lines += [f"- {_cell(name)}: {_cell(phone)}" for name, phone in setting.fallback]
    else:
        lines.append("None configured (pagerduty.fallback_contacts).")
    lines += ["", "## Links", "", f"- PagerDuty: {setting.pagerduty_url} (and its mobile app)"]
    if setting.status_page:
        lines.append(f"- Status page (edit): {setting.status_page}")
    if setting.bridge:
        lines.append(f"- Incident bridge: {setting.bridge}")
    lines += ["", "## Instead of the commands", ""]
    lines += _equivalents(setting)
    return "\n".join(lines) + "\n"


def _equivalents(setting: Setting) -> list[str]:
    schedules = ", ".join(setting.ic_schedules)
    rows = [
        ("`!ic`, `!ic who`, `!ic next`", "this card; PagerDuty → People → On-Call Schedules"),
        (
            "`!ic page`",
            f"PagerDuty app or web: new incident on service {setting.service_id}, assigned "
            "to the IC on call; or call them (numbers above)",
        ),
        ("`!pd ack`, `!pd resolve`", "PagerDuty app: the incident → Acknowledge / Resolve"),
        (
            "`!ic take`, `!ic swap`",
            f"PagerDuty → the schedule ({schedules}) → Schedule an Override",
        ),
        (
            "`!incident declare`",
            "post in the incidents channel, open the bridge, keep a timeline by hand "
            "(declare it in chatopsd once it is back, with the times)",
        ),
        (
            "`!incident publish`, `update --public`",
            "the status page's own web UI" if setting.status_page else "no status page set",
        ),
        (
            "`!status`",
            "the monitoring UIs: " + ", ".join(setting.sources)
            if setting.sources
            else "the monitoring UIs",
        ),
    ]
    for op in setting.ops:
        by_hand = f"on the host: `{op.argv}`, after {op.approval}; note it for the audit"
        rows.append((f"`!{op.name}`", by_hand))
    out = ["| in chat | by hand |", "|---|---|"]
    out += [f"| {chat} | {_cell(hand)} |" for chat, hand in rows]
    out += [
        "",
        "The audit trail continues in the incident's timeline by hand: who did what, when.",
        "Add it to the incident (`!incident update`) when chatopsd is back.",
    ]
    return out


def _next(facts: Facts) -> list[Shift]:
    """The next shift of each schedule's first role."""
    found: list[Shift] = []
    for schedule_id in dict.fromkeys(s.schedule_id for s in facts.shifts):
        coming = [s for s in primary(facts.shifts, schedule_id) if s.start > facts.now]
        if coming:
            first = coming[0].start
            found += [s for s in coming if s.start == first]
    return sorted(found, key=lambda s: (s.start, s.label))


def _when(times: Times) -> Callable[[datetime], str]:
    def at(moment: datetime) -> str:
        return times.local(moment).strftime("%a %d %b %H:%M %Z")

    return at


def _row(*cells: str) -> str:
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def _cell(text: str) -> str:
    """Text from PagerDuty or the config in a Markdown table: no pipe or line break of its
    own may change the table."""
    return " ".join(text.replace("|", "\\|").split())


def body(card: str) -> str:
    """The card without its "Written …" line: what changes when what it says changes."""
    return "\n".join(ln for ln in card.splitlines() if not ln.startswith(WRITTEN))


class CardWriter:
    """Writes the card when what it says changed, or when the last one is a day old. The
    file is replaced whole (a reader never sees half a card), mode 0640."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def due(self, card: str, now: datetime) -> bool:
        try:
            old = self.path.read_text(encoding="utf-8")
            age = now.timestamp() - self.path.stat().st_mtime
        except OSError:
            return True
        return body(old) != body(card) or age >= EVERY.total_seconds()

    def write(self, card: str, now: datetime) -> bool:
        """True if it wrote; a failure is logged and raised (the job counts it)."""
        if not self.due(card, now):
            return False
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        try:
            os.fchmod(fd, 0o640)  # whatever the umask
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(card)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        log.info("fallback card written to %s", self.path)
        return True


def setting(config: Config, pd: PagerDutySection, pagerduty_url: str) -> Setting:
    """The card's settings from the config (and the demo's, in the demo)."""
    import shlex

    from chatopsd.features.ops.api import configured

    commands, rules = configured(config)
    ops = []
    for cmd in commands:
        mine = [r for r in rules if r.command == cmd.name]
        if mine:
            approval = "; ".join(
                (", ".join(f"{k}={v}" for k, v in r.when.items()) or "always")
                + f": {r.count} approval(s) by the {r.role} role"
                for r in mine
            )
        elif cmd.destructive:
            approval = "the requester confirming (it is destructive)"
        else:
            approval = "the same checks as in chat (no approval rule)"
        ops.append(OpsCommand(cmd.name, shlex.join(cmd.run), f"the approval rule ({approval})"))
    sp = config.statuspage
    status_page = None
    if sp is not None:
        status_page = f"https://manage.statuspage.io/pages/{sp.page_id}"
    elif config.demo:
        status_page = "https://status.demo.invalid (demo)"
    bridge = config.incidents.bridge_url
    sources = [f"{s.name} ({s.kind})" for s in config.status.sources]
    if config.demo:
        sources = ["demo (demo)"]
    return Setting(
        pagerduty_url=pagerduty_url,
        service_id=pd.service_id,
        ic_schedules=tuple(pd.ic_schedules),
        fallback=tuple((c.name, c.phone) for c in pd.fallback_contacts),
        status_page=status_page,
        bridge=bridge.replace("{incident_id}", "<incident id>") if bridge else None,
        sources=tuple(sources),
        ops=tuple(ops),
        demo=config.demo,
    )
