"""What start-up loads: a console-only daemon with no accounts configured must not import the
libraries only platforms, PagerDuty, PostgreSQL or metrics need (start time and idle memory,
bench/bus.py), and the CLI leaves Python's cyclic collector on after it paused it."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from pathlib import Path

import pytest

from chatopsd import cli

ROOT = Path(__file__).resolve().parent.parent

# Imported only when their section (or a typo, or a PagerDuty feature) needs them.
NOT_AT_START = (
    "aiohttp",
    "slack_sdk",
    "discord",
    "asyncpg",
    "prometheus_client",
    "chatopsd.features.pagerduty.client",
    "chatopsd.store.postgres",
    "chatopsd.features.oncall.handoff_rules",  # the handoff logic: PagerDuty's on-call push
    "difflib",  # "did you mean": only for an unknown command
    "chatopsd.features.intents.parser",  # with the first mention the grammar cannot parse
    "chatopsd.features.ops.runner",  # with the first [[commands]] run
)

SCRIPT = """
import io, json, sys
from pathlib import Path
import uvloop
from chatopsd.app import App, Io
from chatopsd.config import load
from chatopsd.core.messages import Actor, Inbound

async def main():
    app = App(load(Path(sys.argv[1])), io=Io(stdin=io.StringIO(""), stdout=io.StringIO()))
    await app.start()
    await app.bus.handle(Inbound("console", "ops", Actor("ada"), "!help", event_id="e1"))
    await app.stop()

uvloop.run(main())
print(json.dumps(sorted(sys.modules)))
"""


# The demo (Config.demo: nothing real configured) runs the PagerDuty feature's own code
# against the in-memory demo PagerDuty, so it loads the client, but never the transport.
DEMO_LOADS = (
    "chatopsd.features.pagerduty.client",
    "chatopsd.features.pagerduty.demo",
    "chatopsd.features.oncall.handoff_rules",
)


def _loaded(tmp_path: Path, config: str) -> set[str]:
    cfg = tmp_path / "chatopsd.toml"
    cfg.write_text(f'[chatopsd]\nstate_db = "{tmp_path / "state.db"}"\n' + config)
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(cfg)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    loaded = set(json.loads(done.stdout.splitlines()[-1]))
    assert "chatopsd.app" in loaded and "chatopsd.features.help.commands" in loaded  # it did start
    return loaded


def test_console_only_daemon_loads_no_platform_or_feature_library(tmp_path: Path) -> None:
    # something real configured (a status source), so no demo
    loaded = _loaded(tmp_path, '[[status.sources]]\nkind = "command"\nargv = ["true"]\n')
    assert "chatopsd.features.pagerduty.demo" not in loaded
    assert sorted(m for m in NOT_AT_START if m in loaded) == []


def test_the_demo_loads_no_platform_library_nor_the_http_transport(tmp_path: Path) -> None:
    loaded = _loaded(tmp_path, "")
    assert sorted(m for m in DEMO_LOADS if m not in loaded) == []  # it is the demo
    assert sorted(m for m in NOT_AT_START if m in loaded and m not in DEMO_LOADS) == []


def test_cli_leaves_the_collector_on(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """main() pauses the collector while it starts; every way out turns it back on."""
    cfg = tmp_path / "chatopsd.toml"
    cfg.write_text(f'[chatopsd]\nstate_db = "{tmp_path / "state.db"}"\n')
    assert gc.isenabled()
    assert cli.main(["check-config", str(cfg)]) == 0
    assert gc.isenabled()
    (tmp_path / "bad.toml").write_text("[chatopsd]\nprefix = ''\n")
    assert cli.main(["check-config", str(tmp_path / "bad.toml")]) == 2
    assert gc.isenabled()
    with pytest.raises(SystemExit):  # argparse exits from inside main
        cli.main(["--version"])
    assert gc.isenabled()
    assert "chatopsd.prefix" in capsys.readouterr().err
