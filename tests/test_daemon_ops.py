"""The daemon as a user runs it, with an operations command from a TOML config: a production
deploy waits for approval, the daemon is killed -9, restarted, approved, and runs; the audit
chain then verifies."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from tests.daemon_helpers import ROOT, read_json, start


def write_config(tmp_path: Path) -> Path:
    out = tmp_path / "deploys.txt"
    script = tmp_path / "deploy.py"
    script.write_text(
        "import sys\n"
        f"open({str(out)!r}, 'a').write(' '.join(sys.argv[1:]) + '\\n')\n"
        "print('deployed', *sys.argv[1:])\n"
    )
    cfg = tmp_path / "chatopsd.toml"
    cfg.write_text(
        f"[chatopsd]\nstate_db = '{tmp_path / 'state.db'}'\n"
        "[console]\nformat = 'jsonl'\n"
        "[roles]\nlead = ['console:bob']\n"
        "[[commands]]\n"
        "name = 'deploy'\n"
        "args = ['service', 'version', 'env']\n"
        "patterns = { service = '[a-z]+', version = '[0-9.]+' }\n"
        "choices = { env = ['staging', 'production'] }\n"
        f"run = [{json.dumps(sys.executable)}, {json.dumps(str(script))}, '{{service}}', "
        "'{version}', '--env={env}']\n"
        "timeout_seconds = 20\n"
        "[[approvals.rules]]\n"
        "command = 'deploy'\n"
        "when = { env = 'production' }\n"
        "count = 1\n"
        "role = 'lead'\n"
    )
    return cfg


def say(proc: subprocess.Popen[str], actor: str, event_id: str, text: str) -> None:
    assert proc.stdin is not None
    proc.stdin.write(json.dumps({"event_id": event_id, "text": text, "actor": actor}) + "\n")
    proc.stdin.flush()


def until(proc: subprocess.Popen[str], needle: str) -> dict[str, object]:
    assert proc.stdout is not None
    for _ in range(20):
        line = read_json(proc.stdout)
        if needle in str(line.get("text", "")):
            return line
    raise AssertionError(f"never saw {needle!r}")


def test_approval_survives_kill_9_and_runs_after_restart(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    deploys = tmp_path / "deploys.txt"
    proc = start(cfg)
    try:
        say(proc, "alice", "e1", "!deploy api 1.2 production")
        request = until(proc, "Approval needed")
        rid = re.search(r"request: (\w+)", str(request["text"]))
        assert rid is not None
        assert not deploys.exists()
        proc.kill()  # kill -9: no shutdown, no flush
        proc.wait(10)
        proc = start(cfg)
        say(proc, "alice", "e2", f"!approve {rid.group(1)}")  # her own: refused
        until(proc, "you cannot approve your own request")
        say(proc, "bob", "e3", f"!approve {rid.group(1)}")
        until(proc, "finished OK (exit 0)")
        assert deploys.read_text() == "api 1.2 --env=production\n"
        say(proc, "bob", "e4", "!deploy api '1.2; rm -rf /' staging")
        until(proc, "version '1.2; rm -rf /' is not allowed")
    finally:
        proc.kill()
        proc.wait(10)
    assert deploys.read_text() == "api 1.2 --env=production\n"
    verify = subprocess.run(
        [sys.executable, "-m", "chatopsd", "audit", "verify", "--config", str(cfg)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert verify.returncode == 0, verify.stderr
    assert "audit log OK" in verify.stdout
