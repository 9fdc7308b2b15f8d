"""Metrics: counted through the real bus, exported as Prometheus text that prometheus_client
parses, on a loopback listener, a Unix socket or a textfile; never a public address."""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from chatopsd import config
from chatopsd.app import App, Io
from chatopsd.core.errors import ConfigError
from chatopsd.serve import serve
from tests.chat_sink import ChatSink
from tests.conftest import make_config
from tests.waiting import eventually


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


@pytest.fixture
def short_dir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="met-", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


async def run_daemon(
    tmp_path: Path, metrics: dict[str, object], lines: str, body: Callable[[App], Awaitable[None]]
) -> str:
    """serve() with the console fed `lines` through a pipe kept open until `body` is done."""
    r, w = os.pipe()
    stdout = io.StringIO()
    cfg = make_config(
        tmp_path,
        console={"enabled": True},
        control={"enabled": False},
        metrics=metrics,
        ratelimit={"per_minute": 1, "burst": 3},
    )
    tasks: list[asyncio.Task[None]] = []

    def ready(app: App) -> None:
        async def go() -> None:
            try:
                os.write(w, lines.encode())
                # Until every line was taken as a command and finished, and every answer
                # left the outbox. (Counting printed answers raced: the console reads the
                # next line only after the previous command ended, so "nothing in flight"
                # was also true between two commands; a bounded poll gave up under load.)
                # Each line here is a command; serve()'s timeout below bounds the wait.
                commands = lines.count("\n")
                while sum(app.metrics.commands.values()) < commands or app.bus.in_flight:
                    await asyncio.sleep(0.01)
                assert await app.outbox.flush(10)
                await body(app)
            finally:
                app.stopping.set()

        tasks.append(asyncio.get_running_loop().create_task(go(), name="test-body"))

    # The console's reader thread owns the read end: EOF (closing w) ends it, and the file
    # is left to it; closing it under a blocked read would hang.
    stdin = os.fdopen(r, "r")
    try:
        await asyncio.wait_for(serve(cfg, Io(stdin=stdin, stdout=stdout), on_ready=ready), 20)
        await tasks[0]
    finally:
        os.close(w)
    return stdout.getvalue()


COMMANDS = "!ic\n!ic page\n!nonsense\n!ic\n"  # over the burst of 3: the console is not limited


async def chat_flood(app: App) -> None:
    """A chat user sends 4 commands against the burst of 3: the 4th is rate limited."""
    chat = ChatSink().attach(app)
    for i in range(4):
        await app.bus.handle(chat.event("flood", "!ic", f"flood-{i}"))


async def test_unix_listener_serves_parseable_metrics(tmp_path: Path, short_dir: Path) -> None:
    sock = short_dir / "metrics.sock"
    seen: dict[str, str] = {}

    async def body(app: App) -> None:
        await chat_flood(app)
        connector = aiohttp.UnixConnector(path=str(sock))
        async with (
            aiohttp.ClientSession(connector=connector) as http,
            http.get("http://localhost/metrics") as resp,
        ):
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            seen["text"] = await resp.text()

    await run_daemon(tmp_path, {"listen": f"unix:{sock}"}, COMMANDS, body)
    s = samples(seen["text"])
    console = ("platform", "console")
    assert s[("chatopsd_commands_received_total", (("command", "ic"), console))] == 2
    assert s[("chatopsd_commands_received_total", (("command", "ic page"), console))] == 1
    assert s[("chatopsd_commands_received_total", (("command", "unknown"), console))] == 1
    assert ("chatopsd_rate_limit_hits_total", (console,)) not in s  # the operator
    assert s[("chatopsd_rate_limit_hits_total", (("platform", "mattermost"),))] == 1
    assert s[("chatopsd_pages_total", (("outcome", "sent"),))] == 1
    assert s[("chatopsd_command_duration_seconds_count", (("command", "ic"),))] == 2 + 4
    assert s[("chatopsd_connector_up", (console,))] == 1
    assert s[("chatopsd_connector_reconnects_total", (console,))] == 0
    assert s[("chatopsd_messages_sent_total", (console,))] >= 4
    assert ("chatopsd_outbox_depth", ()) in s
    assert ("chatopsd_job_last_success_age_seconds", (("job", "prune-events"),)) in s
    assert not sock.exists() or sock.is_socket()


async def test_textfile_is_written_atomically(tmp_path: Path) -> None:
    path = tmp_path / "chatopsd.prom"

    async def body(app: App) -> None:
        assert "metrics-textfile" in app.scheduler.jobs
        # written at start, then every interval_seconds (1 s here): wait for a fresh one
        await eventually(lambda: 'command="ic"' in path.read_text(), timeout=3)
        return

    await run_daemon(tmp_path, {"textfile": str(path), "interval_seconds": 1}, COMMANDS, body)
    s = samples(path.read_text())
    assert s[("chatopsd_commands_received_total", (("command", "ic"), ("platform", "console")))]
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".chatopsd.prom")]  # no temp


async def test_tcp_listener_is_loopback_only(tmp_path: Path) -> None:
    from chatopsd.metrics import Exporter

    app = App(make_config(tmp_path, console={"enabled": False}, metrics={"listen": "127.0.0.1:0"}))
    await app.start()
    exporter = Exporter(app.config.metrics, app.metrics, app.scheduler)
    try:
        await exporter.start()
        assert exporter.address is not None and exporter.address.startswith("127.0.0.1:")
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://{exporter.address}/metrics") as resp,
        ):
            text = await resp.text()
        assert "chatopsd_outbox_depth" in {f.name for f in text_string_to_metric_families(text)}
    finally:
        await exporter.close()
        await app.stop()


@pytest.mark.parametrize("listen", ["0.0.0.0:9108", ":9108", "10.0.0.5:9108", "127.0.0.1"])
def test_public_listen_addresses_are_refused(tmp_path: Path, listen: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f'[metrics]\nlisten = "{listen}"\n')
    with pytest.raises(ConfigError, match=r"metrics\.listen: .*no public port"):
        config.load(path, env={})


def test_metrics_are_off_by_default() -> None:
    cfg = config.load(None, env={})
    assert cfg.metrics.textfile is None and cfg.metrics.listen is None


async def test_each_command_is_logged_once_with_context(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="chatopsd.command")
    await run_daemon(tmp_path, {}, COMMANDS, chat_flood)
    lines = [r.getMessage() for r in caplog.records if r.name == "chatopsd.command"]
    assert len(lines) == 4 + 4
    assert lines[0].startswith("command 'ic' on console:") and "-> ok in" in lines[0]
    assert "-> ok in" in lines[3]  # the console is the operator: never rate limited
    assert lines[4].startswith("command 'ic' on mattermost:ops by flood")
    assert "-> rate_limited" in lines[7]
    assert all("ref=" in line for line in lines)
