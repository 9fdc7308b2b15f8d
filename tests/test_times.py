"""chatopsd.timezone: every time shown goes through core/times.py in the configured zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from chatopsd import config
from chatopsd.core.errors import ConfigError
from chatopsd.core.times import Times, age
from chatopsd.features.incidents import rules as core
from chatopsd.features.status.api import Alert, Overview, Reading, Verdict
from chatopsd.features.status.commands import render
from chatopsd.features.status.sources.alertmanager import _time

PARIS = Times(ZoneInfo("Europe/Paris"))
AT = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)  # a Tuesday; 09:00 in Paris (CET)


def test_formats_in_the_injected_zone() -> None:
    assert PARIS.hm(AT) == "09:00 CET"
    assert PARIS.day(AT) == "Tue 09:00 CET"
    assert PARIS.full(AT) == "2026-11-24 09:00 CET"
    assert PARIS.full(None) == "-"
    summer = datetime(2026, 7, 1, 8, 0, tzinfo=UTC)
    assert PARIS.hm(summer) == "10:00 CEST"
    assert Times().hm(AT) == "08:00 UTC"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-5, "0s"),
        (45, "45s"),
        (12 * 60, "12m"),
        (3 * 3600 + 5 * 60, "3h 05m"),
        (2 * 86400 + 4 * 3600, "2d 4h"),
    ],
)
def test_age(seconds: int, text: str) -> None:
    assert age(timedelta(seconds=seconds)) == text


def test_incident_times_follow_the_zone() -> None:
    inc = core.declare("INC-2026-0001", "API slow", 2, AT, "ada", "console", "console")
    assert "Declared: 2026-11-24 09:00 CET by ada" in core.announcement(inc, "!", PARIS).plain()
    assert "2026-11-24 08:00 UTC" in core.status(inc, None, AT).plain()


def test_status_says_how_long_each_alert_has_been_firing() -> None:
    alerts = (
        Alert("DiskFull", Verdict.CRITICAL, "", "am", "a", AT - timedelta(hours=2, minutes=5)),
        Alert("DiskFull", Verdict.CRITICAL, "", "am", "b", AT - timedelta(minutes=3)),
        Alert("Latency", Verdict.DEGRADED, "p99", "prom"),  # the source gives no start
    )
    overview = Overview(Verdict.CRITICAL, (Reading("am", Verdict.CRITICAL, alerts),), alerts)
    text = render(overview, now=AT).text
    assert "CRITICAL DiskFull ×2 (firing 2h 05m, am)" in text  # the oldest instance
    assert "DEGRADED Latency: p99 (prom)" in text


def test_alertmanager_start_times_parse() -> None:
    assert _time("2026-11-24T07:55:00.123456789Z") == datetime(
        2026, 11, 24, 7, 55, 0, 123456, tzinfo=UTC
    )
    assert _time("2026-11-24T08:55:00+01:00") == AT - timedelta(minutes=5)
    assert _time("0001-01-01T00:00:00Z") == datetime(1, 1, 1, tzinfo=UTC)
    assert _time("yesterday") is None and _time(None) is None


def test_timezone_key(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[chatopsd]\ntimezone = "Europe/Paris"\n')
    assert config.load(cfg, env={}).chatopsd.zone() == ZoneInfo("Europe/Paris")
    cfg.write_text('[chatopsd]\ntimezone = "Mars/Olympus"\n')
    with pytest.raises(ConfigError, match=r"chatopsd\.timezone: .*IANA"):
        config.load(cfg, env={})
    # default: the host's zone, $TZ first
    assert config.load(None, env={}).chatopsd.zone({"TZ": "Asia/Tokyo"}) == ZoneInfo("Asia/Tokyo")
    assert config.host_zone({}, localtime=tmp_path / "missing") == UTC


def test_pagerduty_cards_follow_the_zone() -> None:
    from chatopsd.features.pagerduty import rules as pd

    inc = pd.PdIncident(
        "Q1",
        7,
        "DB down",
        "acknowledged",
        created_at="2026-11-24T08:00:00Z",
        changed_by="Grace",
        changed_at="2026-11-24T08:05:00Z",
    )
    fields = dict(pd.card(inc, PARIS).fields)
    assert fields["Opened"] == "09:00 CET"
    assert fields["Status"] == "acknowledged by Grace at 09:05 CET"
    assert dict(pd.card(inc).fields)["Opened"] == "08:00 UTC"
