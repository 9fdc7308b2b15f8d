"""`!status stalk [interval]`, `!status unstalk`, `!status stalkers`, and the shared poll.

ONE poll job reads the sources for every stalker; the fan-out posts only where the state
last posted differs (see core/stalking.py for why that costs nothing per idle stalker).
What was posted is persisted BEFORE the post is queued: after a crash in between, a change
may go unposted once, but a restart never repeats a post.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from chatopsd.core.commands import Arg, CommandSpec
from chatopsd.core.context import Call
from chatopsd.core.errors import NotFound, UsageError
from chatopsd.core.messages import Priority, Reply
from chatopsd.core.ports import Clock, ReplySink
from chatopsd.features.status.api import Overview, Reading, combine
from chatopsd.features.status.commands import StatusBoard, render
from chatopsd.features.status.stalking_rules import (
    Stalker,
    StalkerKey,
    StalkerSet,
    Steady,
    fingerprint,
)
from chatopsd.ha.fence import Lease, Superseded, read_fence

if TYPE_CHECKING:
    from chatopsd.features.status.ports import StalkerStore  # a protocol: annotations only

log = logging.getLogger("chatopsd.status")

_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600}
_MAX_INTERVAL = 24 * 3600
_LIST_MAX = 50
_RETRIES = 3  # polls that retry a post that could not be delivered


@dataclass(frozen=True, slots=True)
class _Post:
    stalker: Stalker
    reply: Reply
    was: str  # the verdict the stalker was told before this post


@dataclass(slots=True)
class PollResult:
    read: bool  # the sources were read (False: nobody stalks, or not settled)
    posted: int = 0
    fingerprint: str = ""
    readings: tuple[Reading, ...] = ()  # what the sources said, when they were read


class Stalkers:
    def __init__(
        self,
        board: StatusBoard,
        store: StalkerStore,
        outbox: ReplySink,
        clock: Clock,
        *,
        poll_seconds: float = 30.0,
        unknown_after: int = 2,
        max_per_channel: int = 5,
        max_total: int = 500,
        lease: Lease | None = None,
    ) -> None:
        self.board = board
        self.store = store
        self.outbox = outbox
        self.clock = clock
        self.poll_seconds = poll_seconds
        # Caps: every stalker is a post per change; chat input must not grow them unbounded.
        self.max_per_channel, self.max_total = max_per_channel, max_total
        self.steady = Steady(unknown_after)
        self.stalkers = StalkerSet()
        self.polls = 0
        self._fanouts: set[asyncio.Task[None]] = set()
        self._undelivered: dict[StalkerKey, tuple[str, int]] = {}
        # A poll's marks carry the lease's token and are written only while it still holds,
        # so a superseded leader posts nothing (None: the only instance).
        self.lease = lease

    async def resync(self) -> None:
        """Replace the stalkers in memory by the stored ones (with several instances, the
        others add and remove stalkers too)."""
        fresh = StalkerSet()
        for stalker in await self.store.all():
            fresh.put(stalker)
        self.stalkers = fresh

    async def load(self) -> None:
        for stalker in await self.store.all():
            self.stalkers.put(stalker)
        if len(self.stalkers):
            log.info("resuming %d status stalkers", len(self.stalkers))

    def commands(self) -> list[CommandSpec]:
        return [
            CommandSpec(
                ("status", "stalk"),
                "post here whenever the status changes, until !status unstalk",
                self.stalk,
                (
                    Arg(
                        "interval",
                        "at most one post per interval (e.g. 30s, 5m; default and minimum: "
                        "the poll interval)",
                        required=False,
                    ),
                ),
                priority=Priority.STATUS,
                examples=("status stalk", "status stalk 5m"),
            ),
            CommandSpec(("status", "unstalk"), "stop posting status changes here", self.unstalk),
            CommandSpec(
                ("status", "stalkers"), "the channels stalking the status", self.show_stalkers
            ),
        ]

    # -- commands ----------------------------------------------------------------------------

    async def stalk(self, call: Call) -> Reply:
        interval = self._interval(call.text("interval"), call.prefix)
        e = call.event
        key = (e.platform, e.channel, e.thread or "")
        existing = self.stalkers.get(key)
        if existing is not None:
            updated = replace(existing, interval=interval)
            await self.store.put(updated)
            self.stalkers.put(updated)
            return Reply(
                text=f"Already stalking here; now posting changes at most every {_human(interval)}."
            )
        self._check_caps(e.platform, e.channel, call.prefix)
        overview = await self.board.overview()
        now = self.clock.now().timestamp()
        stalker = Stalker(
            *key,
            interval=interval,
            fingerprint=fingerprint(overview),
            verdict=overview.verdict.value,
            posted_at=now,
            created_at=now,
            created_by=e.actor.display,
        )
        await self.store.put(stalker)  # durable before we say so
        self.stalkers.put(stalker)
        shown = render(overview)
        every = _human(max(interval, self.poll_seconds))
        note = (
            f"Stalking: I check every {_human(self.poll_seconds)} and post here when this "
            f"changes (at most every {every}). Stop with {call.prefix}status unstalk."
        )
        return replace(shown, text=f"{shown.text}\n\n{note}")

    def _in_channel(self, platform: str, channel: str) -> list[Stalker]:
        return [s for s in self.stalkers if (s.platform, s.channel) == (platform, channel)]

    def _check_caps(self, platform: str, channel: str, prefix: str) -> None:
        if len(self._in_channel(platform, channel)) >= self.max_per_channel:
            raise UsageError(
                f"this channel and its threads already have {self.max_per_channel} status "
                "stalkers (status.max_stalkers_per_channel)",
                hint=f"{prefix}status unstalk outside a thread stops them all",
            )
        if len(self.stalkers) >= self.max_total:
            raise UsageError(
                f"{self.max_total} channels already stalk the status (status.max_stalkers)",
                hint=f"see {prefix}status stalkers",
            )

    async def unstalk(self, call: Call) -> Reply:
        """In a thread: that thread's stalker. Outside one: every stalker of the channel,
        its threads' included (on a platform where every post starts a thread, a top-level
        unstalk must still be able to stop them)."""
        e = call.event
        if e.thread:
            keys = (
                [(e.platform, e.channel, e.thread)]
                if self.stalkers.get((e.platform, e.channel, e.thread))
                else []
            )
        else:
            keys = [s.key for s in self._in_channel(e.platform, e.channel)]
        if not keys:
            where = "this thread" if e.thread else "this channel"
            raise NotFound(f"{where} is not stalking the status")
        for key in keys:
            await self.store.delete(key)
            self.stalkers.remove(key)
        more = f" ({len(keys)} stalkers, threads included)" if len(keys) > 1 else ""
        return Reply(text=f"Stopped stalking the status here{more}.")

    async def show_stalkers(self, call: Call) -> Reply:
        all_ = list(self.stalkers)
        if not all_:
            return Reply(
                text=f"Nobody is stalking the status. Start with {call.prefix}status stalk."
            )
        lines = []
        for s in all_[:_LIST_MAX]:
            where = f"{s.platform}:{s.channel}" + (f" (thread {s.thread})" if s.thread else "")
            lines.append(
                f"{where}: every {_human(s.interval)}, last told {s.verdict}, by {s.created_by}"
            )
        if len(all_) > _LIST_MAX:
            lines.append(f"…and {len(all_) - _LIST_MAX} more")
        return Reply(title=f"{len(all_)} stalking the status", text="\n".join(lines))

    def _interval(self, raw: str | None, prefix: str) -> float:
        if raw is None:
            return self.poll_seconds
        m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smh]?)", raw.strip().lower())
        if m is None:
            raise UsageError(
                f"interval must look like 30s, 5m or 1h (got {raw!r})",
                hint=f"usage: {prefix}status stalk [interval]",
            )
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
        if seconds < self.poll_seconds:
            raise UsageError(
                f"the shortest interval is {_human(self.poll_seconds)} (status.stalk_seconds)"
            )
        if seconds > _MAX_INTERVAL:
            raise UsageError("the longest interval is 24h")
        return seconds

    # -- the shared poll ---------------------------------------------------------------------

    async def poll(self) -> PollResult:
        """Read every source once and post to each stalker whose last post differs."""
        if not len(self.stalkers):
            return PollResult(read=False)  # nobody to tell: do not even read the sources
        # the lease token this poll writes under, read once (ha/fence.py)
        _, fence = read_fence(self.lease)
        self.polls += 1
        readings = await self.board.readings()
        steady = self.steady.apply(readings)
        got = tuple(readings)
        if steady is None:
            log.debug("status poll: a source is failing, not yet for %d polls", self.steady.after)
            return PollResult(read=False, readings=got)
        overview = combine(steady)
        fp = fingerprint(overview)
        now = self.clock.now().timestamp()
        due = self.stalkers.due(fp, now)
        if not due:
            return PollResult(read=True, fingerprint=fp, readings=got)
        verdict = overview.verdict.value
        # Persisted first: a restart must not post it again. If this write fails, nothing
        # changed in memory either, and the next poll tries again.
        try:
            await self.store.mark([(fp, verdict, now, s.key) for s in due], fence=fence)
        except Superseded:
            log.warning("status poll: the lease moved to another instance; not posting")
            return PollResult(read=True, fingerprint=fp)
        posts = []
        for stalker in due:
            current = self.stalkers.get(stalker.key)
            if current is None:
                continue  # unstalked while we were writing
            was = current.verdict
            self.stalkers.mark(current, fp, verdict, now)
            posts.append(_Post(current, _change(overview, was), was))
        task = asyncio.get_running_loop().create_task(
            self._fan_out(posts, fp), name=f"status-fanout:{fp[:8]}"
        )
        self._fanouts.add(task)
        task.add_done_callback(self._fanouts.discard)
        log.info("status is %s; posting to %d stalkers", verdict, len(posts))
        return PollResult(read=True, posted=len(posts), fingerprint=fp, readings=got)

    async def _fan_out(self, posts: list[_Post], fp: str) -> None:
        results = await asyncio.gather(
            *(self.outbox.send(p.stalker.destination, p.reply) for p in posts),
            return_exceptions=True,
        )
        retry: list[_Post] = []
        for post, result in zip(posts, results, strict=True):
            key = post.stalker.key
            if result is not None and not isinstance(result, BaseException):
                self._undelivered.pop(key, None)
                continue
            last_fp, misses = self._undelivered.get(key, (fp, 0))
            misses = misses + 1 if last_fp == fp else 1
            self._undelivered[key] = (fp, misses)
            current = self.stalkers.get(key)
            if misses > _RETRIES or current is not post.stalker or current.fingerprint != fp:
                continue  # a destination gone for good is not retried every poll forever
            retry.append(post)
        if not retry:
            return
        # Not delivered: forget what we "told" them, so the next poll tries again.
        entries = []
        for post in retry:
            s = post.stalker
            self.stalkers.mark(s, "", post.was, s.posted_at)
            entries.append(("", post.was, s.posted_at, s.key))
        await self.store.mark(entries)
        log.warning("status change not delivered to %d stalkers; retrying next poll", len(retry))

    async def wait_posted(self, timeout: float | None = None) -> None:
        """Wait for the fan-outs in flight (tests, benchmarks, shutdown); past `timeout`,
        cancel them (shutdown must not wait on a platform that is down)."""
        pending = set(self._fanouts)
        if not pending:
            return
        _, still = await asyncio.wait(pending, timeout=timeout)
        for task in still:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


def _change(overview: Overview, was: str) -> Reply:
    reply = render(overview)
    now = overview.verdict.value
    if was and was != now:
        head = f"Status changed: {now} (was {was})"
    else:
        head = f"Status: {now} (firing alerts changed)"
    icon = (reply.title or "").split(" ", 1)[0]
    return replace(reply, title=f"{icon} {head}", priority=Priority.STATUS)


def _human(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"
