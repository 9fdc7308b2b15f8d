"""Logging to stderr for journald: one line per event, plain or JSON, tokens redacted."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from pathlib import Path

_PLAIN = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class RedactingFormatter(logging.Formatter):
    """Formats, then replaces every known token (message, args and traceback alike)."""

    def __init__(self, secrets: Iterable[str], as_json: bool) -> None:
        super().__init__(_PLAIN)
        self.secrets = sorted({s for s in secrets if len(s) >= 6}, key=len, reverse=True)
        self.as_json = as_json

    def format(self, record: logging.LogRecord) -> str:
        if self.as_json:
            payload = {
                "time": self.formatTime(record),
                "level": record.levelname,
                "logger": record.name,
                "message": record.getMessage(),
            }
            if record.exc_info:
                payload["exception"] = self.formatException(record.exc_info)
            text = json.dumps(payload, ensure_ascii=False)
        else:
            text = super().format(record)
        return self.redact(text)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, "[redacted]")
        return text


def setup(
    level: str = "info", fmt: str = "plain", secrets: Iterable[str] = (), file: Path | None = None
) -> None:
    """`file`: log there instead of stderr (an interactive console keeps its screen for replies)."""
    handler: logging.Handler = (
        logging.StreamHandler(sys.stderr) if file is None else logging.FileHandler(file)
    )
    handler.setFormatter(RedactingFormatter(secrets, fmt == "json"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Library chatter at INFO (every websocket frame, every job run) drowns the useful lines.
    for noisy in ("apscheduler", "discord", "slack_sdk", "aiosqlite", "websockets", "httpx"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def log_file() -> Path | None:
    """The file the logs go to, if not stderr."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            return Path(handler.baseFilename)
    return None


def toggle_debug() -> str:
    """Flip the chatopsd loggers between DEBUG and INFO at runtime (SIGUSR1)."""
    logger = logging.getLogger("chatopsd")
    new = logging.INFO if logger.getEffectiveLevel() <= logging.DEBUG else logging.DEBUG
    logger.setLevel(new)
    return logging.getLevelName(new)
