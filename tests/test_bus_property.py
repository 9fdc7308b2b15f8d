"""Any text typed at the real daemon gets a reply or nothing, never an internal error."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatopsd.app import App, Io
from chatopsd.core.messages import Actor, Inbound
from tests.conftest import FakeClock, make_config


@pytest.fixture(scope="module")
def running(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[asyncio.AbstractEventLoop, App]]:
    loop = asyncio.new_event_loop()
    tmp: Path = tmp_path_factory.mktemp("prop")
    cfg = make_config(tmp, ratelimit={"per_minute": 1e9, "burst": 10**9})
    app = App(cfg, clock=FakeClock(), io=Io(stdin=io.StringIO(""), stdout=io.StringIO()))
    loop.run_until_complete(app.start())
    yield loop, app
    loop.run_until_complete(app.stop())
    loop.close()


words = st.sampled_from(
    [
        "ic",
        "page",
        "responders",
        "who",
        "status",
        "help",
        "stalk",
        "--sev",
        '"',
        "'",
        "\u201c",
        "@chatopsd",
        "!",
        "/",
        "ada",
        "",
        " ",
    ]
)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    text=st.one_of(st.text(max_size=60), st.lists(words, max_size=6).map(" ".join)),
    prefix=st.sampled_from(["!", "@chatopsd ", "/", ""]),
    kind=st.sampled_from(["message", "mention", "slash", "button"]),
)
def test_any_input_gets_an_answer_not_an_internal_error(
    running: tuple[asyncio.AbstractEventLoop, App], text: str, prefix: str, kind: str
) -> None:
    loop, app = running
    event = Inbound("console", "prop", Actor("fuzzer"), prefix + text, kind=kind)  # type: ignore[arg-type]
    replies = loop.run_until_complete(app.bus.handle(event))
    for reply in replies:
        assert not reply.text.startswith("internal error"), (prefix + text, reply.text)
