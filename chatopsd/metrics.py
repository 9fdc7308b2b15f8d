"""Prometheus metrics: counted by a bus middleware, read from live state at scrape time.

Off by default. When configured they go to a file for node_exporter's textfile collector
(written atomically every `metrics.interval_seconds`) or to a loopback-only / Unix-socket HTTP
listener. Never a public port: config refuses any other listen address.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import math
import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from chatopsd.core.context import Call
from chatopsd.core.messages import Reply
from chatopsd.core.outcome import Outcome, outcome_of

if TYPE_CHECKING:
    from aiohttp import web
    from prometheus_client.metrics_core import Metric

    from chatopsd.config import MetricsSection
    from chatopsd.core.bus import Next
    from chatopsd.health import HealthView
    from chatopsd.scheduler import Scheduler

log = logging.getLogger("chatopsd.metrics")
command_log = logging.getLogger("chatopsd.command")

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """What the bus counts, in plain dicts: cheap on the per-command path, and prometheus-client
    is only imported when something asks for the exposition (metrics are off by default)."""

    def __init__(self) -> None:
        self.commands: Counter[tuple[str, str]] = Counter()  # (platform, command)
        self.rate_limited: Counter[str] = Counter()  # platform
        self.pages: Counter[str] = Counter()  # outcome: sent | failed
        # command -> per-bucket counts (same order as LATENCY_BUCKETS, then +Inf), sum
        self.latency: dict[str, tuple[list[int], list[float]]] = {}
        self._view: HealthView | None = None

    def _observe(self, command: str, seconds: float) -> None:
        counts, total = self.latency.setdefault(command, ([0] * (len(LATENCY_BUCKETS) + 1), [0.0]))
        counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        total[0] += seconds

    async def middleware(self, call: Call, nxt: Next) -> list[Reply]:
        """Counts the command and writes its one journal line (context, outcome, duration)."""
        # Unknown commands share one label: user typos must not grow the series without bound.
        command = call.spec.name if call.spec is not None else "unknown"
        pages = call.spec is not None and call.spec.pages and call.error is None
        self.commands[(call.event.platform, command)] += 1
        started = time.perf_counter()
        outcome = Outcome.OK
        try:
            replies = await nxt(call)
            outcome = call.outcome or Outcome.OK
        except BaseException as exc:  # a command cut short at shutdown is not `ok`
            outcome = outcome_of(exc)
            raise
        finally:
            elapsed = time.perf_counter() - started
            self._observe(command, elapsed)
            ev = call.event
            command_log.info(
                "command %r on %s:%s by %s (%s) -> %s in %.0f ms ref=%s",
                call.command,
                ev.platform,
                ev.channel,
                ev.actor.id,
                ev.actor.display,
                outcome,
                elapsed * 1000,
                call.ref,
            )
            if outcome == Outcome.RATE_LIMITED:
                self.rate_limited[call.event.platform] += 1
            if pages and outcome == Outcome.OK:
                self.pages["sent"] += 1
            elif pages and outcome in (Outcome.FAILED, Outcome.ERROR):
                self.pages["failed"] += 1
        return replies

    def attach(self, view: HealthView) -> None:
        """The running daemon (connectors, outbox, jobs), read at scrape time."""
        self._view = view

    def text(self) -> bytes:
        from prometheus_client import CollectorRegistry, generate_latest

        registry = CollectorRegistry()
        registry.register(_CountsCollector(self))
        if self._view is not None:
            registry.register(_StateCollector(self._view))
        return bytes(generate_latest(registry))


class _CountsCollector:
    """The bus's counts as metric families (a collector is anything with collect())."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily

        m = self.metrics
        commands = CounterMetricFamily(
            "chatopsd_commands_received", "Commands received", labels=["platform", "command"]
        )
        for (platform, command), n in sorted(m.commands.items()):
            commands.add_metric([platform, command], n)
        yield commands
        latency = HistogramMetricFamily(
            "chatopsd_command_duration_seconds",
            "Time from dispatch to the handler's answer",
            labels=["command"],
        )
        for command, (counts, total) in sorted(m.latency.items()):
            cumulative, buckets = 0, []
            for bound, n in zip((*LATENCY_BUCKETS, math.inf), counts, strict=True):
                cumulative += n
                buckets.append(("+Inf" if bound == math.inf else repr(bound), cumulative))
            latency.add_metric([command], buckets, total[0])
        yield latency
        limited = CounterMetricFamily(
            "chatopsd_rate_limit_hits", "Commands refused by the rate limit", labels=["platform"]
        )
        for platform, n in sorted(m.rate_limited.items()):
            limited.add_metric([platform], n)
        yield limited
        pages = CounterMetricFamily(
            "chatopsd_pages", "Paging commands by outcome (sent, failed)", labels=["outcome"]
        )
        for outcome, n in sorted(m.pages.items()):
            pages.add_metric([outcome], n)
        yield pages


