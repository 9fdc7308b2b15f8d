"""`[pagerduty.users]` says who is who, so it grants roles (a role given to an address) and the
PagerDuty user a command acts as: a SIGHUP reload (App.reload, what the signal handler calls)
applies it at once, adding and taking away. On the console, against the fake PagerDuty."""

from __future__ import annotations

import io
import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from chatopsd.app import App, Io
from chatopsd.config import Config
from chatopsd.core.messages import Actor, Inbound
from tests.conftest import FakeClock, make_config
from tests.fakes.pagerduty import FakePagerDuty
from tests.fixtures.pagerduty import first_refresh, pd, pd_section  # noqa: F401

ADA = Actor("u-ada", "Ada")
_ids = itertools.count(1)


def config(tmp_path: Path, pd: FakePagerDuty, users: dict[str, str]) -> Config:
    return make_config(
        tmp_path,
        pagerduty=pd_section(pd, service_ids=["PSVC1"], users=users),
        roles={"oncall": ["ada@example.com"]},
    )


@pytest.fixture
async def app(tmp_path: Path, pd: FakePagerDuty, clock: FakeClock) -> AsyncIterator[App]:
    pd.now = clock.now
    running = App(config(tmp_path, pd, {}), clock=clock, io=Io(io.StringIO(""), io.StringIO()))
    await running.start()
    await first_refresh(running)
    pd.trigger("Disk full")
    yield running
    await running.stop()


async def note(app: App, text: str) -> Any:
    event = Inbound("console", "ops", ADA, f"!pd note PINC001 {text}", event_id=f"r{next(_ids)}")
    replies = await app.bus.handle(event)
    return "\n".join(r.plain() for r in replies)


async def test_pagerduty_users_are_reloaded(app: App, pd: FakePagerDuty, tmp_path: Path) -> None:
    assert "needs the role 'oncall'" in await note(app, "before")
    assert app.reload(config(tmp_path, pd, {"console:u-ada": "Ada@Example.com"})) == []
    assert "Note added to PINC001 as ada@example.com" in await note(app, "after")
    assert app.reload(config(tmp_path, pd, {})) == []
    assert "needs the role 'oncall'" in await note(app, "revoked")
    assert pd.notes == {"PINC001": [("ada@example.com", "after")]}
