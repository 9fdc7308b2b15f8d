"""The outbox: replies queued per platform, pages first, retried on transient failure.

One worker per platform keeps a platform's messages in order within a priority and keeps a
slow or rate-limited platform from delaying the others. Every reply, posted or edited, leaves
without the configured secrets (`redact`): the last gate before chat, whoever built the text
(an error an outside system wrote, quoting our token, can reach a reply by many paths).
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from chatopsd.connectors.base import Connector
from chatopsd.core.capabilities import POSTED_ANSWERS, Capabilities
from chatopsd.core.errors import TransientSendError
from chatopsd.core.messages import Destination, Priority, Reply, Sent
from chatopsd.core.retry import Backoff, RetryPolicy, retrying

log = logging.getLogger("chatopsd.outbox")


@dataclass(order=True)
class _Job:
    priority: int
    seq: int
    run: Callable[[], Awaitable[Sent | None]] = field(compare=False)
    future: asyncio.Future[Sent | None] | None = field(compare=False, default=None)
    what: str = field(compare=False, default="")
    platform: str = field(compare=False, default="")


class Outbox:
    def __init__(
        self,
        connectors: Mapping[str, Connector],
        *,
        attempts: int = 5,
        base_delay: float = 0.5,
        max_delay: float = 30.0,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        redact: Callable[[str], str] | None = None,
        capabilities: Capabilities | None = None,
    ) -> None:
        self.connectors = dict(connectors)
        # what the platforms can do besides posting (here: find an answer by its key)
        self.capabilities = capabilities or Capabilities()
        self.redact = redact
        self.policy = RetryPolicy(attempts, Backoff(base=base_delay, cap=max_delay))
        self._sleep = sleep
        self._queues: dict[str, asyncio.PriorityQueue[_Job]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._seq = itertools.count()
        self.sent = 0
        self.failed = 0
        # Per platform, for metrics.
        self.sent_by: collections.Counter[str] = collections.Counter()
        self.failed_by: collections.Counter[str] = collections.Counter()

    @property
    def depth(self) -> int:
        """Replies waiting to be sent, all platforms together."""
        return sum(q.qsize() for q in self._queues.values())

    def enqueue(self, destination: Destination, reply: Reply) -> None:
        reply = self._clean(reply)
        self._put(
            destination.platform,
            reply.priority,
            lambda: self._connector(destination.platform).send(destination, reply),
            None,
            f"reply to {destination.platform}:{destination.channel}",
        )

    async def send(self, destination: Destination, reply: Reply) -> Sent | None:
        reply = self._clean(reply)
        fut: asyncio.Future[Sent | None] = asyncio.get_running_loop().create_future()
        self._put(
            destination.platform,
            reply.priority,
            lambda: self._connector(destination.platform).send(destination, reply),
            fut,
            f"post to {destination.platform}:{destination.channel}",
        )
        return await fut

    async def edit(self, sent: Sent, reply: Reply) -> Sent | None:
        reply = self._clean(reply)
        platform = sent.destination.platform

        async def run() -> Sent | None:
            await self._connector(platform).edit(sent, reply)
            return sent

        fut: asyncio.Future[Sent | None] = asyncio.get_running_loop().create_future()
        self._put(platform, reply.priority, run, fut, f"edit {platform}:{sent.message_id}")
        return await fut  # None: it could not be edited

    async def posted(self, destination: Destination, key: str, since: float) -> bool:
        answers = self.capabilities.get(destination.platform, POSTED_ANSWERS)
        if answers is None:
            return False
        try:
            return await answers.answer_posted(destination, key, since)
        except Exception as exc:
            # Cannot tell: answer (a possible second answer beats a certainly lost one).
            log.warning("could not look for answer %s on %s: %s", key, destination.platform, exc)
            return False

    def _clean(self, reply: Reply) -> Reply:
        """The reply without any configured secret in what it shows."""
        redact = self.redact
        if redact is None:
            return reply
        text, title = redact(reply.text), reply.title and redact(reply.title)
        code = reply.code and redact(reply.code)
        fields = tuple((redact(label), redact(value)) for label, value in reply.fields)
        if (text, title, code, fields) == (reply.text, reply.title, reply.code, reply.fields):
            return reply
        return replace(reply, text=text, title=title, code=code, fields=fields)

    def _connector(self, platform: str) -> Connector:
        return self.connectors[platform]

    def _put(
        self,
        platform: str,
        priority: Priority,
        run: Callable[[], Awaitable[Sent | None]],
        fut: asyncio.Future[Sent | None] | None,
        what: str,
    ) -> None:
        if platform not in self.connectors:
            log.error("no connector for platform %r; dropped %s", platform, what)
            if fut is not None:
                fut.set_result(None)
            return
        queue = self._queues.get(platform)
        if queue is None:
            queue = self._queues[platform] = asyncio.PriorityQueue()
            self._workers[platform] = asyncio.get_running_loop().create_task(
                self._work(platform, queue), name=f"outbox:{platform}"
            )
        queue.put_nowait(_Job(int(priority), next(self._seq), run, fut, what, platform))

    async def _work(self, platform: str, queue: asyncio.PriorityQueue[_Job]) -> None:
        while True:
            job = await queue.get()
            try:
                result = await self._attempt(job)
            except asyncio.CancelledError:
                if job.future is not None and not job.future.done():
                    job.future.cancel()
                raise
            if job.future is not None and not job.future.done():
                job.future.set_result(result)
            queue.task_done()

    async def _attempt(self, job: _Job) -> Sent | None:
        def retrying_log(attempt: int, exc: TransientSendError, wait: float) -> None:
            log.warning("%s failed (%s); retry %d in %.1f s", job.what, exc, attempt, wait)

        try:
            result = await retrying(job.run, self.policy, on_retry=retrying_log, sleep=self._sleep)
        except TransientSendError as exc:
            log.error("gave up on %s after %d attempts: %s", job.what, self.policy.attempts, exc)
        except Exception:
            log.exception("could not %s", job.what)
        else:
            self.sent += 1
            self.sent_by[job.platform] += 1
            return result
        self.failed += 1
        self.failed_by[job.platform] += 1
        return None

    async def flush(self, timeout: float) -> bool:
        """Wait until every queued reply was handled; False on timeout."""
        try:
            async with asyncio.timeout(timeout):
                for queue in list(self._queues.values()):
                    await queue.join()
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        for task in self._workers.values():
            task.cancel()
        await asyncio.gather(*self._workers.values(), return_exceptions=True)
