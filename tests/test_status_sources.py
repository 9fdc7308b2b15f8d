"""Each status source kind against a real server/process: good answers and every failure."""

from __future__ import annotations

import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chatopsd.features.status.api import Verdict
from chatopsd.features.status.sources.alertmanager import AlertmanagerStatus
from chatopsd.features.status.sources.command import CommandStatus
from chatopsd.features.status.sources.http import HttpStatus, dig
from chatopsd.features.status.sources.prometheus import PrometheusStatus
from chatopsd.httpclient import HttpTransport
from tests.conftest import transport
from tests.fakes.monitoring import FakeMonitoring
from tests.fixtures.monitoring import fake  # noqa: F401 (fixtures)


@pytest.fixture
async def session() -> AsyncIterator[HttpTransport]:
    async with transport() as http:
        yield http


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- prometheus ---------------------------------------------------------------------------


async def test_prometheus_empty_result_is_normal(fake: FakeMonitoring, session) -> None:
    src = PrometheusStatus("prom", fake.url, 'up{job="api"} == 0', session)
    reading = await src.read()
    assert reading.verdict is Verdict.NORMAL and reading.error is None and not reading.alerts
    assert fake.queries[-1]["query"] == 'up{job="api"} == 0'
    assert fake.queries[-1]["timeout"] == "4500ms"  # Prometheus refuses "4.5s"


async def test_prometheus_non_empty_result_maps_to_configured_verdict(
    fake: FakeMonitoring, session
) -> None:
    fake.prom_result = [
        {"metric": {"__name__": "up", "job": "api", "instance": "a:9"}, "value": [1, "0"]},
        {"metric": {"__name__": "up", "job": "api", "instance": "b:9"}, "value": [1, "0"]},
    ]
    src = PrometheusStatus("prom", fake.url + "/", "up == 0", session, firing_verdict="DEGRADED")
    reading = await src.read()
    assert reading.verdict is Verdict.DEGRADED
    assert [a.name for a in reading.alerts] == ["up", "up"]
    assert "instance=a:9" in reading.alerts[0].summary
    assert len({a.key for a in reading.alerts}) == 2


async def test_prometheus_query_error_is_explained(fake: FakeMonitoring, session) -> None:
    fake.prom_error = 'parse error at char 4: unexpected "=="'
    reading = await PrometheusStatus("prom", fake.url, "up ==", session).read()
    assert reading.verdict is Verdict.UNKNOWN
    assert reading.error == 'query failed (bad_data): parse error at char 4: unexpected "=="'


async def test_prometheus_scalar(fake: FakeMonitoring, session) -> None:
    fake.prom_type, fake.prom_result = "scalar", [1, "0"]  # type: ignore[assignment]
    src = PrometheusStatus("prom", fake.url, "scalar(x)", session)
    assert (await src.read()).verdict is Verdict.NORMAL
    fake.prom_result = [1, "3"]  # type: ignore[list-item]
    assert (await src.read()).verdict is Verdict.CRITICAL


# -- http -----------------------------------------------------------------------------------


async def test_http_field_path_and_default_words(fake: FakeMonitoring, session) -> None:
    src = HttpStatus("page", fake.url + "/api/v2/status.json", "status.indicator", session)
    assert (await src.read()).verdict is Verdict.NORMAL
    fake.doc = {"status": {"indicator": "minor"}}
    r = await src.read()
    assert r.verdict is Verdict.DEGRADED
    assert r.alerts[0].summary == "status.indicator = minor"
    fake.doc = {"status": {"indicator": "MAJOR"}}
    assert (await src.read()).verdict is Verdict.CRITICAL


async def test_http_value_map_and_list_index(fake: FakeMonitoring, session) -> None:
    fake.doc = {"components": [{"state": "green"}, {"state": "sad"}]}
    src = HttpStatus(
        "c", fake.url + "/x", "components.1.state", session, value_map={"sad": "DEGRADED"}
    )
    assert (await src.read()).verdict is Verdict.DEGRADED
    assert dig({"a": [1, 2]}, ["a", "-1"]) == 2
    assert dig({"a": [1, 2]}, ["a", "5"]) is None
    assert dig({"a": "s"}, ["a", "b"]) is None


