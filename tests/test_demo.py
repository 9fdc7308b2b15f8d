"""The demo: a console-only daemon with nothing real configured (Config.demo) answers every
command the README and docs/ document, from the in-process demo PagerDuty, status source,
status page, ticket tracker and `!deploy`; anything real configured, and no demo data shows.

The daemon runs as a user runs it (a subprocess, its console speaking jsonl on a pipe); each
command's outcome is read back from its audit trail (`chatopsd audit --json`).
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from chatopsd.config import Config
from chatopsd.features.pagerduty import demo
from tests import daemon_helpers
from tests.conftest import make_config
from tests.daemon_helpers import ROOT

# Every command the demo has, with arguments a person would type, in an order that gives each
# one something to act on. `{name}` is filled from an earlier answer (see IDS). `actor`: who
# types it (the console's own user when None).
SCRIPT: list[tuple[str, str | None]] = [
    ("!help", None),
    ("!help ic page", None),
    ("!ic", None),
    ("!ic responders", None),
    ("!ic who grace", None),
    ("!ic service payments", None),
    ("!ic next", None),
    ("!ic schedule", None),
    ("!ic take 1h", None),
    ("!ic handback", None),
    ("!ic page the checkout is down", None),
    ("!ic page again the checkout is still down", None),
    ("!ic page responders", None),
    ("!ic swap {ada_shift} 1h dentist", "ada"),
    ("!ic swap take {swap}", "grace"),
    ("!pd whoami", None),
    ("!pd incidents", None),
    ("!pd incidents --all", None),
    ("!pd ack 1", None),
    ("!pd note 1 looking at the load balancer", None),
    ("!pd snooze 1 30m", None),
    ("!pd reassign 1 grace@example.com", None),
    ("!pd escalate 1", None),
    ("!pd resolve 1 restarted the pool", None),
    ("!pd link barbara@example.com", "barbara"),
    ("!approvals", None),
    ("!approve {link}", None),
    ("!pd whoami", "barbara"),
    ("!pd unlink", "barbara"),
    ("!pd link allow 1", None),
    ("!status", None),
    ("!status stalk", None),
    ("!status stalkers", None),
    ("!status unstalk", None),
    ('!incident declare --sev 2 "Payments failing" --service payments', None),
    ("!incident", None),
    ("!incident list", None),
    ("!incident status", None),
    ("!incident ack looking into it", None),
    ("!incident commander grace", None),
    ("!incident comms ada", None),
    ("!incident scribe alan", None),
    ("!incident assign edsger", None),
    ("!incident join", "barbara"),
    ("!incident pin the error rate fell after the restart", None),
    ("!incident publish", None),
    ("!incident identified the connection pool is exhausted", None),
    ('!incident update pool raised --public "A fix is being rolled out."', None),
    ("!incident monitor", None),
    ("!incident escalate", None),
    ("!incident escalate --page team:Payments", None),
    ("!incident page grace@example.com", None),
    ("!incident followup add raise the pool limit --owner ada", None),
    ("!incident followup add alert on pool saturation", None),
    ("!incident followup list", None),
    ("!incident followup done 2", None),
    ("!incident tickets", None),
    ("!incident followup retry 1", None),
    ("!incident timeline", None),
    ("!incident unpublish", None),
    ("!incident resolve raised the pool limit", None),
    ("!incident export", None),
    ("!incident close", None),
    ("!deploy api 1.2 staging", None),
    ("!deploy api 1.2 production", None),
    ("!approve {deploy}", "grace"),
    ("!deploy api 1.3 production", None),
    ("!reject {deploy}", None),
    ("!intent who is on call for payments?", None),
]

# Ids the script needs, read from the answer to the step before: (name, pattern).
IDS = {
    "!ic swap {ada_shift}": ("swap", r"Swap request #(\d+)"),
    "!pd link barbara": ("link", r"!approve (\w+)"),
    "!deploy api 1.2 production": ("deploy", r"!approve (\w+)"),
    "!deploy api 1.3 production": ("deploy", r"!approve (\w+)"),
}

# Commands whose answer in the demo is a refusal, and why that is the right answer there.
REFUSED = {
    # The owner of an address confirms a link from the account that already has it, which
    # is on another chat platform (the same platform refuses a second account the address):
    # a console-only demo has one platform, so there is nothing to confirm.
    "!pd link allow 1": "user_error",
    # Sends again a ticket whose answer was lost ("unconfirmed"); the demo tracker always
    # answers, so the answer is that there is nothing to retry.
    "!incident followup retry 1": "user_error",
}

# A documented mention that is not a command to run: why.
NOT_COMMANDS = {"!inc": "README's Tab completion example (`!inc` completes to `!incident`)"}


@pytest.fixture
def demo_config(tmp_path: Path) -> Path:
    cfg = tmp_path / "chatopsd.toml"
    cfg.write_text(
        f'[chatopsd]\nstate_db = "{tmp_path / "state.db"}"\ntimezone = "UTC"\n'
        '[console]\nformat = "jsonl"\n'
    )
    return cfg


def _converse(cfg: Path, script: list[tuple[str, str | None]]) -> dict[str, list[str]]:
    """Type each line; the answers printed for each event id (edits included)."""
    log = (cfg.parent / "daemon.log").open("w")  # a pipe nobody reads could fill and block it
    proc = subprocess.Popen(
        [sys.executable, "-m", "chatopsd", "run", "--config", str(cfg)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        bufsize=1,
    )
    assert proc.stdin is not None and proc.stdout is not None
    stdout = proc.stdout

    def read_json(timeout: float) -> dict[str, Any]:
        return daemon_helpers.read_json(stdout, timeout)

    answers: dict[str, list[str]] = {}
    ids: dict[str, str] = {"ada_shift": _ada_shift()}
    by_message: dict[str, str] = {}
    try:
        for n, (text, actor) in enumerate(script):
            line = text.format(**ids)
            event = f"demo-{n}"
            obj: dict[str, Any] = {"text": line, "event_id": event}
            if actor:
                obj["actor"] = actor
            # then a marker: what is printed before its answer is this line's (a request
            # for approval, a swap request, is posted to the channel, not as a reply)
            marker = {"text": "!help help", "event_id": f"sync-{n}"}
            proc.stdin.write(json.dumps(obj) + "\n" + json.dumps(marker) + "\n")
            proc.stdin.flush()
            got = answers.setdefault(event, [])
            while True:  # the console answers each line before it reads the next
                reply = read_json(timeout=30)
                if reply.get("reply_to") == marker["event_id"]:
                    break
                if "edit" in reply:
                    edited = by_message.get(str(reply["edit"]))
                    if edited is not None:
                        answers[edited].append(str(reply["text"]))
                    continue
                owner = str(reply.get("reply_to") or event)
                if "message_id" in reply:
                    by_message[str(reply["message_id"])] = owner
                answers.setdefault(owner, []).append(str(reply.get("text") or reply.get("error")))
            for start_of, (name, pattern) in IDS.items():
                if text.startswith(start_of):
                    found = re.search(pattern, "\n".join(got))
                    assert found, f"no {name} id in the answer to {line!r}: {got}"
                    ids[name] = found.group(1)
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    return answers


def _ada_shift() -> str:
    """When Ada's next hour on call as IC starts (demo rotation), as `!ic swap` takes it."""
    now = datetime.now(UTC)
    primary = demo.SCHEDULES[demo.IC_PRIMARY]
    for who, start, end in primary.base(now, now + timedelta(days=4)):
        begins = max(start, now + timedelta(minutes=5))
        if who == "PDEMO01" and end - begins >= timedelta(hours=1):
            return begins.strftime("%Y-%m-%dT%H:%M")
    raise AssertionError("Ada has no hour on call in the next 4 days")


