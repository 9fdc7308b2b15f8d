"""`!status` and the stalker against a REAL Alertmanager (Debian's prometheus-alertmanager).

One Alertmanager for the session on 127.0.0.1 (no gossip port: empty cluster address). Each
test labels its alerts with its own `test` label and reads through a `matchers` filter, so
tests do not see each other's alerts.
"""

from __future__ import annotations

import json
import re
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from chatopsd.features.status.api import Verdict
from chatopsd.features.status.sources.alertmanager import AlertmanagerStatus
from tests.conftest import FakeClock, transport
from tests.external import free_port, running
from tests.status_helpers import posts, say, status_app

BINARY = "/usr/bin/prometheus-alertmanager"
pytestmark = [
    pytest.mark.external,
    pytest.mark.skipif(
        shutil.which(BINARY) is None, reason="prometheus-alertmanager is not installed"
    ),
]

CONFIG = """
route:
  receiver: nowhere
  group_wait: 1h
receivers:
  - name: nowhere
inhibit_rules:
  - source_matchers: ['alertname="DatacenterDown"']
    target_matchers: ['severity="warning"']
    equal: ['test']
"""


@pytest.fixture(scope="session")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    work = tmp_path_factory.mktemp("alertmanager")
    (work / "am.yml").write_text(CONFIG)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [
        BINARY,
        f"--config.file={work / 'am.yml'}",
        f"--storage.path={work / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",  # empty: no gossip port
    ]
    with running(argv, f"{url}/-/ready", work / "am.log"):
        yield url


