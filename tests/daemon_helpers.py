"""Running the daemon as a user does: a subprocess fed on stdin, its JSON lines read back."""

from __future__ import annotations

import json
import select
import subprocess
import sys
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


def read_json(stream: IO[str], timeout: float = 20.0) -> dict[str, object]:
    ready, _, _ = select.select([stream], [], [], timeout)
    assert ready, f"no answer within {timeout} s"
    line = stream.readline()
    assert line, "daemon closed its output"
    return dict(json.loads(line))
