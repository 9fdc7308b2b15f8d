"""Helpers for status tests: an App whose console output is captured as JSON lines."""

from __future__ import annotations

import io
import itertools
import json
from pathlib import Path
from typing import Any

from chatopsd.app import App, Io
from chatopsd.core.messages import Actor, Inbound, Reply
from chatopsd.features.status.stalkers import Stalkers
from tests.conftest import FakeClock, make_config

_ids = itertools.count(1)


async def status_app(
    tmp_path: Path, clock: FakeClock, sources: list[dict[str, Any]], **status: Any
) -> tuple[App, io.StringIO]:
    out = io.StringIO()
    cfg = make_config(
        tmp_path,
        console={"format": "jsonl"},
        status={"sources": sources, **status},
        ratelimit={"per_minute": 100000, "burst": 100000},
    )
    app = App(cfg, clock=clock, io=Io(stdin=io.StringIO(""), stdout=out))
    await app.start()
    return app, out


async def say(
    app: App, text: str, channel: str = "ops", thread: str | None = None, actor: str = "ada"
) -> list[Reply]:
    n = next(_ids)
    event = Inbound(
        platform="console",
        channel=channel,
        actor=Actor(actor, actor),
        text=text,
        event_id=f"t-{n}",
        thread=thread,
        message_id=f"m-{n}",
    )
    return await app.bus.handle(event)


async def posts(app: App, out: io.StringIO) -> list[dict[str, Any]]:
    """Stalker posts written since the last call (reply_to None: not answers to a command)."""
    await app.part(Stalkers).wait_posted()
    await app.outbox.flush(5)
    lines = out.getvalue().splitlines()
    out.seek(0)
    out.truncate()
    found = [json.loads(line) for line in lines if line.strip()]
    return [p for p in found if p.get("reply_to") is None and "text" in p]
