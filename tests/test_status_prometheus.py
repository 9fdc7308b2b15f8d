"""The prometheus source against a REAL Prometheus (Debian's package): instant queries."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator

import pytest

from chatopsd.features.status.api import Verdict
from chatopsd.features.status.sources.prometheus import PrometheusStatus
from chatopsd.httpclient import HttpTransport
from tests.conftest import transport
from tests.external import free_port, running

BINARY = "/usr/bin/prometheus"
pytestmark = [
    pytest.mark.external,
    pytest.mark.skipif(shutil.which(BINARY) is None, reason="prometheus is not installed"),
]


@pytest.fixture(scope="session")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    work = tmp_path_factory.mktemp("prometheus")
    (work / "prometheus.yml").write_text("global:\n  scrape_interval: 1h\nscrape_configs: []\n")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [
        BINARY,
        f"--config.file={work / 'prometheus.yml'}",
        f"--storage.tsdb.path={work / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    with running(argv, f"{url}/-/ready", work / "prometheus.log"):
        yield url


@pytest.fixture
async def session() -> AsyncIterator[HttpTransport]:
    async with transport() as http:
        yield http


async def test_empty_result_is_normal(prometheus: str, session) -> None:
    r = await PrometheusStatus("prom", prometheus, "vector(1) == 2", session).read()
    assert (r.verdict, r.alerts, r.error) == (Verdict.NORMAL, (), None)


async def test_non_empty_result_is_the_configured_verdict(prometheus: str, session) -> None:
    query = 'label_replace(vector(3), "alertname", "QueueBacklog", "", "")'
    r = await PrometheusStatus("prom", prometheus, query, session, firing_verdict="DEGRADED").read()
    assert r.verdict is Verdict.DEGRADED
    assert [(a.name, a.summary) for a in r.alerts] == [("QueueBacklog", "= 3")]


async def test_scalar_and_bad_query(prometheus: str, session) -> None:
    assert (
        await PrometheusStatus("p", prometheus, "scalar(vector(0))", session).read()
    ).verdict is Verdict.NORMAL
    assert (
        await PrometheusStatus("p", prometheus, "scalar(vector(2))", session).read()
    ).verdict is Verdict.CRITICAL
    r = await PrometheusStatus("p", prometheus, "up ==", session).read()
    assert r.verdict is Verdict.UNKNOWN
    assert r.error is not None and r.error.startswith("query failed (bad_data): ")
    assert "parse error" in r.error
