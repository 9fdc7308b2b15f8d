"""Every handler path → its audit outcome, from the closed set in core/outcome.py.

One App (console bus, real ops commands, the spec-checked fake PagerDuty) and a table: each
row sends one command as its own actor and checks the outcome and cause its audit row carries.
Before this, a failed page and the rate limiter's silent drops were audited as `ok`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chatopsd import cli
from chatopsd.core.commands import CommandSpec
from chatopsd.core.context import Call
from chatopsd.core.messages import Reply
from chatopsd.core.outcome import Outcome
from tests.chat_sink import ChatSink
from tests.conftest import FakeClock
from tests.fakes.pagerduty import FakePagerDuty
from tests.fixtures.pagerduty import first_refresh, pd, pd_section  # noqa: F401
from tests.opsrig import OpsRig

# (what, actor, command, PagerDuty fault on /incidents, outcome, text in the cause)
TABLE = [
    ("page failed", "pf", "!ic page db on fire", "500", Outcome.FAILED, "server error (500)"),
    ("page ok", "po", "!ic page again", None, Outcome.OK, "incident PINC"),
    ("page already sent", "pa", "!ic page", None, Outcome.OK, "already paged at 12:00"),
    ("ops ok", "alice", "!deploy api 1.2 staging", None, Outcome.OK, "exit 0"),
    ("ops failed", "of", "!job fail", None, Outcome.FAILED, "exit 3"),
    ("ops timeout", "ot", "!job hang", None, Outcome.FAILED, "timed out"),
    ("ops pending", "carol", "!deploy api 1.2 production", None, Outcome.PENDING, "approval"),
    ("denied", "mallory", "!purge api", None, Outcome.DENIED, "needs the role 'lead'"),
    ("user error", "ue", "!deploy api 1.2 moon", None, Outcome.USER_ERROR, "UsageError"),
    ("unknown", "uk", "!ic pgae", None, Outcome.USER_ERROR, "unknown command"),
    ("internal error", "ie", "!boom", None, Outcome.ERROR, "RuntimeError ref="),
]


@pytest.fixture
async def rig(
    tmp_path: Path,
    pd: FakePagerDuty,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[OpsRig]:
    monkeypatch.setenv("OPS_OUT", str(tmp_path / "runs.jsonl"))  # the recorder script's output
    rig = OpsRig(
        tmp_path,
        clock,
        pagerduty=pd_section(pd),
        auth={"command_roles": {"purge": "lead"}},
        ratelimit={"burst": 2, "per_minute": 1},
    )
    await rig.start()
    await first_refresh(rig.app)

    async def boom(call: Call) -> Reply:
        raise RuntimeError("secret internals")

    rig.app.registry.add(CommandSpec(("boom",), "raises (a bug, for this test)", boom))
    yield rig
    await rig.stop()


async def test_every_handler_path_is_audited_with_its_outcome(
    rig: OpsRig,
    pd: FakePagerDuty,
    tmp_path: Path,
) -> None:
    for what, actor, text, fault, outcome, cause in TABLE:
        pd.fault, pd.fault_path = fault, "/incidents"
        event = rig.event(actor, text)
        await rig.app.bus.handle(event)
        await rig.settle()
        rows = [
            r
            for r in await rig.app.audit.since(None)
            if r.event_id == event.event_id and r.kind == "message"  # not its run or request
        ]
        assert len(rows) == 1, (what, rows)
        assert rows[0].outcome == outcome.value, (what, rows[0].cause)
        assert cause in (rows[0].cause or ""), (what, rows[0].cause)

    # rate limited (a chat user: the console is the operator, never limited): the polite
    # refusal and the silent drops are rate_limited, never ok
    pd.fault = None
    chat = ChatSink().attach(rig.app)
    for i in range(4):
        await rig.app.bus.handle(chat.event("flood", "!ic", f"flood-{i}"))
    await rig.settle()
    flood = [r.outcome for r in await rig.app.audit.since(None) if r.actor == "flood"]
    assert flood == ["ok", "ok", "rate_limited", "rate_limited"]

    # `chatopsd audit --outcome failed` finds exactly the failed ones
    config = tmp_path / "audit.toml"
    config.write_text(f'[chatopsd]\nstate_db = "{tmp_path / "state.db"}"\n')
    # (in a thread: the CLI runs its own event loop; SQLite's WAL lets it read beside us)
    lines = await asyncio.to_thread(_cli_rows, config, "--outcome", "failed")
    failed = {(r["actor"], r["command"]) for r in lines}
    assert failed == {
        ("pf", "ic page"),
        ("of", "job"),
        ("of", "job (run)"),
        ("ot", "job"),
        ("ot", "job (run)"),
    }
    assert all(r["outcome"] == "failed" and r["cause"] for r in lines)


def _cli_rows(config: Path, *args: str) -> list[dict[str, object]]:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(["audit", "--config", str(config), "--json", *args]) == 0
    return [json.loads(line) for line in out.getvalue().splitlines()]
