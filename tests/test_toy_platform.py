"""A platform added by following ARCHITECTURE.md's "Add a platform" recipe, nothing else:
its package (tests/toychat/: section, builder, probe, capabilities, translation), its platform
(tests/fakes/toychat.py, in memory) and one registry line, given to the daemon here. Nothing in
chatopsd/ knows Toy Chat, and nothing of ours is patched: the config is composed with the
registry plus Toy Chat, and the daemon builds what that config holds.

A command goes round trip through the real bus, middleware, store and outbox."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from chatopsd import config, doctor
from chatopsd.app import App
from chatopsd.core.capabilities import DIRECT_MESSAGES, INCIDENT_CHANNELS, THREADS
from chatopsd.core.errors import ConfigError
from chatopsd.platforms import PLATFORMS
from tests import toychat
from tests.conftest import FakeClock
from tests.fakes.toychat import ToyServer

TOKEN = "toy-test-token-1"
# The one registry line: chatopsd/platforms.py's list, plus the new package's PLATFORM.
REGISTRY = (*PLATFORMS, toychat.PLATFORM)


def write_config(tmp_path: Path, toy: str) -> Path:
    path = tmp_path / "chatopsd.toml"
    path.write_text(
        "[chatopsd]\n"
        f"state_db = {json.dumps(str(tmp_path / 'state.db'))}\n"
        'timezone = "UTC"\n'
        "[console]\n"
        "enabled = false\n"
        f"[toychat]\n{toy}\n"
    )
    return path


@pytest.fixture
def server() -> Iterator[ToyServer]:
    with ToyServer("room-1", TOKEN) as toy:
        yield toy
    assert toy.violations == []


@pytest.fixture
async def app(tmp_path: Path, server: ToyServer, clock: FakeClock) -> AsyncIterator[App]:
    # the token comes from the environment, like every platform's: nobody listed it
    cfg = config.load(
        write_config(tmp_path, 'room = "room-1"'),
        env={"CHATOPSD_TOYCHAT_TOKEN": TOKEN},
        platforms=REGISTRY,
    )
    daemon = App(cfg, clock=clock)
    await daemon.start()
    try:
        await asyncio.wait_for(daemon.supervisors[0].ready_event.wait(), 10)
        yield daemon
    finally:
        await daemon.stop()


async def test_a_command_goes_round_trip_through_the_real_bus(app: App, server: ToyServer) -> None:
    assert app.config.platforms == ["toychat"] and not app.config.console_enabled
    server.say("!help")
    posted = await server.wait_post(lambda p: "help" in p.text)
    assert posted.channel == "ops" and "*chatopsd commands*" in posted.text
    assert "incident declare" in posted.text  # the whole registry answered, not a stub
    # addressed by a mention, in Toy Chat's own syntax (addressing is core's, given as data)
    server.say("@toybot help ic")
    await server.wait_post(lambda p: "*!ic*" in p.text)
    # the audit trail holds both, as for any platform
    rows = await app.db.fetchall("SELECT platform, command, outcome FROM audit ORDER BY id")
    assert [tuple(r) for r in rows] == [("toychat", "help", "ok")] * 2


async def test_its_capabilities_are_what_its_package_declares(app: App, server: ToyServer) -> None:
    connector: object = app.outbox.connectors["toychat"]
    assert app.capabilities.get("toychat", DIRECT_MESSAGES) is connector
    assert app.capabilities.has("toychat", THREADS)
    assert app.capabilities.get("toychat", INCIDENT_CHANNELS) is None
    # no incident channels on Toy Chat: the incident's home is a thread, as the handler
    # decides from the declared capabilities alone
    server.say('!incident declare --sev 2 "Checkout down"')
    reply = await server.wait_post(lambda p: "declared" in p.text and p.thread is None)
    assert "Incident thread: under the announcement" in reply.text
    status = await server.wait_post(lambda p: "State: declared" in p.text)
    assert status.thread is not None  # posted in the incident's thread


async def test_its_secret_is_found_without_being_listed(tmp_path: Path, server: ToyServer) -> None:
    model = config.with_platforms(REGISTRY)
    assert ("toychat", "token") in config.secret_keys(model)
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "toychat_token").write_text(TOKEN + "\n")
    cfg = config.load(
        write_config(tmp_path, 'room = "room-1"\ntoken = "from-the-file"'),
        env={"CREDENTIALS_DIRECTORY": str(creds)},
        platforms=REGISTRY,
    )
    assert TOKEN in config.secrets_of(cfg)  # the credential won, and is redacted everywhere


async def test_doctor_runs_its_probe(tmp_path: Path, server: ToyServer) -> None:
    cfg = config.load(
        write_config(tmp_path, f'room = "room-1"\ntoken = "{TOKEN}"'), env={}, platforms=REGISTRY
    )
    results = await doctor.run_checks(cfg, env={})
    assert [(r.name, r.ok) for r in results if r.name.startswith("toychat")] == [
        ("toychat token", True)
    ]


def test_its_section_is_checked_and_named_like_any_other(tmp_path: Path) -> None:
    missing = write_config(tmp_path, f'token = "{TOKEN}"\nroom = ""')
    with pytest.raises(ConfigError) as bad:
        config.load(missing, env={}, platforms=REGISTRY)
    assert "toychat.room: String should have at least 1 character" in str(bad.value)
    assert TOKEN not in str(bad.value)
    # without the registry line, the daemon knows no such section
    with pytest.raises(ConfigError, match=r"toychat: unknown key"):
        config.load(missing, env={})
