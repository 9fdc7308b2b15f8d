"""An App with operations commands and approval rules, driven through its bus; replies are read
back from its jsonl console. Run targets are small Python scripts that record their argv."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

from chatopsd.app import App, Io
from chatopsd.core.messages import Actor, Inbound
from chatopsd.features.approvals.service import ApprovalService
from tests.conftest import FakeClock, make_config
from tests.waiting import eventually

RECORDER = """
import json, os, sys, time
out = os.environ["OPS_OUT"]
with open(out, "a") as f:
    f.write(json.dumps({"argv": sys.argv[1:], "actor": os.environ.get("CHATOPS_ACTOR"),
                        "leaked": [k for k in os.environ if k.startswith("CHATOPSD_")]}) + "\\n")
mode = sys.argv[1] if len(sys.argv) > 1 else ""
print("hello from", " | ".join(sys.argv[1:]))
if mode == "fail":
    print("something broke", file=sys.stderr)
    sys.exit(3)
if mode == "loud":
    sys.stdout.write("x" * 20000 + "\\nTHE END\\n")
if mode == "hang":
    import subprocess
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    with open(out + ".child", "w") as f:
        f.write(str(child.pid))
    time.sleep(60)
if mode == "wait":
    gate = out + ".gate"
    for _ in range(500):
        if os.path.exists(gate):
            break
        time.sleep(0.01)
"""


def ops_config(tmp_path: Path, **extra: Any) -> Any:
    script = tmp_path / "target.py"
    script.write_text(RECORDER)
    py = sys.executable

    def cmd(name: str, args: list[str], **kw: Any) -> dict[str, Any]:
        return {
            "name": name,
            "args": args,
            "run": [py, str(script), *(f"{{{a}}}" for a in args)],
            **kw,
        }

    raw: dict[str, Any] = {
        "console": {"format": "jsonl"},
        "roles": {
            "lead": ["console:bob", "console:alice"],
            "dba": ["console:dan", "console:erin", "console:bob"],
        },
        "commands": [
            cmd(
                "deploy",
                ["service", "version", "env"],
                patterns={"service": "[a-z][a-z0-9-]{0,30}", "version": r"[0-9]+(\.[0-9]+)*"},
                choices={"env": ["staging", "production"]},
            ),
            cmd("migrate", ["db"]),
            cmd("rollback", ["service"], destructive=True),
            cmd("purge", ["service"], destructive=True),
            cmd("job", ["mode"], timeout_seconds=0.5),
            cmd("slow", ["mode"], max_concurrent=1),
        ],
        "approvals": {
            "rules": [
                {"command": "deploy", "when": {"env": "production"}, "count": 1, "role": "lead"},
                {"command": "migrate", "count": 2, "role": "dba"},
                {"command": "rollback", "count": 0},
                {"command": "slow", "when": {"mode": "gated"}, "count": 1, "role": "lead"},
            ]
        },
    }
    raw.update(extra)
    return make_config(tmp_path, **raw)


class OpsRig:
    def __init__(self, tmp_path: Path, clock: FakeClock, **extra: Any) -> None:
        self.tmp_path = tmp_path
        self.out = io.StringIO()
        self.record = tmp_path / "runs.jsonl"
        self.app = App(
            ops_config(tmp_path, **extra),
            clock=clock,
            io=Io(stdin=io.StringIO(""), stdout=self.out),
        )
        self.clock = clock
        self._n = 0
        self._read = 0

    async def start(self) -> OpsRig:
        await self.app.start()
        return self

    async def stop(self) -> None:
        await self.app.stop()

    def event(self, actor: str, text: str, **kw: Any) -> Inbound:
        self._n += 1
        fields: dict[str, Any] = {"kind": "message", "event_id": f"ev-{id(self)}-{self._n}"}
        fields.update(kw)
        return Inbound(
            platform="console", channel="ops", actor=Actor(actor, actor), text=text, **fields
        )

    async def say(self, actor: str, text: str, **kw: Any) -> list[dict[str, Any]]:
        """Send one event, wait for everything it set off, return the new console lines."""
        await self.app.bus.handle(self.event(actor, text, **kw))
        return await self.settle()

    async def react(self, actor: str, emoji: str, message_id: str) -> list[dict[str, Any]]:
        return await self.say(actor, emoji, kind="reaction", message_id=message_id)

    async def settle(self) -> list[dict[str, Any]]:
        await eventually(lambda: not self.app.bus.in_flight, timeout=10)
        await self.app.outbox.flush(5)
        return self.new_lines()

    def new_lines(self) -> list[dict[str, Any]]:
        lines = self.out.getvalue().splitlines()
        fresh = [json.loads(line) for line in lines[self._read :]]
        self._read = len(lines)
        return fresh

    def runs(self) -> list[dict[str, Any]]:
        if not self.record.exists():
            return []
        return [json.loads(line) for line in self.record.read_text().splitlines()]

    async def pending_id(self) -> str:
        pending = await self.app.part(ApprovalService).store.pending()
        assert len(pending) == 1, pending
        return pending[0].id


def texts(lines: list[dict[str, Any]]) -> str:
    return "\n".join(str(line.get("text", "")) for line in lines)
