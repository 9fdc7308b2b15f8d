"""`!ic swap` (issue 18) end to end on the console connector: the request with its "Take it"
button, a take by a linked person with the `oncall` role making the override in the fake
PagerDuty (spec-checked, From checked), the message edited, the requester told, a second
taker refused, and expiry."""

from __future__ import annotations

import io
import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chatopsd.app import App, Io
from chatopsd.core.messages import Actor, Inbound, Reply
from tests.conftest import FakeClock, make_config
from tests.fakes.pagerduty import FakePagerDuty
from tests.fixtures.pagerduty import first_refresh, pd, pd_section  # noqa: F401

_ids = itertools.count(1)
GRACE = Actor("u-grace", "Grace")
ADA = Actor("u-ada", "Ada")
NOBODY = Actor("u-none", "Nemo")
OUTSIDER = Actor("u-out", "Olive")


@pytest.fixture
def out() -> io.StringIO:
    return io.StringIO()


@pytest.fixture
async def app(
    tmp_path: Path, pd: FakePagerDuty, clock: FakeClock, out: io.StringIO
) -> AsyncIterator[App]:
    pd.now = clock.now
    running = App(
        make_config(
            tmp_path,
            pagerduty=pd_section(
                pd,
                users={
                    "console:u-grace": "grace@example.com",
                    "console:u-ada": "ada@example.com",
                    "console:u-out": "alan@example.com",
                },
            ),
            roles={"oncall": ["console:u-grace", "console:u-ada", "console:u-none"]},
        ),
        clock=clock,
        io=Io(stdin=io.StringIO(""), stdout=out),
    )
    await running.start()
    await first_refresh(running)
    yield running
    await running.stop()


async def say(app: App, text: str, actor: Actor) -> str:
    event = Inbound("console", "ops", actor, text, event_id=f"sw-{next(_ids)}")
    replies: list[Reply] = await app.bus.handle(event)
    return "\n".join(r.plain() for r in replies)


async def test_a_swap_taken_by_button_makes_the_override_once(
    app: App, pd: FakePagerDuty, out: io.StringIO
) -> None:
    asked = await say(app, "!ic swap 2026-11-24T08:00 12h dentist", GRACE)
    assert "Swap request #1 posted" in asked
    shown = out.getvalue()
    assert "Grace needs cover on PIC1: Tue 08:00 → Tue 20:00 (dentist)" in shown
    assert "[Take it: !ic swap take 1]" in shown
    taken = await say(app, "!ic swap take 1", ADA)  # what the button runs, as the clicker
    assert "You have swap #1" in taken
    [override] = pd.overrides.values()
    assert override["schedule"] == "PIC1" and override["user"]["id"] == "PADA"
    assert override["start"].startswith("2026-11-24T08:00") and override["end"].startswith(
        "2026-11-24T20:00"
    )
    assert ("POST", "/schedules/PIC1/overrides", "ada@example.com") in pd.writes
    await app.outbox.flush(timeout=2)
    after = out.getvalue()[len(shown) :]
    assert "Swap #1: taken by Ada" in after and "[Take it" not in after
    assert "Grace: Ada took your swap #1" in after
    again = await say(app, "!ic swap take 1", GRACE)
    assert "already taken by Ada" in again
    assert len(pd.overrides) == 1


async def test_takers_must_hold_the_role_and_be_linked(app: App, pd: FakePagerDuty) -> None:
    await say(app, "!ic swap 1h 2h", GRACE)
    refused = await say(app, "!ic swap take 1", OUTSIDER)  # linked, without the role
    assert "oncall" in refused
    unlinked = await say(app, "!ic swap take 1", NOBODY)  # the role, not linked
    assert "PagerDuty user" in unlinked
    assert pd.overrides == {}
    assert "You have swap #1" in await say(app, "!ic swap take 1", ADA)  # still open


async def test_an_untaken_request_expires_and_its_message_says_so(
    app: App, pd: FakePagerDuty, clock: FakeClock, out: io.StringIO
) -> None:
    await say(app, "!ic swap 1h 2h", GRACE)
    clock.advance(3601)
    assert "expired" in await say(app, "!ic swap take 1", ADA)
    assert app.swaps is not None
    await app.swaps.sweep()
    await app.outbox.flush(timeout=2)
    assert "Swap #1: expired, nobody took it" in out.getvalue()
    assert pd.overrides == {}
