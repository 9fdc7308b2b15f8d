"""A local command as a status source: an argv run without a shell, under a deadline.

The first line of its output is mapped when `output_map` knows it; otherwise the exit code is
(`exit_map`). An unmapped exit code, a missing program or a timeout is UNKNOWN with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence

from chatopsd.features.status.api import Alert, Reading, Verdict

_MAX_OUTPUT = 64 * 1024


class CommandStatus:
    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        timeout: float = 5.0,
        exit_map: Mapping[str, str] | None = None,
        output_map: Mapping[str, str] | None = None,
    ) -> None:
        if not argv:
            raise ValueError("argv must not be empty")
        self.name = name
        self.argv = list(argv)
        self.timeout = timeout
        self.exit_map = {
            int(k): Verdict(v)
            for k, v in (exit_map or {"0": "NORMAL", "1": "DEGRADED", "2": "CRITICAL"}).items()
        }
        self.output_map = {k.strip().lower(): Verdict(v) for k, v in (output_map or {}).items()}

    async def read(self) -> Reading:
        try:
            code, first = await self._run()
        except _Failed as exc:
            return Reading(self.name, Verdict.UNKNOWN, error=str(exc))
        except Exception as exc:  # never raise out of read()
            return Reading(self.name, Verdict.UNKNOWN, error=f"{type(exc).__name__}: {exc}")
        verdict = self.output_map.get(first.lower())
        if verdict is None:
            verdict = self.exit_map.get(code)
        if verdict is None:
            why = f"{self.argv[0]} exited with {code}, which exit_map does not map"
            return Reading(self.name, Verdict.UNKNOWN, error=why + (f": {first}" if first else ""))
        if verdict is Verdict.NORMAL:
            return Reading(self.name, verdict)
        summary = first or f"exit code {code}"
        return Reading(self.name, verdict, (Alert(self.name, verdict, summary, self.name),))

    async def _run(self) -> tuple[int, str]:
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
        except OSError as exc:
            raise _Failed(f"cannot run {self.argv[0]}: {exc.strerror or exc}") from None
        try:
            async with asyncio.timeout(self.timeout):
                assert proc.stdout is not None
                output = await proc.stdout.read(_MAX_OUTPUT)
                # drain the rest so a chatty command cannot block on a full pipe
                while await proc.stdout.read(_MAX_OUTPUT):
                    pass
                code = await proc.wait()
        except TimeoutError:
            raise _Failed(f"{self.argv[0]} did not finish in {self.timeout:g} s") from None
        finally:
            # also on cancellation: never leave a child behind
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        lines = output.decode("utf-8", "replace").strip().splitlines()
        return code, (lines[0].strip()[:200] if lines else "")


class _Failed(Exception):
    pass
