"""What the benches that start the daemon as its own process share: its config file written
from tables, and its resident memory read from /proc."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def toml(tables: dict[str, dict[str, Any]]) -> str:
    """A config file of flat tables (JSON's strings, numbers and lists are TOML's too)."""
    lines: list[str] = []
    for name, table in tables.items():
        lines.append(f"[{name}]")
        lines.extend(f"{key} = {json.dumps(value)}" for key, value in table.items())
    return "\n".join(lines) + "\n"


def rss_kib(pid: int) -> int:
    """Process `pid`'s resident set (VmRSS), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")