async def test_http_unknown_value_and_missing_field(fake: FakeMonitoring, session) -> None:
    fake.doc = {"status": {"indicator": "purple"}}
    src = HttpStatus("page", fake.url + "/s", "status.indicator", session)
    r = await src.read()
    assert r.verdict is Verdict.UNKNOWN
    assert r.error == "status.indicator = 'purple' is not a known state (add it to value_map)"
    src2 = HttpStatus("page", fake.url + "/s", "status.nope", session)
    r2 = await src2.read()
    assert r2.verdict is Verdict.UNKNOWN and "no field 'status.nope'" in (r2.error or "")
    src3 = HttpStatus("p", fake.url + "/s", "status.indicator", session, default_verdict="DEGRADED")
    assert (await src3.read()).verdict is Verdict.DEGRADED


@pytest.mark.parametrize(
    ("mode", "expect"),
    [
        ("500", "HTTP 500 from http://127.0.0.1:"),
        ("429", "HTTP 429 from"),
        ("malformed", "did not answer JSON"),
        ("html", "did not answer JSON"),
        ("drop", "ServerDisconnectedError"),
        ("slow", "no answer from"),
    ],
)
async def test_http_failures_become_unknown_with_reason(
    fake: FakeMonitoring, session, mode: str, expect: str
) -> None:
    fake.mode, fake.slow_seconds = mode, 0.8
    for src in (
        HttpStatus("h", fake.url + "/s", "status.indicator", session, timeout=0.3),
        PrometheusStatus("p", fake.url, "up", session, timeout=0.3),
        AlertmanagerStatus("am", fake.url, session, timeout=0.3),
    ):
        r = await src.read()
        assert r.verdict is Verdict.UNKNOWN, (src, r)
        assert expect in (r.error or ""), (src, r.error)


async def test_connection_refused_is_named(session) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    r = await AlertmanagerStatus("am", url, session, timeout=1).read()
    assert r.verdict is Verdict.UNKNOWN
    assert r.error is not None and r.error.startswith(f"cannot connect to {url}/api/v2/alerts")


# -- alertmanager parsing (the real server is in test_status_alertmanager.py) ---------------


async def test_alertmanager_shapes(fake: FakeMonitoring, session) -> None:
    def alert(name: str, sev: str | None, state: str = "active") -> dict[str, object]:
        labels = {"alertname": name} | ({"severity": sev} if sev else {})
        return {
            "labels": labels,
            "annotations": {"summary": f"{name} is bad"},
            "fingerprint": f"fp-{name}",
            "status": {"state": state, "silencedBy": [], "inhibitedBy": []},
        }

    fake.alerts = [
        alert("DiskFull", "warning"),
        alert("Quiet", "critical", "suppressed"),
        alert("Fresh", "critical", "unprocessed"),
        alert("NoSeverity", None),
    ]
    r = await AlertmanagerStatus("am", fake.url, session).read()
    assert r.verdict is Verdict.DEGRADED
    assert sorted(a.name for a in r.alerts) == ["DiskFull", "NoSeverity"]
    assert fake.queries[-1] == {
        "active": "true",
        "silenced": "false",
        "inhibited": "false",
        "unprocessed": "false",
    }
    fake.alerts.append(alert("Paging", "page"))
    r = await AlertmanagerStatus("am", fake.url, session).read()
    assert r.verdict is Verdict.CRITICAL  # the worst severity wins ("page" -> CRITICAL)
    fake.alerts = {"not": "a list"}  # type: ignore[assignment]
    r = await AlertmanagerStatus("am", fake.url, session).read()
    assert r.verdict is Verdict.UNKNOWN and "expected a JSON list" in (r.error or "")


# -- command ---------------------------------------------------------------------------------


def _py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


