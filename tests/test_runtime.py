"""The runtime contract: the service registry between features, what an installed feature's
parts are found by, the registry's reactions and mention fallback, the reload's key paths,
and the explicit, ordered feature list."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatopsd import config as config_mod
from chatopsd.core.commands import CommandSpec, Registry
from chatopsd.core.context import Call
from chatopsd.core.messages import Actor, Inbound, Reply
from chatopsd.features import FEATURES
from chatopsd.features.incidents.api import INCIDENTS
from chatopsd.runtime import Feature, ServiceKey, Services, find_part
from tests.conftest import make_config


async def _noop(_call: Call) -> Reply:
    return Reply(text="ok")


def test_a_service_is_provided_once_and_found_by_its_key() -> None:
    services = Services()
    key: ServiceKey[list[str]] = ServiceKey("names")
    assert services.find(key) is None  # not configured: the user says so, nothing breaks
    with pytest.raises(LookupError, match="no feature provides 'names'"):
        services.get(key)
    names = ["ada"]
    services.provide(key, names)
    assert services.get(key) is names and services.find(key) is names
    with pytest.raises(ValueError, match="provided twice"):
        services.provide(key, ["grace"])
    # keys are told apart by identity, not by name
    assert services.find(ServiceKey[list[str]]("other")) is None


def test_parts_are_found_by_their_type() -> None:
    class Board:
        pass

    board = Board()
    features = [Feature("a"), Feature("b", parts=["text", board])]
    assert find_part(features, Board) is board
    assert find_part(features, str) == "text"
    with pytest.raises(LookupError, match="no installed feature has a int"):
        find_part(features, int)


async def test_the_registry_holds_reactions_in_order_and_one_mention_fallback() -> None:
    registry = Registry()
    seen: list[str] = []

    async def first(event: Inbound) -> str | None:
        seen.append("first")
        return None

    async def second(event: Inbound) -> str | None:
        seen.append("second")
        return "help"

    registry.add_reaction(first)
    registry.add_reaction(second)
    event = Inbound("chat", "C1", Actor("U1"), "eyes", kind="reaction")
    assert [await r(event) for r in registry.reactions] == [None, "help"]
    assert seen == ["first", "second"]
    spec = CommandSpec(("intent",), "plain language", _noop)
    assert registry.mention_fallback is None
    registry.set_mention_fallback(spec)
    assert registry.mention_fallback is spec
    with pytest.raises(ValueError, match="mention fallback"):
        registry.set_mention_fallback(spec)


def test_a_reload_applies_exactly_the_key_paths_given(tmp_path: Path) -> None:
    running = make_config(tmp_path, approvals={"expire_seconds": 60}, ratelimit={"burst": 3})
    new = make_config(
        tmp_path,
        approvals={"expire_seconds": 120},
        ratelimit={"burst": 9},
        incidents={"pulse_minutes": 5},
    )
    applied = config_mod.with_keys(running, new, ["ratelimit", "approvals.expire_seconds"])
    assert applied.ratelimit.burst == 9 and applied.approvals.expire_seconds == 120
    assert applied.incidents.pulse_minutes == running.incidents.pulse_minutes
    assert config_mod.differences(applied, new) == ["incidents.pulse_minutes"]
    # a key inside a section one of them lacks is left alone
    assert running.pagerduty is None
    assert config_mod.with_keys(running, new, ["pagerduty.users"]).pagerduty is None


def test_the_feature_list_is_explicit_and_ordered() -> None:
    names = [install.__module__.rsplit(".", 1)[-1] + "." + install.__name__ for install in FEATURES]
    assert names == [
        "help.install",
        "incidents.install",
        "statuspage.install",
        "followups.install",
        "incidents.install_bridge",
        "approvals.install",
        "ops.install",
        "intents.install",
        "status.install",
        "pagerduty.install",
        "paging.install",
        "oncall.install",
    ]


async def test_every_feature_installs_and_the_incident_service_is_provided(
    tmp_path: Path,
) -> None:
    from chatopsd.app import App

    app = App(make_config(tmp_path, console={"enabled": False}))
    await app.start()
    try:
        installed = [f.name for f in app.features]
        assert installed[:12] == [
            "help",
            "incidents",
            "statuspage",
            "followups",
            "bridge",
            "approvals",
            "ops",
            "intents",
            "status",
            "pagerduty",
            "paging",
            "oncall",
        ]
        assert installed[-1] == "kernel"  # the kernel's own jobs, registered the same way
        assert app.services.get(INCIDENTS) is not None
        # every job a feature declared is scheduled under its name
        declared = {job.name for f in app.features for job in f.jobs}
        assert declared <= set(app.jobs) and declared <= set(app.scheduler.jobs)
        assert "status-poll" in declared and "pagerduty-refresh" not in declared
    finally:
        await app.stop()
