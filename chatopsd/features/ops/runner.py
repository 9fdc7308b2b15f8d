"""Validate arguments, fill the argv template, run the process without a shell.

Why this shape: the only defence against injection that cannot be talked around is to never
hand text to a shell. Values are checked against a full-match pattern or a choice list before
anything starts, and a value only ever replaces `{name}` inside ONE argv element, so `; rm -rf /`,
`$(...)` or a newline stay inert characters of a single argument even if a pattern lets them by.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from chatopsd.core.errors import Unavailable, UsageError

# Letters, digits and ._/@+=- ; no ":" (user@host:/path, scheme:...) and no ".." path
# segment (x/../../etc/shadow). A command's own `patterns` entry may allow either.
DEFAULT_ARG_PATTERN = r"(?!(?:.*/)?\.\.(?:/|$))[A-Za-z0-9][A-Za-z0-9._/@+=-]{0,127}"
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Variables the child must never see: our tokens arrive through these.
_SECRET_ENV_PREFIXES = ("CHATOPSD_", "CREDENTIALS_DIRECTORY")


@dataclass(frozen=True, slots=True)
class ArgRule:
    name: str
    pattern: str | None = None
    choices: tuple[str, ...] = ()

    def check(self, value: str) -> str:
        """The accepted value (a choice in its configured spelling), or UsageError."""
        if _CONTROL.search(value):
            raise UsageError(f"{self.name} must not contain control characters or newlines")
        if value.startswith("-"):
            # the target program could read it as an option (--upload-pack=..., -rf)
            raise UsageError(f"{self.name} must not start with '-' (got {value!r})")
        if self.choices:
            match = next((c for c in self.choices if c.lower() == value.lower()), None)
            if match is None:
                raise UsageError(
                    f"{self.name} must be one of {', '.join(self.choices)} (got {value!r})"
                )
            return match
        pattern = self.pattern or DEFAULT_ARG_PATTERN
        if re.fullmatch(pattern, value) is None:
            raise UsageError(f"{self.name} {value!r} is not allowed (must match {pattern})")
        return value


def validate(rules: Sequence[ArgRule], values: Mapping[str, object]) -> dict[str, str]:
    """Check every argument; all must pass before anything runs."""
    checked: dict[str, str] = {}
    for rule in rules:
        raw = values.get(rule.name)
        if raw is None:
            raise UsageError(f"missing <{rule.name}>")
        checked[rule.name] = rule.check(str(raw))
    return checked


def render(template: Sequence[str], values: Mapping[str, str]) -> list[str]:
    """Fill each argv element on its own; the element count never changes."""

    def fill(match: re.Match[str]) -> str:
        return values[match.group(1)]

    return [_PLACEHOLDER.sub(fill, element) for element in template]


@dataclass(frozen=True, slots=True)
class RunResult:
    exit_code: int | None
    duration: float
    output: str
    dropped_chars: int
    timed_out: bool


class _Tail:
    """The last `limit` characters of the output, and how many were dropped before them."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._data = bytearray()
        self.dropped = 0
        self.version = 0

    def add(self, chunk: bytes) -> None:
        self._data += chunk
        self.version += 1
        excess = len(self._data) - 4 * self.limit  # bytes: a char is at most 4
        if excess > 0:
            del self._data[:excess]
            self.dropped += excess

    def text(self) -> tuple[str, int]:
        text = self._data.decode("utf-8", errors="replace")
        cut = max(0, len(text) - self.limit)
        return text[cut:], self.dropped + cut


Progress = Callable[[str], Awaitable[None]]


def child_env(extra: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SECRET_ENV_PREFIXES)}
    env.update(extra)
    return env


async def run_argv(
    argv: Sequence[str],
    *,
    timeout: float,
    max_output: int = 3000,
    env: Mapping[str, str] | None = None,
    on_progress: Progress | None = None,
    progress_interval: float = 2.0,
    kill_grace: float = 5.0,
) -> RunResult:
    """Run argv in its own process group; on timeout or cancellation the whole group dies."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # its own process group, so a timeout kills children too
            env=dict(env) if env is not None else None,
        )
    except OSError as exc:
        raise Unavailable(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
    tail = _Tail(max_output)
    assert proc.stdout is not None
    stdout = proc.stdout

    async def pump() -> None:
        while chunk := await stdout.read(4096):
            tail.add(chunk)

    async def report() -> None:
        assert on_progress is not None
        shown = 0
        while True:
            await asyncio.sleep(progress_interval)
            if tail.version != shown:
                shown = tail.version
                await on_progress(tail.text()[0])

    reader = loop.create_task(pump(), name=f"ops-output:{proc.pid}")
    ticker = loop.create_task(report(), name=f"ops-progress:{proc.pid}") if on_progress else None
    timed_out = False
    try:
        try:
            async with asyncio.timeout(timeout):
                await proc.wait()
        except TimeoutError:
            timed_out = True
            await _kill_group(proc, kill_grace)
        # A child left behind in the group may hold the pipe open: give it a moment, then kill.
        done, _ = await asyncio.wait({reader}, timeout=1.0)
        if not done:
            _signal_group(proc.pid, signal.SIGKILL)
            await asyncio.wait({reader}, timeout=1.0)
    except BaseException:
        await asyncio.shield(_kill_group(proc, 0.0))
        raise
    finally:
        for task in (reader, ticker):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
    output, dropped = tail.text()
    return RunResult(
        exit_code=None if timed_out else proc.returncode,
        duration=loop.time() - started,
        output=output,
        dropped_chars=dropped,
        timed_out=timed_out,
    )


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


async def _kill_group(proc: asyncio.subprocess.Process, grace: float) -> None:
    """SIGTERM the group, SIGKILL it after `grace` seconds, and reap the leader."""
    _signal_group(proc.pid, signal.SIGTERM)
    if proc.returncode is None and grace > 0:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await proc.wait()
    _signal_group(proc.pid, signal.SIGKILL)
    await proc.wait()
