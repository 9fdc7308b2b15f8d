"""The pure parts of stalking: fingerprints, holding a failing source, the stalker index."""

from __future__ import annotations

import pytest

from chatopsd.config import Config
from chatopsd.core.errors import ConfigError
from chatopsd.features.status.api import Alert, Reading, Verdict, combine
from chatopsd.features.status.stalking_rules import Stalker, StalkerSet, Steady, fingerprint

A = Alert("DiskFull", Verdict.DEGRADED, "90%", "am", "fp1")
B = Alert("ApiDown", Verdict.CRITICAL, "5xx", "am", "fp2")


def fp(*readings: Reading) -> str:
    return fingerprint(combine(readings))


def test_fingerprint_tracks_verdict_alert_set_and_broken_sources() -> None:
    base = fp(Reading("am", Verdict.DEGRADED, (A,)))
    assert base == fp(Reading("am", Verdict.DEGRADED, (A,)))
    # summaries change all the time ("90%" -> "91%"): not a change
    assert base == fp(
        Reading("am", Verdict.DEGRADED, (Alert("DiskFull", A.verdict, "91%", "am", "fp1"),))
    )
    assert base != fp(Reading("am", Verdict.CRITICAL, (A, B)))
    # same verdict, different set of firing alerts: a change
    other = Alert("DiskFull", Verdict.DEGRADED, "", "am", "fp3")
    assert base != fp(Reading("am", Verdict.DEGRADED, (other,)))
    # a source that cannot be read is part of the state, even under a CRITICAL verdict
    crit = fp(Reading("am", Verdict.CRITICAL, (B,)))
    assert crit != fp(
        Reading("am", Verdict.CRITICAL, (B,)), Reading("x", Verdict.UNKNOWN, error="down")
    )
    # order of alerts/readings does not matter
    assert fp(Reading("am", Verdict.CRITICAL, (A, B))) == fp(
        Reading("am", Verdict.CRITICAL, (B, A))
    )


def test_steady_holds_until_n_failures() -> None:
    good = Reading("am", Verdict.DEGRADED, (A,))
    bad = Reading("am", Verdict.UNKNOWN, error="HTTP 502")
    steady = Steady(after=3)
    assert steady.apply([bad]) is None  # nothing to hold yet: wait
    assert steady.apply([good]) == [good]
    assert steady.apply([bad]) == [good]
    assert steady.apply([bad]) == [good]
    assert steady.apply([bad]) == [bad]  # third failure in a row
    assert steady.apply([good]) == [good]
    assert steady.apply([bad]) == [good]  # the count starts again
    assert Steady(after=1).apply([bad]) == [bad]


def _s(channel: str, fprint: str, at: float = 0, interval: float = 30) -> Stalker:
    return Stalker("slack", channel, "", interval, fprint, "NORMAL", at, at, "ada")


def test_stalker_set_groups_by_fingerprint() -> None:
    stalkers = StalkerSet()
    for i in range(5):
        stalkers.put(_s(f"c{i}", "old"))
    stalkers.put(_s("late", "old", at=100, interval=120))
    assert len(stalkers) == 6
    assert stalkers.due("old", 100) == []
    due = stalkers.due("new", 100)
    assert sorted(s.channel for s in due) == [f"c{i}" for i in range(5)]  # "late": too soon
    for s in due:
        stalkers.mark(s, "new", "CRITICAL", 100)
    assert stalkers.due("new", 130) == []
    assert [s.channel for s in stalkers.due("new", 219)] == ["late"]  # 1 s slack for jitter
    assert stalkers.remove(("slack", "late", "")) is not None
    assert stalkers.remove(("slack", "late", "")) is None
    assert stalkers.due("new", 10_000) == []


def test_config_checks_sources() -> None:
    def load(sources: list[dict[str, object]]) -> Config:
        return Config.model_validate({"status": {"sources": sources}})

    am = {"kind": "alertmanager", "name": "am", "url": "http://127.0.0.1:9093"}
    with pytest.raises(ValueError, match="two sources share the name 'am'"):
        load([am, am])
    with pytest.raises(ValueError, match="exit codes"):
        load([{"kind": "command", "name": "c", "argv": ["true"], "exit_map": {"zero": "NORMAL"}}])
    with pytest.raises(ValueError, match="argv"):
        load([{"kind": "command", "name": "c", "argv": []}])
    assert load([am]).status.sources[0].severity_map["page"] == "CRITICAL"


def test_config_error_names_the_key(tmp_path) -> None:
    from chatopsd.config import load

    path = tmp_path / "c.toml"
    path.write_text('[[status.sources]]\nkind = "prometheus"\nname = "p"\nurl = "http://x"\n')
    with pytest.raises(ConfigError, match=r"status.sources\[0\].query: required key is missing"):
        load(path)
