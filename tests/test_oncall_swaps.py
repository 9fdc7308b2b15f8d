"""`!ic swap` end to end on the console connector: the request with its "Take it"
button, a take by a linked person with the `oncall` role making the override in the fake
PagerDuty (spec-checked, From checked), the message edited, the requester told, a second
taker refused, and expiry. A requester offers only a window they are on call for (the coming
shifts read from the fake PagerDuty)."""

from __future__ import annotations

import asyncio
import io
import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from chatopsd.app import App, Io
from chatopsd.core.messages import Actor, Inbound, Reply
from chatopsd.features.oncall.lookahead import LookaheadRefresher
from chatopsd.features.oncall.swaps import SwapHandler
from tests.conftest import FakeClock, make_config
from tests.fakes.pagerduty import FakePagerDuty
from tests.fixtures.pagerduty import first_refresh, pd, pd_section  # noqa: F401

_ids = itertools.count(1)
GRACE = Actor("u-grace", "Grace")
ADA = Actor("u-ada", "Ada")
NOBODY = Actor("u-none", "Nemo")
OUTSIDER = Actor("u-out", "Olive")
MON8 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)  # the clock starts Monday 12:00 UTC
DAY = timedelta(days=1)


@pytest.fixture
def out() -> io.StringIO:
    return io.StringIO()


@pytest.fixture
async def app(
    tmp_path: Path, pd: FakePagerDuty, clock: FakeClock, out: io.StringIO
) -> AsyncIterator[App]:
    pd.now = clock.now
    # Grace is on call on PIC1 from Monday 08:00 to Wednesday 08:00 (two shifts), then Ada
    pd.shifts["PIC1"] = [
        ("PGRACE", 1, MON8, MON8 + DAY),
        ("PGRACE", 1, MON8 + DAY, MON8 + 2 * DAY),
        ("PADA", 1, MON8 + 2 * DAY, MON8 + 3 * DAY),
    ]
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
    for _ in range(500):  # the coming shifts are read right after the first refresh
        if (
            running.part(LookaheadRefresher) is not None
            and running.part(LookaheadRefresher).lookahead.as_of is not None
        ):
            break
        await asyncio.sleep(0.01)
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
    assert app.part(SwapHandler) is not None
    await app.part(SwapHandler).sweep()
    await app.outbox.flush(timeout=2)
    assert "Swap #1: expired, nobody took it" in out.getvalue()
    assert pd.overrides == {}


async def test_only_a_window_the_requester_is_on_call_for_can_be_offered(
    app: App, pd: FakePagerDuty
) -> None:
    not_hers = await say(app, "!ic swap 1h 2h", ADA)  # Grace's shift, not Ada's
    assert "you (Ada Lovelace) are not on call on PIC1 for all of" in not_hers
    crossing = await say(app, "!ic swap 2026-11-25T06:00 4h", GRACE)  # into Ada's shift
    assert "not on call on PIC1" in crossing
    far = await say(app, "!ic swap 2026-12-20T08:00 2h", ADA)  # past the lookahead
    assert "I can only see shifts until" in far
    unknown = await say(app, "!ic swap 1h 2h", NOBODY)  # no PagerDuty user to check
    assert "PagerDuty user" in unknown
    assert (
        app.part(SwapHandler) is not None and await app.part(SwapHandler).store.get(1) is None
    )  # nothing posted
    # across her two back-to-back shifts: one window she holds throughout
    assert "Swap request #1 posted" in await say(app, "!ic swap 2026-11-24T06:00 4h", GRACE)
    assert pd.overrides == {}