async def test_command_exit_codes_map() -> None:
    assert (await CommandStatus("c", _py("")).read()).verdict is Verdict.NORMAL
    r = await CommandStatus("c", _py("print('replica lag 40s'); raise SystemExit(1)")).read()
    assert r.verdict is Verdict.DEGRADED and r.alerts[0].summary == "replica lag 40s"
    r = await CommandStatus("c", _py("raise SystemExit(2)")).read()
    assert r.verdict is Verdict.CRITICAL and r.alerts[0].summary == "exit code 2"
    r = await CommandStatus("c", _py("print('weird'); raise SystemExit(9)")).read()
    assert r.verdict is Verdict.UNKNOWN
    assert r.error is not None and "exited with 9, which exit_map does not map: weird" in r.error


async def test_command_output_map_wins() -> None:
    src = CommandStatus("c", _py("print('  DOWN ')"), output_map={"down": "CRITICAL"})
    assert (await src.read()).verdict is Verdict.CRITICAL


async def test_command_no_shell(tmp_path: Path) -> None:
    # a shell would expand the glob and run the second command; argv must not
    marker = tmp_path / "pwned"
    src = CommandStatus("c", ["/bin/echo", "*;", "touch", str(marker)])
    r = await src.read()
    assert r.verdict is Verdict.NORMAL
    assert not marker.exists()


async def test_command_missing_and_timeout(tmp_path: Path) -> None:
    r = await CommandStatus("c", [str(tmp_path / "nope")]).read()
    assert r.verdict is Verdict.UNKNOWN
    assert r.error == f"cannot run {tmp_path / 'nope'}: No such file or directory"
    pidfile = tmp_path / "pid"
    code = f"import os,time; open({str(pidfile)!r},'w').write(str(os.getpid())); time.sleep(30)"
    r = await CommandStatus("c", _py(code), timeout=0.5).read()
    assert r.verdict is Verdict.UNKNOWN and r.error is not None
    assert r.error.endswith("did not finish in 0.5 s")
    pid = int(pidfile.read_text())
    with pytest.raises(ProcessLookupError):  # killed and reaped, not left behind
        import os

        os.kill(pid, 0)


async def test_credentials_in_url_never_shown(session) -> None:
    port = _closed_port()
    src = HttpStatus("h", f"http://monitor:s3cret-pass@127.0.0.1:{port}/s", "a", session)
    r = await src.read()
    assert r.error is not None and "s3cret-pass" not in r.error
    assert r.error.startswith(f"cannot connect to http://127.0.0.1:{port}/s")


async def test_one_alert_read_by_two_sources_counts_once(fake: FakeMonitoring, session) -> None:
    """Two Alertmanagers of one cluster (here: the same server twice) report the same alert,
    with the same fingerprint: `!status` says "1 critical", naming both sources. An alert
    each source has alone still counts for each, and two keyless alerts stay two."""
    from chatopsd.features.status.api import Alert, Reading, combine
    from chatopsd.features.status.commands import render

    fake.alerts = [
        {
            "labels": {"alertname": "ApiDown", "severity": "critical"},
            "annotations": {"summary": "5xx"},
            "fingerprint": "fp-api",
            "startsAt": "2026-11-23T11:50:00Z",
            "status": {"state": "active", "silencedBy": [], "inhibitedBy": []},
        }
    ]
    one = await AlertmanagerStatus("am-1", fake.url, session).read()
    two = await AlertmanagerStatus("am-2", fake.url, session).read()
    overview = combine([one, two])
    assert len(overview.alerts) == 1
    text = render(overview).text
    assert text.splitlines()[0] == "1 critical firing", text
    assert "CRITICAL ApiDown: 5xx (am-1, am-2)" in text
    assert "×2" not in text

    other = Alert("DiskFull", Verdict.DEGRADED, "90%", "am-2", "fp-disk")
    keyless = [Alert("check", Verdict.CRITICAL, "exit 2", f"cmd-{i}") for i in (1, 2)]
    overview = combine(
        [
            one,
            Reading("am-2", Verdict.CRITICAL, (*two.alerts, other)),
            Reading("c", Verdict.CRITICAL, tuple(keyless)),
        ]
    )
    assert render(overview).text.splitlines()[0] == "3 critical, 1 degraded firing"