def _audit(cfg: Path) -> dict[str, dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-m", "chatopsd", "audit", "--json", "--config", str(cfg)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    return {str(row["event_id"]): row for row in rows}


def _paths(help_text: str) -> set[str]:
    """The command paths `!help` lists ("!ic page again [<target...>] — …" → "ic page again")."""
    found = set()
    for line in help_text.splitlines():
        m = re.match(r"!([a-z][a-z-]*(?: [a-z][a-z-]*)*)(?: [<\[]| —)", line)
        if m:
            found.add(m.group(1))
    return found


def _documented() -> Iterator[tuple[str, str]]:
    """(file, mention) for every `!command …` the README and the guides show in code."""
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for m in re.finditer(r"`(![a-z][a-z-]*(?: [a-z][a-z-]*)*)", doc.read_text()):
            yield doc.name, m.group(1)


def test_every_documented_command_answers_in_the_demo(demo_config: Path) -> None:
    answers = _converse(demo_config, SCRIPT)
    listed = _paths("\n".join(answers["demo-0"]))
    # !help lists every command the demo has, and the script runs each of them
    ran = {_longest(listed, text) for text, _ in SCRIPT}
    assert sorted(listed - ran) == []
    for doc, mention in _documented():
        if mention in NOT_COMMANDS:
            continue
        family = any(p.startswith(mention[1:] + " ") for p in listed)  # `!pd`: its commands
        assert family or _longest(listed, mention), f"{doc}: {mention} is not in the demo"
    audit = _audit(demo_config)
    for n, (text, _) in enumerate(SCRIPT):
        event = f"demo-{n}"
        said = "\n".join(answers.get(event, []))
        assert said, f"{text!r}: no answer"
        assert "unknown command" not in said and "internal error" not in said, (text, said)
        row = audit[event]
        # pending: an approval asked for, which is the answer
        wanted = (REFUSED[text],) if text in REFUSED else ("ok", "pending")
        assert row["outcome"] in wanted, (text, row["outcome"], row["cause"], said)


def _longest(paths: set[str], text: str) -> str | None:
    words = text.lstrip("!").split()
    for n in range(len(words), 0, -1):
        if " ".join(words[:n]) in paths:
            return " ".join(words[:n])
    return None


def test_the_demo_says_it_is_a_demo_and_keeps_its_people_out_of_the_database(
    demo_config: Path, tmp_path: Path
) -> None:
    answers = _converse(
        demo_config,
        [("!ic", None), ("!pd incidents", None), ("!status", None), ("!ic page", None)],
    )
    for event in ("demo-0", "demo-1", "demo-2"):
        assert "(demo)" in "\n".join(answers[event])
    # made-up people, shifts and pages stay in memory: a daemon later configured for real
    # never serves them from its cache
    db = sqlite3.connect(tmp_path / "state.db")
    try:
        for table in ("oncall_people", "oncall_entries", "oncall_shifts", "recent_pages"):
            assert db.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,), table
    finally:
        db.close()


