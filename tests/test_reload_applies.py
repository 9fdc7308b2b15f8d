"""SIGHUP reload applies everywhere or says what it did not apply: the
approvals read the current roles (a revoked approver cannot approve), `[[approvals.rules]]`
and `[[commands]]` changes apply, and every other change is named as needing a restart."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FakeClock
from tests.opsrig import OpsRig, ops_config, texts


@pytest.fixture(autouse=True)
def _env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPS_OUT", str(tmp_path / "runs.jsonl"))


@pytest.fixture
async def rig(tmp_path: Path, clock: FakeClock) -> AsyncIterator[OpsRig]:
    r = await OpsRig(tmp_path, clock).start()
    yield r
    await r.stop()


def changed(tmp_path: Path, rig: OpsRig, **extra: Any) -> Any:
    """The rig's config with some sections replaced (what a new file on disk would load)."""
    return ops_config(tmp_path, **extra)


async def test_a_revoked_approver_cannot_approve_after_reload(rig: OpsRig, tmp_path: Path) -> None:
    await rig.say("carol", "!deploy api 1.2 production")
    rid = await rig.pending_id()
    later = rig.app.reload(changed(tmp_path, rig, roles={"lead": ["console:alice"]}))
    assert later == []
    lines = await rig.say("bob", f"!approve {rid}")
    assert "needs the role 'lead'" in texts(lines)
    assert rig.runs() == []
    await rig.say("alice", f"!approve {rid}")
    assert len(rig.runs()) == 1


async def test_approval_rules_and_commands_change_on_reload(rig: OpsRig, tmp_path: Path) -> None:
    base = changed(tmp_path, rig)
    script = base.commands[0].run[:2]
    new = changed(
        tmp_path,
        rig,
        approvals={"rules": [{"command": "deploy", "count": 0}]},
        commands=[
            {"name": "deploy", "args": ["service", "version", "env"], "run": [*script, "{env}"]},
            {"name": "hello", "args": [], "run": [*script, "hi"]},
        ],
    )
    assert rig.app.reload(new) == []
    await rig.say("carol", "!deploy api 1.2 production")  # no approval needed any more
    assert [r["argv"] for r in rig.runs()] == [["production"]]
    await rig.say("carol", "!hello")
    assert rig.runs()[-1]["argv"] == ["hi"]
    lines = await rig.say("carol", "!purge api")  # dropped from [[commands]]
    assert "unknown command !purge" in texts(lines)


async def test_what_cannot_be_reloaded_is_named(rig: OpsRig, tmp_path: Path) -> None:
    base = changed(tmp_path, rig)
    new = changed(
        tmp_path,
        rig,
        chatopsd={"state_db": str(base.chatopsd.db_path()), "prefix": "?"},
        incidents={"pulse_minutes": 5},
        approvals={"sweep_seconds": 99, "rules": []},
        metrics={"listen": "127.0.0.1:0"},
    )
    later = rig.app.reload(new)
    assert set(later) == {
        "chatopsd.prefix",
        "incidents.pulse_minutes",
        "approvals.sweep_seconds",
        "metrics.listen",
    }


async def test_a_command_clashing_with_a_built_in_is_not_applied(
    rig: OpsRig, tmp_path: Path
) -> None:
    base = changed(tmp_path, rig)
    new = changed(
        tmp_path,
        rig,
        commands=[{"name": "status", "run": base.commands[0].run[:2]}],
        approvals={"rules": []},
    )
    later = rig.app.reload(new)
    assert any(item.startswith("commands (kept the running ones") for item in later)
    await rig.say("carol", "!deploy api 1.2 staging")
    assert len(rig.runs()) == 1  # the running [[commands]] still work
