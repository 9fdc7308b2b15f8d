"""The test rig's own parts: the one wait helper, and the unit/integration/system markers."""

from __future__ import annotations

import asyncio
import itertools
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from chatopsd.core.capabilities import DIRECT_MESSAGES, INCIDENT_CHANNELS
from tests.conftest import level_of
from tests.rig import CHATS, PLATFORMS, platforms_with
from tests.waiting import eventually


async def test_eventually_returns_what_it_waited_for() -> None:
    count = itertools.count()
    assert await eventually(lambda: next(count) >= 3 and "third") == "third"


async def test_eventually_retries_an_assertion_then_names_it_when_it_gives_up() -> None:
    seen = []

    def check() -> bool:
        seen.append(1)
        assert len(seen) > 2, "not yet"
        return True

    assert await eventually(check) is True
    with pytest.raises(AssertionError, match=r"the thing: not met within 0\.05 s") as failed:
        await eventually(lambda: False, timeout=0.05, what="the thing")
    assert failed.value.__cause__ is None

    def never() -> bool:
        raise AssertionError("still 3 rows")

    with pytest.raises(AssertionError) as failed:
        await eventually(never, timeout=0.05)
    assert "still 3 rows" in str(failed.value.__cause__)


async def test_eventually_awaits_a_coroutine_check() -> None:
    flag = asyncio.Event()
    asyncio.get_running_loop().call_soon(flag.set)

    async def is_set() -> bool:
        return flag.is_set()

    assert await eventually(is_set) is True


def test_every_platform_of_the_rig_has_its_chat() -> None:
    assert {"slack", "discord", "mattermost"} <= set(PLATFORMS) <= set(CHATS)
    for name, chat in CHATS.items():
        assert chat.name == name == chat.platform.name and chat.person and chat.channel
    # a scenario runs where the platform's package declares what it needs, the toy included
    assert platforms_with(DIRECT_MESSAGES) == ["slack", "discord", "mattermost", "toychat"]
    assert platforms_with(INCIDENT_CHANNELS) == ["slack", "mattermost"]


def _item(function: Any, fixtures: dict[str, Any] | None = None, marker: str = "") -> Any:
    defs = {name: [SimpleNamespace(func=f)] for name, f in (fixtures or {}).items()}
    return SimpleNamespace(
        function=function,
        _fixtureinfo=SimpleNamespace(names_closure=list(defs), name2fixturedefs=defs),
        get_closest_marker=lambda name: name == marker or None,
    )


def _pure() -> None:
    assert sorted([2, 1]) == [1, 2]


async def _fake_server() -> None:
    server: Any = None
    await server.start()


def _process(cfg: Path) -> None:
    import subprocess

    subprocess.run([sys.executable, "-m", "chatopsd", "run", "--config", str(cfg)], check=True)


def test_the_level_of_a_test_is_read_from_what_it_touches() -> None:
    assert level_of(_item(_pure)) == "unit"
    assert level_of(_item(_pure, {"server": _fake_server})) == "integration"  # via a fixture
    assert level_of(_item(_fake_server)) == "integration"
    assert level_of(_item(_process)) == "system"
    assert level_of(_item(_pure, marker="external")) == "system"


def test_this_module_is_marked(request: pytest.FixtureRequest) -> None:
    assert request.node.get_closest_marker("unit") is not None
    assert request.node.get_closest_marker("system") is None