def test_demo_is_one_decision_nothing_real_configured(tmp_path: Path) -> None:
    assert make_config(tmp_path).demo
    assert make_config(tmp_path, roles={"oncall": []}, chatopsd={"prefix": "?"}).demo
    pd = {
        "api_token": "test-value",
        "from_email": "bot@example.com",
        "service_id": "PSVC1",
        "ic_schedules": ["PIC1"],
    }
    real: list[dict[str, Any]] = [
        {"pagerduty": pd},
        {"status": {"sources": [{"kind": "http", "url": "http://127.0.0.1:1/", "field": "a"}]}},
        {"statuspage": {"api_key": "test-value", "page_id": "p1"}},
        {"tickets": {"kind": "github", "token": "test-value", "project": "o/r"}},
        {"console": {"enabled": False}},
        {"roles": {"oncall": ["console:ada"]}},  # access someone set: no every-role operator
        {"commands": [{"name": "hello", "summary": "hi", "run": ["true"]}]},
    ]
    for sections in real:
        cfg: Config = make_config(tmp_path, **sections)
        assert not cfg.demo, sections


def test_real_pagerduty_on_a_console_only_daemon_shows_no_demo_data(tmp_path: Path) -> None:
    cfg = tmp_path / "chatopsd.toml"
    cfg.write_text(
        f'[chatopsd]\nstate_db = "{tmp_path / "state.db"}"\n'
        '[console]\nformat = "jsonl"\n'
        '[roles]\nstatuspage = ["*"]\n'
        "[pagerduty]\n"  # nothing listens there: only what is shown matters here
        'api_token = "test-value"\napi_url = "http://127.0.0.1:9"\n'
        'from_email = "bot@example.com"\nservice_id = "PSVC1"\nic_schedules = ["PIC1"]\n'
    )
    answers = _converse(
        cfg,
        [
            ("!status", None),
            ('!incident declare --sev 3 "Slow search"', None),
            ("!incident publish", None),
            ("!incident tickets", None),
            ("!deploy api 1.2 staging", None),
        ],
    )
    status = "\n".join(answers["demo-0"])
    assert "demo" not in status.lower(), status
    # a command that needs a section not configured names the section and its guide
    publish, tickets = "\n".join(answers["demo-2"]), "\n".join(answers["demo-3"])
    assert "[statuspage]" in publish and "docs/statuspage.md" in publish, publish
    assert "[tickets]" in tickets and "docs/tickets.md" in tickets, tickets
    assert "unknown command !deploy" in "\n".join(answers["demo-4"])  # no demo [[commands]]


def test_without_pagerduty_its_commands_name_the_section_and_the_guide(tmp_path: Path) -> None:
    cfg = tmp_path / "chatopsd.toml"
    cfg.write_text(
        f'[chatopsd]\nstate_db = "{tmp_path / "state.db"}"\n'
        '[console]\nformat = "jsonl"\n'
        '[[status.sources]]\nkind = "command"\nargv = ["true"]\n'  # real: no demo
    )
    script: list[tuple[str, str | None]] = [
        ("!pd ack 1", None),
        ("!pd incidents", None),
        ("!ic next", None),
        ("!ic take 1h", None),
        ("!ic swap take 3", None),
    ]
    answers = _converse(cfg, script)
    for n, (text, _) in enumerate(script):
        said = "\n".join(answers[f"demo-{n}"])
        assert "unknown command" not in said, (text, said)
        assert "PagerDuty is not configured" in said and "docs/pagerduty.md" in said, said
