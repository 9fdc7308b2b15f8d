"""Incidents in the composed App (console connector, jsonl) and the daemon run as a user runs it."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

from chatopsd.app import App, Io
from chatopsd.core.messages import Actor, Inbound
from chatopsd.features.incidents.commands import IncidentHandler
from tests.conftest import FakeClock, make_config

ROOT = Path(__file__).resolve().parent.parent


def ev(text: str, n: int, thread: str | None = None) -> Inbound:
    return Inbound(
        "console",
        "ops",
        Actor("alice", "alice"),
        text,
        event_id=f"a{n}",
        thread=thread,
        message_id=f"u{n}",
    )


async def test_app_wires_incidents_and_they_survive_a_restart(
    tmp_path: Path, clock: FakeClock
) -> None:
    cfg = make_config(
        tmp_path,
        console={"format": "jsonl"},
        incidents={"routing": {"SEV-1": ["console:major"]}, "pulse_minutes": 10},
    )
    out = io.StringIO()
    app = App(cfg, clock=clock, io=Io(stdin=io.StringIO(""), stdout=out))
    await app.start()
    assert "incident-pulses" in app.scheduler.jobs
    [reply] = await app.bus.handle(ev('!incident declare --sev 1 "Checkout down"', 1))
    # the console shows no threads, so it does not offer one
    assert reply.text.startswith("INC-2026-0001 declared (SEV-1). Its status and updates post")
    await app.outbox.flush(5)
    posted = [json.loads(line) for line in out.getvalue().splitlines()]
    assert {p["channel"] for p in posted if "Checkout down" in p["text"]} == {"ops", "major"}
    # the thread under the announcement in #ops is the incident's home
    announcement = next(p for p in posted if p["channel"] == "ops" and "Acknowledge" in p["text"])
    [ack] = await app.bus.handle(ev("!incident ack", 2, thread=str(announcement["message_id"])))
    assert ack.text == "INC-2026-0001 acknowledged by alice."
    clock.advance(11 * 60)
    assert await app.part(IncidentHandler).pulse() == 1
    await app.stop()

    app = App(cfg, clock=clock, io=Io(stdin=io.StringIO(""), stdout=io.StringIO()))
    await app.start()
    [listing] = await app.bus.handle(ev("!incident list", 3))
    assert listing.fields[0][0] == "INC-2026-0001 [SEV-1] Checkout down"
    assert listing.fields[0][1].startswith("acknowledged, commander alice")
    assert await app.part(IncidentHandler).pulse() == 0  # already reminded in this quiet period
    [declared] = await app.bus.handle(ev("!incident declare second one", 4))
    assert declared.text.startswith("INC-2026-0002 declared (SEV-3)")
    await app.stop()


def test_daemon_declares_from_a_pipe_and_keeps_it(tmp_path: Path) -> None:
    cfg = tmp_path / "chatopsd.toml"
    cfg.write_text(
        f"[chatopsd]\nstate_db = '{tmp_path / 'state.db'}'\n"
        "[console]\nformat = 'text'\n"
        "[incidents]\npulse_minutes = 15\ndefault_channels = ['console:console']\n"
    )

    def run(stdin: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "chatopsd", "run", "--config", str(cfg)],
            input=stdin,
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    first = run('!incident declare --sev 2 "API latency" --service api\n')
    assert "[SEV-2] API latency" in first and " declared (SEV-2)" in first
    second = run("!incident list\n!incident close INC-2026-0001\n")
    assert "INC-2026-0001 [SEV-2] API latency" in second
    assert (
        "INC-2026-0001 is still declared: resolve it before closing it\n!incident resolve" in second
    )


async def test_ic_page_inside_the_incident_thread_links_the_pagerduty_incident(
    console_app: App,
) -> None:
    app = console_app
    await app.bus.handle(ev('!incident declare "Checkout down"', 1))
    await app.outbox.flush(5)
    [home] = await app.db.fetchall("SELECT channel, thread FROM incident_channels")
    [paged] = await app.bus.handle(ev("!ic page", 2, thread=home["thread"]))
    assert "Paged" in paged.text  # the page itself is unchanged
    [status] = await app.bus.handle(ev("!incident status INC-2026-0001", 3))
    # the demo PagerDuty (two incidents open at start): a third
    assert ("PagerDuty", "https://demo.pagerduty.invalid/incidents/PDEMOI3") in status.fields
    timeline = await app.part(IncidentHandler).store.timeline("INC-2026-0001")
    assert timeline[-1].kind == "paged" and "PagerDuty PDEMOI3" in timeline[-1].text
    # paging from a channel that is no incident's links nothing
    await app.bus.handle(ev("!ic page", 4))
    assert len(await app.part(IncidentHandler).store.timeline("INC-2026-0001")) == len(timeline)


async def test_escalating_a_sev1_says_it_is_already_the_highest(
    tmp_path: Path, clock: FakeClock
) -> None:
    app = App(
        make_config(tmp_path), clock=clock, io=Io(stdin=io.StringIO(""), stdout=io.StringIO())
    )
    await app.start()
    try:
        await app.bus.handle(ev('!incident declare --sev 1 "Checkout down"', 1))
        [reply] = await app.bus.handle(ev("!incident escalate INC-2026-0001 SEV-1", 2))
        assert "INC-2026-0001 is already SEV-1, the highest severity" in reply.plain()
        assert "SEV-0" not in reply.plain()
        [reply] = await app.bus.handle(ev("!incident escalate INC-2026-0001", 3))
        assert "already SEV-1" in reply.plain() and "SEV-0" not in reply.plain()
    finally:
        await app.stop()


async def test_after_resolve_a_bare_close_closes_the_only_incident(
    tmp_path: Path, clock: FakeClock
) -> None:
    app = App(
        make_config(tmp_path), clock=clock, io=Io(stdin=io.StringIO(""), stdout=io.StringIO())
    )
    await app.start()
    try:
        await app.bus.handle(ev('!incident declare --sev 2 "Checkout down"', 1))
        await app.bus.handle(ev("!incident resolve rolled back", 2))
        # none open, one resolved: that one is meant, as while it was the one open
        [export] = await app.bus.handle(ev("!incident export", 3))
        assert "Checkout down" in export.plain() and "which incident" not in export.plain()
        [closed] = await app.bus.handle(ev("!incident close", 4))
        assert "INC-2026-0001" in closed.plain() and "closed" in closed.plain()
        # two resolved (none open): it asks which
        await app.bus.handle(ev('!incident declare --sev 3 "Search slow"', 5))
        await app.bus.handle(ev('!incident declare --sev 3 "Search down"', 6))
        await app.bus.handle(ev("!incident resolve INC-2026-0002 reindexed", 7))
        await app.bus.handle(ev("!incident resolve INC-2026-0003 reindexed", 8))
        [asked] = await app.bus.handle(ev("!incident close", 9))
        assert "which incident?" in asked.plain()
    finally:
        await app.stop()
