"""The daemon as a user runs it: a subprocess fed on stdin, killed, restarted."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.daemon_helpers import ROOT, read_json, start


def config(tmp_path: Path, fmt: str = "text") -> Path:
    path = tmp_path / "chatopsd.toml"
    path.write_text(
        f"[chatopsd]\nstate_db = '{tmp_path / 'state.db'}'\n"
        f"[console]\nformat = '{fmt}'\n"
        "[ratelimit]\nper_minute = 6000\nburst = 100\n"
    )
    return path


def send(proc: subprocess.Popen[str], event_id: str, text: str) -> None:
    assert proc.stdin is not None
    proc.stdin.write(json.dumps({"event_id": event_id, "text": text, "actor": "tester"}) + "\n")
    proc.stdin.flush()


def audit_rows(cfg: Path) -> list[dict[str, object]]:
    """The audit log as `chatopsd audit --json` prints it."""
    done = subprocess.run(
        [sys.executable, "-m", "chatopsd", "audit", "--json", "--config", str(cfg)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=True,
    )
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_piped_commands_are_answered_and_the_daemon_exits(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "chatopsd", "run", "--config", str(config(tmp_path))],
        input="!help\n!ic\n!status\n!nope\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "!ic page responders — page everyone on the responder schedules" in out
    # The demo's IC rotation changes every day at 09:00 UTC: whoever is on call, with a phone.
    assert "Incident Commanders on call" in out
    assert re.search(r"\(IC Primary \(demo\), primary, until .*\): \+1 555 01\d\d", out), out
    assert "Status: DEGRADED" in out and "DemoHighLatency" in out
    assert "unknown command !nope" in out
    assert out.index("chatopsd commands") < out.index("Incident Commanders") < out.index("Status")
    assert "chatopsd stopped" in done.stderr


def test_sigkill_loses_no_answered_command_and_replays_are_dropped(tmp_path: Path) -> None:
    cfg = config(tmp_path, "jsonl")
    proc = start(cfg)
    assert proc.stdout is not None
    answered: list[str] = []
    try:
        for i in range(20):
            send(proc, f"ev-{i}", "!help" if i % 2 else "!ic")
            reply = read_json(proc.stdout)
            answered.append(str(reply["reply_to"]))
        for i in range(20, 40):  # in flight when the kill lands
            send(proc, f"ev-{i}", "!ic")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    assert answered == [f"ev-{i}" for i in range(20)]

    audited = {row["event_id"] for row in audit_rows(cfg)}
    assert set(answered) <= audited

    proc = start(cfg)
    assert proc.stdout is not None
    try:
        send(proc, "ev-3", "!help")  # a replay of an answered event: dropped, and said so
        send(proc, "ev-fresh", "!ic")
        dropped = read_json(proc.stdout)
        assert dropped["reply_to"] == "ev-3" and str(dropped["error"]).startswith("no answer")
        reply = read_json(proc.stdout)
        assert reply["reply_to"] == "ev-fresh"
    finally:
        proc.stdin.close()  # type: ignore[union-attr]
        assert proc.wait(timeout=20) == 0
    assert sum(row["event_id"] == "ev-3" for row in audit_rows(cfg)) == 1


def test_sigterm_stops_cleanly(tmp_path: Path) -> None:
    proc = start(config(tmp_path, "jsonl"))
    assert proc.stdout is not None and proc.stderr is not None
    send(proc, "t1", "!ic")
    assert read_json(proc.stdout)["reply_to"] == "t1"
    started = time.monotonic()
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=20) == 0
    assert time.monotonic() - started < 10
    assert "chatopsd stopped" in proc.stderr.read()


def test_bad_jsonl_line_gets_a_clear_message(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "chatopsd", "run", "--config", str(config(tmp_path, "jsonl"))],
        input='not json\n{"text": 5}\n{"text": "!ic", "kind": "weird"}\n{"text": "!ic"}\n',
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    lines = [json.loads(x) for x in done.stdout.splitlines()]
    assert [("error" in x) for x in lines] == [True, True, True, False]
    assert "expected an object with a string 'text'" in lines[1]["error"]
    assert "kind must be one of" in lines[2]["error"]
    assert "Incident Commanders on call" in lines[3]["text"]
