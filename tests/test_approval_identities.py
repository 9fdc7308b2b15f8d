"""One person with two chat identities is one approver and cannot approve their own request
from the other identity: identities are linked by email (the platform's, or
auth.identities) before votes are counted."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chatopsd.features.approvals.service import ApprovalService
from tests.conftest import FakeClock
from tests.opsrig import OpsRig, ops_config, texts

LINKED = {
    "roles": {
        "lead": ["carol@example.com", "bob@example.com"],
        "dba": ["bob@example.com", "console:dan"],
    },
    "auth": {
        "identities": {
            "console:carol": "carol@example.com",
            "console:carol-on-discord": "Carol@Example.com",
            "console:bob": "bob@example.com",
            "console:bob-on-discord": "bob@example.com",
        }
    },
}


@pytest.fixture(autouse=True)
def _env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPS_OUT", str(tmp_path / "runs.jsonl"))


@pytest.fixture
async def rig(tmp_path: Path, clock: FakeClock) -> AsyncIterator[OpsRig]:
    r = await OpsRig(tmp_path, clock, **LINKED).start()
    yield r
    await r.stop()


async def test_no_self_approval_from_another_identity(rig: OpsRig) -> None:
    await rig.say("carol", "!deploy api 1.2 production")
    rid = await rig.pending_id()
    lines = await rig.say("carol-on-discord", f"!approve {rid}")
    assert "you cannot approve your own request" in texts(lines)
    assert rig.runs() == []
    await rig.say("bob-on-discord", f"!approve {rid}")  # the role, through the linked email
    assert len(rig.runs()) == 1


async def test_two_identities_are_one_approver(rig: OpsRig) -> None:
    await rig.say("carol", "!migrate users")  # needs two dba approvals
    rid = await rig.pending_id()
    await rig.say("bob", f"!approve {rid}")
    await rig.say("bob-on-discord", f"!approve {rid}")
    action = await rig.app.part(ApprovalService).store.get(rid)
    assert action is not None and action.state == "pending" and len(action.approvers) == 1
    assert rig.runs() == []
    await rig.say("dan", f"!approve {rid}")
    assert [r["argv"] for r in rig.runs()] == [["users"]]


async def test_no_self_approval_when_the_address_became_known_after_asking(
    rig: OpsRig, tmp_path: Path
) -> None:
    """Frank asks from an account nobody tied to an address yet; the config (reloaded) then
    ties it and his other account to his address: his other account still cannot approve,
    because who asked is looked up again when the vote comes."""
    await rig.say("frank", "!deploy api 1.2 production")
    rid = await rig.pending_id()
    action = await rig.app.part(ApprovalService).store.get(rid)
    assert action is not None and action.requester.email is None
    identities = {
        **LINKED["auth"]["identities"],
        "console:frank": "frank@example.com",
        "console:frank-on-discord": "frank@example.com",
    }
    roles = {**LINKED["roles"], "lead": [*LINKED["roles"]["lead"], "frank@example.com"]}
    assert rig.app.reload(ops_config(tmp_path, roles=roles, auth={"identities": identities})) == []
    lines = await rig.say("frank-on-discord", f"!approve {rid}")
    assert "you cannot approve your own request" in texts(lines)
    assert rig.runs() == []
    await rig.say("carol", f"!approve {rid}")
    assert len(rig.runs()) == 1
