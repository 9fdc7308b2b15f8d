"""Running the daemon as a user does: a subprocess fed on stdin, its JSON lines read back."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import weakref
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent


def start(cfg: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "chatopsd", "run", "--config", str(cfg)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
    )


# One reader thread per output stream, feeding its lines to a queue (None: end of output).
# Waiting on the stream's file descriptor instead (select) would miss lines a buffered text
# stream already read from the pipe along with an earlier one: the descriptor then says
# nothing is ready while the next answer sits in Python's buffer.
_readers: weakref.WeakKeyDictionary[IO[str], queue.Queue[str | None]] = weakref.WeakKeyDictionary()
_readers_lock = threading.Lock()


def _pump(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    try:
        for line in stream:
            lines.put(line)
    except (OSError, ValueError):
        pass  # closed under us: the same as the end of the output
    finally:
        lines.put(None)


def _lines(stream: IO[str]) -> queue.Queue[str | None]:
    with _readers_lock:
        lines = _readers.get(stream)
        if lines is None:
            lines = _readers[stream] = queue.Queue()
            # a daemon thread: a read blocked on a live pipe must not keep the tests alive
            threading.Thread(
                target=_pump, args=(stream, lines), name="daemon-output", daemon=True
            ).start()
        return lines


def read_json(stream: IO[str], timeout: float = 20.0) -> dict[str, object]:
    """The next line the daemon printed, as JSON. Once this is used on a stream, read that
    stream only through it (its reader thread owns the stream)."""
    lines = _lines(stream)
    try:
        line = lines.get(timeout=timeout)
    except queue.Empty:
        raise AssertionError(f"no answer within {timeout} s") from None
    if line is None:
        lines.put(None)  # every later read sees the end too
        raise AssertionError("daemon closed its output")
    return dict(json.loads(line))
