"""The outbox: priority order, retries on transient failure, giving up, per-platform queues."""

from __future__ import annotations

import asyncio

from chatopsd.connectors.base import Session
from chatopsd.core.errors import TransientSendError
from chatopsd.core.messages import Destination, Priority, Reply, Sent
from chatopsd.outbox import Outbox


class Flaky:
    """A platform that fails the first `failures` sends of each text, then accepts."""

    def __init__(
        self,
        platform: str,
        failures: int = 0,
        retry_after: float | None = None,
        gate: asyncio.Event | None = None,
    ) -> None:
        self.platform, self.failures, self.retry_after = platform, failures, retry_after
        self.gate = gate
        self.sent: list[str] = []
        self.tries: dict[str, int] = {}

    async def run(self, session: Session) -> None:
        return None

    async def send(self, destination: Destination, reply: Reply) -> Sent | None:
        if self.gate is not None:
            await self.gate.wait()
        self.tries[reply.text] = self.tries.get(reply.text, 0) + 1
        if self.tries[reply.text] <= self.failures:
            raise TransientSendError("HTTP 429", retry_after=self.retry_after)
        self.sent.append(reply.text)
        return Sent(destination, str(len(self.sent)))

    async def edit(self, sent: Sent, reply: Reply) -> None:
        self.sent.append(f"edit {sent.message_id}: {reply.text}")

    async def close(self) -> None:
        return None


def dest(platform: str) -> Destination:
    return Destination(platform, "C1")


async def test_pages_jump_the_queue() -> None:
    gate = asyncio.Event()
    slack = Flaky("slack", gate=gate)
    outbox = Outbox({"slack": slack})
    outbox.enqueue(dest("slack"), Reply("first"))  # taken by the worker, waits on the gate
    await asyncio.sleep(0)
    for text, prio in [
        ("normal", Priority.NORMAL),
        ("status", Priority.STATUS),
        ("page", Priority.PAGE),
        ("normal 2", Priority.NORMAL),
    ]:
        outbox.enqueue(dest("slack"), Reply(text, priority=prio))
    gate.set()
    assert await outbox.flush(5)
    assert slack.sent == ["first", "page", "status", "normal", "normal 2"]
    await outbox.close()


async def test_transient_failures_are_retried_honouring_retry_after() -> None:
    delays: list[float] = []

    async def sleep(seconds: float) -> None:
        delays.append(seconds)

    slack = Flaky("slack", failures=2, retry_after=3.0)
    outbox = Outbox({"slack": slack}, sleep=sleep)
    sent = await outbox.send(dest("slack"), Reply("hello"))
    assert sent is not None and sent.message_id == "1"
    assert delays == [3.0, 3.0] and slack.sent == ["hello"]
    await outbox.edit(sent, Reply("hello again"))
    assert slack.sent[-1] == "edit 1: hello again"
    await outbox.close()


async def test_gives_up_after_the_attempts_and_keeps_going() -> None:
    async def sleep(seconds: float) -> None:
        return None

    slack = Flaky("slack", failures=99)
    outbox = Outbox({"slack": slack}, attempts=3, sleep=sleep)
    assert await outbox.send(dest("slack"), Reply("doomed")) is None
    assert slack.tries["doomed"] == 3 and outbox.failed == 1
    slack.failures = 0
    slack.tries.clear()
    assert await outbox.send(dest("slack"), Reply("fine")) is not None
    await outbox.close()


async def test_a_stuck_platform_does_not_delay_another() -> None:
    stuck = Flaky("slack", gate=asyncio.Event())
    discord = Flaky("discord")
    outbox = Outbox({"slack": stuck, "discord": discord})
    outbox.enqueue(dest("slack"), Reply("waits"))
    assert await asyncio.wait_for(outbox.send(dest("discord"), Reply("goes")), 2) is not None
    assert discord.sent == ["goes"] and stuck.sent == []
    assert await outbox.send(dest("mattermost"), Reply("nowhere")) is None
    await outbox.close()
