"""Start a monitoring binary from Debian's packages on 127.0.0.1 and stop it by PID."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def running(argv: Sequence[str], ready_url: str, log: Path, timeout: float = 15) -> Iterator[int]:
    """Run argv until the block ends; yields its PID once `ready_url` answers 200."""
    with log.open("wb") as out:
        proc = subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"{argv[0]} exited: {log.read_text()}")
                try:
                    with urllib.request.urlopen(ready_url, timeout=1) as resp:
                        if resp.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{argv[0]} not ready in {timeout:g} s: {log.read_text()}")
                time.sleep(0.05)
            yield proc.pid
        finally:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