class Am:
    """Posts alerts and silences through Alertmanager's v2 API, all labelled with one test id."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.test = uuid.uuid4().hex[:10]

    @property
    def matcher(self) -> str:
        return f'test="{self.test}"'

    def source(self, **extra: Any) -> dict[str, Any]:
        return {
            "kind": "alertmanager",
            "name": "am",
            "url": self.url,
            "matchers": [self.matcher],
            **extra,
        }

    async def fire(self, name: str, severity: str, summary: str = "", resolve: bool = False):
        now = datetime.now(UTC)
        alert = {
            "labels": {"alertname": name, "severity": severity, "test": self.test},
            "annotations": {"summary": summary or f"{name} firing"},
            "startsAt": (now - timedelta(minutes=1)).isoformat(),
        }
        if resolve:
            alert["endsAt"] = now.isoformat()
        await self._post("/api/v2/alerts", [alert])

    async def silence(self, name: str) -> None:
        now = datetime.now(UTC)
        await self._post(
            "/api/v2/silences",
            {
                "matchers": [
                    {"name": "alertname", "value": name, "isRegex": False, "isEqual": True},
                    {"name": "test", "value": self.test, "isRegex": False, "isEqual": True},
                ],
                "startsAt": now.isoformat(),
                "endsAt": (now + timedelta(hours=1)).isoformat(),
                "createdBy": "chatopsd-tests",
                "comment": "test silence",
            },
        )

    async def _post(self, path: str, body: Any) -> None:
        async with (
            aiohttp.ClientSession() as s,
            s.post(
                self.url + path, data=json.dumps(body), headers={"Content-Type": "application/json"}
            ) as r,
        ):
            assert r.status == 200, await r.text()

    async def states(self) -> dict[str, str]:
        """alertname -> state, as Alertmanager itself says (unfiltered)."""
        async with (
            aiohttp.ClientSession() as s,
            s.get(self.url + "/api/v2/alerts", params={"filter": self.matcher}) as r,
        ):
            return {a["labels"]["alertname"]: a["status"]["state"] for a in await r.json()}


@pytest.fixture
def am(alertmanager: str) -> Am:
    return Am(alertmanager)


async def test_active_alerts_with_severity_mapping(am: Am) -> None:
    async with transport() as session:
        src = AlertmanagerStatus("am", am.url, session, matchers=(am.matcher,))
        r = await src.read()
        assert (r.verdict, r.alerts, r.error) == (Verdict.NORMAL, (), None)
        await am.fire("DiskFilling", "warning")
        r = await src.read()
        assert r.verdict is Verdict.DEGRADED
        assert [(a.name, a.verdict) for a in r.alerts] == [("DiskFilling", Verdict.DEGRADED)]
        assert r.alerts[0].key  # Alertmanager's fingerprint
        await am.fire("ApiDown", "page", "5xx above 50%")
        r = await src.read()
        assert r.verdict is Verdict.CRITICAL
        await am.fire("ApiDown", "page", resolve=True)
        r = await src.read()
        assert r.verdict is Verdict.DEGRADED


async def test_silenced_and_inhibited_alerts_are_ignored(am: Am) -> None:
    async with transport() as session:
        src = AlertmanagerStatus("am", am.url, session, matchers=(am.matcher,))
        await am.fire("NoisyAlert", "critical")
        await am.silence("NoisyAlert")
        # a critical inhibitor that is itself silenced still inhibits the warning
        await am.fire("DatacenterDown", "critical")
        await am.silence("DatacenterDown")
        await am.fire("LatencyHigh", "warning")
        states = await am.states()
        assert states == {
            "NoisyAlert": "suppressed",
            "DatacenterDown": "suppressed",
            "LatencyHigh": "suppressed",
        }
        r = await src.read()
        assert (r.verdict, r.alerts) == (Verdict.NORMAL, ())
        await am.fire("DatacenterDown", "critical", resolve=True)  # inhibition lifts
        r = await src.read()
        assert [a.name for a in r.alerts] == ["LatencyHigh"]


async def test_status_and_stalker_against_alertmanager(
    am: Am, tmp_path: Path, clock: FakeClock
) -> None:
    app, out = await status_app(tmp_path, clock, [am.source()], stalk_seconds=30)
    try:
        [reply] = await say(app, "!status")
        assert reply.title == "✅ Status: NORMAL"
        await say(app, "!status stalk")
        await am.fire("CheckoutErrors", "critical", "checkout 5xx at 12%")
        await am.fire("CheckoutErrors2", "warning")
        await am.silence("CheckoutErrors2")
        [reply] = await say(app, "!status")
        assert reply.title == "🔥 Status: CRITICAL"
        # how long it has been firing, from Alertmanager's startsAt
        assert re.search(
            r"CRITICAL CheckoutErrors: checkout 5xx at 12% \(firing \d+s, am\)", reply.text
        )
        assert "CheckoutErrors2" not in reply.text

        clock.advance(30)
        assert (await app.stalking.poll()).posted == 1
        [post] = await posts(app, out)
        assert post["text"].startswith("🔥 Status changed: CRITICAL (was NORMAL)")
        clock.advance(30)
        assert (await app.stalking.poll()).posted == 0

        await am.fire("QueueBacklog", "critical")  # same verdict, new alert: a change
        clock.advance(30)
        assert (await app.stalking.poll()).posted == 1
        [post] = await posts(app, out)
        assert post["text"].startswith("🔥 Status: CRITICAL (firing alerts changed)")
        assert "2 critical firing" in post["text"]

        await am.fire("CheckoutErrors", "critical", resolve=True)
        await am.fire("QueueBacklog", "critical", resolve=True)
        clock.advance(30)
        assert (await app.stalking.poll()).posted == 1
        [post] = await posts(app, out)
        assert post["text"].startswith("✅ Status changed: NORMAL (was CRITICAL)")
    finally:
        await app.stop()


async def test_alertmanager_down_is_unknown_with_warning(tmp_path: Path, clock: FakeClock) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    source = {"kind": "alertmanager", "name": "am", "url": url}
    app, _ = await status_app(tmp_path, clock, [source])
    try:
        [reply] = await say(app, "!status")
        assert reply.title == "❓ Status: UNKNOWN"
        assert f"⚠ cannot check am: cannot connect to {url}/api/v2/alerts" in reply.text
    finally:
        await app.stop()
