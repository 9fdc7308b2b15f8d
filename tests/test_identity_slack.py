"""Identity on Slack, end to end: the real slack-sdk against the fake Slack (users.info,
users.lookupByEmail), approvals of an operations command, a run target that records its argv.

- A reactor whose users.info lookup failed is not known to be a person: their ✅ is no vote.
- Self-approval: Carol asks while Slack cannot tell us her address, then approves from her
  second account (configured with her address). Who asked is looked up again when the vote
  comes: it is refused, and while her account cannot be looked up at all, no vote counts.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from chatopsd.app import App
from chatopsd.features.approvals.service import ApprovalService
from tests.conftest import FakeClock
from tests.fakes import slack as slack_fake
from tests.fakes.slack import APP_TOKEN, BOT_TOKEN, FakeSlack
from tests.fixtures.slack import fake  # noqa: F401 (fixtures)
from tests.opsrig import ops_config
from tests.waiting import eventually

SECOND = "U0CAROL2"  # Carol's second account, tied to her address by auth.identities
ERIN = "U0ERIN"


@pytest.fixture(autouse=True)
def _env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPS_OUT", str(tmp_path / "runs.jsonl"))
    for uid in (SECOND, ERIN):
        user = {"id": uid, "name": uid.lower(), "is_bot": False, "profile": {"real_name": uid}}
        monkeypatch.setitem(slack_fake.USERS, uid, user)


@pytest.fixture
async def app(tmp_path: Path, fake: FakeSlack, clock: FakeClock) -> AsyncIterator[App]:
    config = ops_config(
        tmp_path,
        console={"enabled": False},
        slack={"app_token": APP_TOKEN, "bot_token": BOT_TOKEN, "api_url": fake.api_url},
        roles={"lead": ["carol@example.com", f"slack:{ERIN}"]},
        auth={"identities": {f"slack:{SECOND}": "carol@example.com"}},
    )
    running = App(config, clock=clock)
    await running.start()
    await asyncio.wait_for(running.supervisors[0].ready_event.wait(), 5)
    yield running
    await running.stop()


def runs(tmp_path: Path) -> list[Any]:
    out = tmp_path / "runs.jsonl"
    return [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []


async def said(fake: FakeSlack, user: str, text: str, expect: str) -> str:
    """Post as `user`; the first answer (posted or ephemeral) after it containing `expect`."""
    before = {m: len(fake.posts(m)) for m in ("chat.postMessage", "chat.postEphemeral")}
    await fake.event(fake.message(text, user=user))

    def found() -> str | None:
        for method, n in before.items():
            for post in fake.posts(method)[n:]:
                if expect in json.dumps(post):
                    return json.dumps(post)
        return None

    await fake.wait_for(lambda: found() is not None)
    return found() or ""


async def request_message(app: App) -> tuple[str, str]:
    for _ in range(500):
        pending = await app.part(ApprovalService).store.pending()
        if pending and pending[0].message_id:
            return pending[0].id, pending[0].message_id
        await asyncio.sleep(0.01)
    raise AssertionError("no request message")


async def react(fake: FakeSlack, user: str, ts: str, n: int) -> None:
    await fake.event(
        {
            "type": "reaction_added",
            "user": user,
            "reaction": "white_check_mark",
            "item": {"type": "message", "channel": "C1", "ts": ts},
            "item_user": slack_fake.BOT_USER,
            "event_ts": f"1700000200.00000{n}",
        },
        event_id=f"EvVote{n}",
    )


async def test_a_reactor_slack_could_not_look_up_is_no_vote(
    app: App, fake: FakeSlack, tmp_path: Path
) -> None:
    await said(fake, "U2", "!deploy api 1.2 production", "Approval needed")
    request, ts = await request_message(app)
    fake.user_failures.add(ERIN)  # Slack answers an error about Erin
    await react(fake, ERIN, ts, 1)
    await fake.wait_for(
        lambda: any(c[0] == "users.info" and c[1].get("user") == ERIN for c in fake.calls)
    )
    await said(fake, "U2", "!help", "chatopsd commands")  # a barrier: the reaction was handled
    await fake.wait_for(lambda: not app.bus.in_flight)
    action = await app.part(ApprovalService).store.get(request)
    assert action is not None and action.state == "pending" and runs(tmp_path) == []
    fake.user_failures.clear()
    await react(fake, ERIN, ts, 2)  # Slack answers now: Erin is a person holding `lead`
    await eventually(lambda: runs(tmp_path), timeout=5)
    assert [r["argv"] for r in runs(tmp_path)] == [["api", "1.2", "production"]]


async def test_no_self_approval_when_the_requester_was_unknown_when_asking(
    app: App, fake: FakeSlack, tmp_path: Path
) -> None:
    fake.user_failures.add("U0CAROL")  # Carol's address is unknown when she asks
    await said(fake, "U0CAROL", "!deploy api 1.2 production", "Approval needed")
    request, _ = await request_message(app)
    action = await app.part(ApprovalService).store.get(request)
    assert action is not None and action.requester.email is None
    # ... and still when her second account votes: no vote counts while we cannot tell
    unsure = await said(fake, SECOND, f"!approve {request}", "could not look up")
    assert "cannot tell you apart" in unsure
    fake.user_failures.clear()
    own = await said(fake, SECOND, f"!approve {request}", "your own request")
    assert "you cannot approve your own request" in own
    assert runs(tmp_path) == []
    await said(fake, ERIN, f"!approve {request}", "Noted")  # someone else may
    await eventually(lambda: runs(tmp_path), timeout=5)
    assert len(runs(tmp_path)) == 1
