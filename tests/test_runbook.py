"""The fallback card: the daemon writes it beside its database from the on-call cache (read
from the spec-checked fake PagerDuty), and `chatopsd runbook` prints it once the daemon has
stopped; what the card says and when it is rewritten."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from chatopsd.core.times import Times
from chatopsd.features.oncall.fallback_card import CardWriter, Facts, Setting, render
from chatopsd.features.oncall.shift_rules import Shift
from chatopsd.features.paging.api import OnCall, Person
from tests.fakes.pagerduty import TOKEN, FakePagerDuty
from tests.fixtures.pagerduty import BOT, pd  # noqa: F401  (the fixture)

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 12, 5, 7, 30, tzinfo=UTC)


def _config(tmp_path: Path, fake: FakePagerDuty) -> Path:
    cfg = tmp_path / "chatopsd.toml"
    cfg.write_text(
        f'[chatopsd]\nstate_db = "{tmp_path / "state.db"}"\ntimezone = "UTC"\n'
        '[console]\nformat = "jsonl"\n'
        "[pagerduty]\n"
        f'api_token = "{TOKEN}"\napi_url = "{fake.url}"\nfrom_email = "{BOT}"\n'
        'service_id = "PSVC1"\nic_schedules = ["PIC1", "PIC2"]\n'
        'responder_schedules = ["PRS1"]\n'
        'fallback_contacts = [{ name = "Ops desk", phone = "+1 555 0150" }]\n'
    )
    return cfg


def _runbook(cfg: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chatopsd", "runbook", "--config", str(cfg)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_runbook_prints_the_card_the_daemon_wrote_after_it_stopped(
    tmp_path: Path,
    pd: FakePagerDuty,
) -> None:
    # IC Primary: Ada now, then Linus, who is on call nowhere now (not in the on-call cache)
    now = datetime.now(UTC)
    pd.shifts["PIC1"] = [
        ("PADA", 1, now - timedelta(hours=1), now + timedelta(hours=2)),
        ("PLIN", 1, now + timedelta(hours=2), now + timedelta(hours=26)),
    ]
    cfg = _config(tmp_path, pd)
    card = tmp_path / "state.fallback.md"
    missing = await asyncio.to_thread(_runbook, cfg)
    assert missing.returncode == 1 and str(card) in missing.stderr  # says where it looked

    log = (tmp_path / "daemon.log").open("w")
    daemon = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "chatopsd",
        "run",
        "--config",
        str(cfg),
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=log,
    )
    try:
        # the first refresh (at start) writes it; the fake answers from this loop
        async with asyncio.timeout(30):
            while not card.exists():
                await asyncio.sleep(0.05)
        assert daemon.stdin is not None
        daemon.stdin.close()  # end of input stops a console-only daemon
        async with asyncio.timeout(30):
            assert await daemon.wait() == 0
    finally:
        if daemon.returncode is None:
            daemon.kill()
            await daemon.wait()
        log.close()

    assert stat.S_IMODE(os.stat(card).st_mode) == 0o640
    asked = len(pd.requests)
    shown = await asyncio.to_thread(_runbook, cfg)
    assert len(pd.requests) == asked  # the card is all there is: PagerDuty is not asked
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    now_part, next_part = out.split("## On call next")
    for name, number in (
        ("Ada Lovelace", "+1 555 0100"),
        ("Alan Turing", "+1 555 0102"),
        ("Edsger Dijkstra", "+1 555 0103"),
    ):
        row = next((ln for ln in now_part.splitlines() if ln.startswith(f"| {name} |")), "")
        assert number in row, (name, out)
    # next on call, with the number read for the card
    row = next((ln for ln in next_part.splitlines() if ln.startswith("| Linus Torvalds |")), "")
    assert "+1 555 0105" in row, out
    assert "- Ops desk: +1 555 0150" in out
    assert "new incident on service PSVC1" in out  # `!ic page` by hand
    assert "DEMO" not in out


def _facts(now: datetime = NOW, **extra: object) -> Facts:
    ada = Person("PADA", "Ada | Lovelace", "ada@example.com", ("+1 555 0100",))
    grace = Person("PGRACE", "Grace Hopper", "grace@example.com", ("+1 555 0101",))
    until = NOW + timedelta(hours=2)
    shifts = (
        Shift("PIC1", "IC", "primary", "PADA", "Ada | Lovelace", NOW - timedelta(hours=5), until),
        Shift("PIC1", "IC", "primary", "PGRACE", "Grace Hopper", until, until + timedelta(days=1)),
    )
    fields: dict[str, Any] = {
        "now": now,
        "on_call": (OnCall(ada, "PIC1", "IC", "primary", until),),
        "people": {"PADA": ada, "PGRACE": grace},
        "as_of": NOW - timedelta(minutes=1),
        "shifts": shifts,
    }
    return Facts(**{**fields, **extra})


SETTING = Setting("https://app.pagerduty.com", "PSVC1", ("PIC1",), (("Ops", "+1 555 0150"),))


def test_the_card_says_who_now_who_next_and_how_old_the_cache_is() -> None:
    text = render(_facts(), SETTING, Times())
    now_rows = text.split("## On call now")[1].split("## On call next")
    # a pipe in a name cannot break the table
    assert "| Ada \\| Lovelace | IC primary | Sat 05 Dec 09:30 UTC | +1 555 0100 |" in now_rows[0]
    assert (
        "| Grace Hopper | IC primary | Sat 05 Dec 09:30 UTC | Sun 06 Dec 09:30 UTC | +1 555 0101 |"
        in now_rows[1]
    )
    assert "unreachable" not in text
    stale = render(
        _facts(failing_since=NOW - timedelta(minutes=20), error="PagerDuty server error (500)"),
        SETTING,
        Times(),
    )
    assert (
        "PagerDuty unreachable since Sat 05 Dec 07:10 UTC (PagerDuty server error (500))" in stale
    )
    empty = render(Facts(NOW, (), {}, None), SETTING, Times())
    assert "never read" in empty and "- Ops: +1 555 0150" in empty


def test_the_card_is_rewritten_when_it_changes_or_once_a_day(tmp_path: Path) -> None:
    writer = CardWriter(tmp_path / "state.fallback.md")
    card = render(_facts(), SETTING, Times())
    assert writer.write(card, NOW)
    later = NOW + timedelta(hours=1)
    # the same people an hour later: only the "Written" line differs, nothing to write
    assert not writer.write(render(_facts(later), SETTING, Times()), later)
    # an on-call change: written at once
    changed = render(_facts(later, people={}), SETTING, Times())
    assert writer.write(changed, later)
    # a day on, unchanged: written again, so its date shows it is current
    os.utime(writer.path, (NOW.timestamp(), NOW.timestamp()))
    assert writer.write(changed, NOW + timedelta(days=1, minutes=1))
