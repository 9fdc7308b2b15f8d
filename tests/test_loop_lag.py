"""The event loop stays free: a hostile mention through Slack holds nobody up, and the loop-lag
monitor names the command when something does hold the loop."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from chatopsd.app import App
from chatopsd.core.commands import CommandSpec
from chatopsd.core.context import Call
from chatopsd.core.messages import Actor, Inbound, Reply
from tests.conftest import FakeClock
from tests.fakes.slack import BOT_USER, FakeSlack
from tests.fixtures.slack import (
    fake,  # noqa: F401 (fixtures)
    slack_config,
    started,
)


def _metric(app: App, name: str) -> float:
    for family in text_string_to_metric_families(app.metrics.text().decode()):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    raise AssertionError(f"no metric {name}")


async def test_a_command_holding_the_loop_is_named_in_one_warning_and_counted(
    console_app: App, caplog: pytest.LogCaptureFixture
) -> None:
    app = console_app

    async def hog(call: Call) -> Reply:
        time.sleep(0.3)  # noqa: ASYNC251 (the point: hold the loop, as a backtracking parser did)
        return Reply(text="done")

    app.registry.add(CommandSpec(("hog",), "holds the event loop (for this test)", hog))
    await app.loop_lag.checked()  # start-up is behind us
    stalls = _metric(app, "chatopsd_event_loop_stalls_total")
    with caplog.at_level(logging.WARNING, logger="chatopsd.looplag"):
        event = Inbound("console", "ops", Actor("u-hog", "Hog"), "!hog", event_id="hog-1")
        [reply] = await app.bus.handle(event)
        await app.loop_lag.checked()  # the first check after the hold
    assert reply.text == "done"
    named = [r for r in caplog.records if "hog (ref" in r.getMessage()]
    assert len(named) == 1, named  # one hold, one warning
    assert named[0].levelno == logging.WARNING
    message = named[0].getMessage()
    assert "console:u-hog" in message and "event loop held for at least" in message
    assert _metric(app, "chatopsd_event_loop_stalls_total") >= stalls + 1
    # a 300 ms hold shows as at least 250 ms late: checks come every 50 ms
    assert _metric(app, "chatopsd_event_loop_lag_max_seconds") >= 0.25


async def test_a_40kB_hostile_mention_holds_up_nobody_else(
    tmp_path: Path,
    fake: FakeSlack,
    clock: FakeClock,
) -> None:
    # A member mentions the bot with 40 kB built to make backtracking patterns go quadratic
    # (this one held the loop for seconds), then someone else asks for help.
    app = await started(slack_config(tmp_path, fake), clock)
    try:
        head = f"<@{BOT_USER}> who is on call for "
        hostile = head + "a-" * ((40_000 - len(head) - len(" service")) // 2) + " service"
        assert len(hostile) <= 40_000
        mention = fake.message(hostile, user="U1")
        mention["type"] = "app_mention"
        await fake.event(mention)
        loop = asyncio.get_running_loop()
        asked = loop.time()
        await fake.event(fake.message("!help", user="U2"))
        await fake.wait_for(lambda: any("chatopsd commands" in p["text"] for p in fake.posts()))
        answered = loop.time() - asked
        assert answered < 0.5, f"!help answered after {answered:.2f} s"
        await fake.wait_for(lambda: len(fake.posts("chat.postEphemeral")) == 1)
        await app.loop_lag.checked()
    finally:
        await app.stop()
    [refusal] = fake.posts("chat.postEphemeral")
    assert refusal["user"] == "U1" and "too long for me to read" in refusal["text"]
    # No watchdog gap: the loop never computed for 100 ms at a stretch. (A busy CI host can
    # delay a check without our thread running; such a delay is not counted against us.)
    assert [s for s in app.loop_lag.recent if s.cpu > 0.1] == []