class _StateCollector:
    def __init__(self, view: HealthView) -> None:
        self.state = view

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily

        app = self.state
        up = GaugeMetricFamily(
            "chatopsd_connector_up", "1 when the connector is connected", labels=["platform"]
        )
        reconnects = CounterMetricFamily(
            "chatopsd_connector_reconnects",
            "Connections lost (each one is retried)",
            labels=["platform"],
        )
        for s in app.supervisors:
            up.add_metric([s.platform], 1.0 if s.health.state.value == "ready" else 0.0)
            reconnects.add_metric([s.platform], s.health.failures)
        yield up
        yield reconnects
        sent = CounterMetricFamily("chatopsd_messages_sent", "Messages posted", labels=["platform"])
        failed = CounterMetricFamily(
            "chatopsd_messages_failed", "Messages given up on", labels=["platform"]
        )
        for platform in sorted(app.outbox.connectors):
            sent.add_metric([platform], app.outbox.sent_by[platform])
            failed.add_metric([platform], app.outbox.failed_by[platform])
        yield sent
        yield failed
        yield GaugeMetricFamily(
            "chatopsd_outbox_depth", "Replies waiting to be sent", value=app.outbox.depth
        )
        now = app.scheduler.clock.now()  # the clock the jobs record their times with
        ages = GaugeMetricFamily(
            "chatopsd_job_last_success_age_seconds",
            "Seconds since each scheduled job last succeeded (NaN: never)",
            labels=["job"],
        )
        pd_age = math.nan
        for name in app.scheduler.jobs:
            last = app.scheduler.last_ok.get(name)
            age = (now - last).total_seconds() if last else math.nan
            ages.add_metric([name], age)
            if name == "pagerduty-refresh":  # (not pagerduty-incidents)
                pd_age = age
        yield ages
        failing = GaugeMetricFamily(
            "chatopsd_job_failing_seconds",
            "Seconds each scheduled job has been failing (0: its last run succeeded)",
            labels=["job", "cause"],
        )
        job_failures = CounterMetricFamily(
            "chatopsd_job_failures", "Failed runs of each scheduled job", labels=["job"]
        )
        for name, health in sorted(app.scheduler.health.items()):
            since = health.failing_since
            failing.add_metric(
                [name, health.cause[:100]], (now - since).total_seconds() if since else 0.0
            )
            job_failures.add_metric([name], health.failures)
        yield failing
        yield job_failures
        if app.loop_lag is not None:
            yield GaugeMetricFamily(
                "chatopsd_event_loop_lag_max_seconds",
                "Largest event-loop lag over the last minute or two: how late a check that "
                "runs every 50 ms ran (something held the loop that long)",
                value=app.loop_lag.largest_lag,
            )
            yield CounterMetricFamily(
                "chatopsd_event_loop_stalls",
                "Times the event loop was held for over 100 ms (each one logged as a warning)",
                value=app.loop_lag.stalls,
            )
        if "pagerduty-refresh" in app.scheduler.health:  # a [pagerduty] section is configured
            yield GaugeMetricFamily(
                "chatopsd_pagerduty_refresh_age_seconds",
                "Seconds since the on-call cache was last refreshed (NaN: never)",
                value=pd_age,
            )


class Exporter:
    """Publishes `Metrics` as configured: a textfile, a loopback listener or a Unix socket."""

    def __init__(self, section: MetricsSection, metrics: Metrics, scheduler: Scheduler) -> None:
        self.cfg, self.metrics, self.scheduler = section, metrics, scheduler
        self._runner: web.AppRunner | None = None
        self.address: str | None = None

    async def start(self) -> None:
        if self.cfg.textfile is not None:
            await self.write_textfile()
            self.scheduler.every(
                "metrics-textfile", self.cfg.interval_seconds, self.write_textfile, run_now=False
            )
        if self.cfg.listen is not None:
            await self._listen(self.cfg.listen)

    async def write_textfile(self) -> None:
        assert self.cfg.textfile is not None
        await asyncio.to_thread(_write_atomic, self.cfg.textfile, self.metrics.text())

    async def _listen(self, listen: str) -> None:
        from aiohttp import web  # only when a listener is configured (start time, idle memory)

        web_app = web.Application()
        web_app.router.add_get("/metrics", self._serve)
        self._runner = web.AppRunner(web_app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site: web.BaseSite
        if listen.startswith("unix:"):
            path = listen[len("unix:") :]
            site = web.UnixSite(self._runner, path)
            await site.start()
            os.chmod(path, 0o660)
            self.address = listen
        else:
            host, _, port = listen.rpartition(":")
            site = web.TCPSite(self._runner, host.strip("[]"), int(port))
            await site.start()
            # Port 0 means "any free port": report the one the kernel chose.
            sockets = getattr(site._server, "sockets", None) or []
            bound = sockets[0].getsockname()[1] if sockets else port
            self.address = f"{host}:{bound}"
        log.info("metrics on %s/metrics", self.address)

    async def _serve(self, request: web.Request) -> web.Response:
        from aiohttp import web

        # 0.0.4: what generate_latest writes and what every Prometheus version reads.
        from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

        return web.Response(
            body=self.metrics.text(), headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4}
        )

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def _write_atomic(path: Path, data: bytes) -> None:
    # node_exporter must never read a half-written file: write aside, then rename.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
