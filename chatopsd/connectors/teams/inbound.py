"""One relayed HTTP request from the Bot Service, from bytes to an answer (the HTTP status
policy every Teams bot needs to get right).

  1. Cheap checks before any cryptography: the path must be the messaging endpoint (404),
     the method POST (405), the body at most `max_body_bytes` (413), JSON by its content type
     (415) and by its content (400).
  2. Authentication (auth.py): 401 for no or a bad token, 403 for a good token about
     something this bot refuses (another tenant, channel, serviceUrl).
  3. From here on the answer is 200, whatever happens: Teams backs off delivery for hours
     after repeated 5xx, and a bug of ours or a busy database must not cause that. A failure
     is logged and counted instead. The activity is translated (events.py) and `admit`ted
     (deduplication by activity id, the conversation reference recorded); an activity that
     is not admitted (a redelivery, or another instance took it) is answered and dropped.
  4. Work is acknowledged first and done after: a message is answered 200 at once and
     `submit` runs once the answer is written. An invoke (a card button) needs its result in
     the answer, within `invoke_deadline_seconds` (Teams gives about 5 s): `submit` is awaited
     that long; if it is slower the answer says "Working on it…" and `late` gets the result
     when it comes (the connector then updates the card).

The pipeline knows nothing of the bus or the store: the connector passes `translate`, `admit`,
`submit` and `late`, so wiring it is a few lines.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from chatopsd.connectors.teams import events, render
from chatopsd.connectors.teams.auth import AuthError, Claims
from chatopsd.connectors.teams.config import TeamsSection
from chatopsd.connectors.teams.relay import RelayRequest, RelayResponse

log = logging.getLogger("chatopsd.teams.inbound")

Json = dict[str, Any]
WORKING = "Working on it…"
FAILED = "That did not work: an internal error, logged for the operators."
ADMIT_DEADLINE = 10.0  # the Bot Service gives up after 10 to 15 s


class Authenticator(Protocol):
    async def authenticate(
        self, authorization: str | None, *, service_url: str, channel_id: str, tenant_id: str
    ) -> Claims: ...


Translate = Callable[[object], events.Translated]
Admit = Callable[[events.Translated], Awaitable[bool]]
# For an invoke: the invoke's answer body (render.invoke_message / invoke_card), or None.
Submit = Callable[[events.Translated], Awaitable[Json | None]]
Late = Callable[[events.Translated, Json | None], Awaitable[None]]


class InboundPipeline:
    def __init__(
        self,
        cfg: TeamsSection,
        *,
        auth: Authenticator,
        translate: Translate,
        admit: Admit,
        submit: Submit,
        late: Late,
        admit_deadline: float = ADMIT_DEADLINE,
    ) -> None:
        self.cfg = cfg
        self.auth = auth
        self.translate = translate
        self.admit = admit
        self.submit = submit
        self.late = late
        self.admit_deadline = admit_deadline
        self.counts: Counter[str] = Counter()  # outcome -> requests (metrics, tests)
        self._tasks: set[asyncio.Task[Any]] = set()

    async def handle(self, request: RelayRequest) -> RelayResponse:
        started = asyncio.get_running_loop().time()
        refused = self._precheck(request)
        if refused is not None:
            return refused
        try:
            activity = json.loads(request.body)
        except (ValueError, RecursionError):
            return self._refuse(400, "bad_json")
        if not isinstance(activity, dict):
            return self._refuse(400, "not_an_object")
        envelope = events.envelope(activity)
        named = events.tenants(activity)
        # No tenant, or two that disagree: "" matches no configured tenant (403).
        tenant = next(iter(named)) if len(named) == 1 else ""
        try:
            await self.auth.authenticate(
                request.headers.get("Authorization"),
                service_url=envelope.service_url,
                channel_id=envelope.channel_id,
                tenant_id=tenant,
            )
        except AuthError as exc:
            log.info("teams: request refused (%s): %s", exc.status, exc.reason)
            return self._refuse(exc.status, f"auth_{exc.status}")
        # Authenticated: 200 from here on, whatever happens.
        try:
            return await self._accepted(activity, started)
        except Exception:
            log.exception("teams: handling an authenticated activity failed")
            self.counts["failed"] += 1
            return RelayResponse(200)

    def _precheck(self, request: RelayRequest) -> RelayResponse | None:
        path = request.target.split("?", 1)[0]
        if path != self.cfg.endpoint_target:
            return self._refuse(404, "not_found")
        if request.method != "POST":
            response = self._refuse(405, "method")
            response.headers["Allow"] = "POST"
            return response
        if len(request.body) > self.cfg.max_body_bytes:
            return self._refuse(413, "too_large")
        media = request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        if media != "application/json":
            return self._refuse(415, "media_type")
        return None

    def _refuse(self, status: int, outcome: str) -> RelayResponse:
        self.counts[outcome] += 1
        return RelayResponse(status)

    async def _accepted(self, activity: Json, started: float) -> RelayResponse:
        try:
            translated = self.translate(activity)
        except events.MalformedActivity as exc:
            log.warning("teams: malformed activity answered 200 and dropped: %s", exc)
            self.counts["malformed"] += 1
            return RelayResponse(200)
        try:
            admitted = await asyncio.wait_for(self.admit(translated), self.admit_deadline)
        except Exception as exc:
            log.error(
                "teams: activity %s not recorded (%s); dropped",
                translated.envelope.id[:64],
                type(exc).__name__,
            )
            self.counts["admit_failed"] += 1
            return RelayResponse(200)
        if not admitted:
            self.counts["not_admitted"] += 1
            return RelayResponse(200)
        self.counts["accepted"] += 1
        if translated.invoke is not None:
            return await self._invoke(translated, started)
        return RelayResponse(200, after=lambda: self._spawn(self.submit(translated), "work"))

    async def _invoke(self, translated: events.Translated, started: float) -> RelayResponse:
        work = self._spawn(self.submit(translated), "invoke")
        left = started + self.cfg.invoke_deadline_seconds - asyncio.get_running_loop().time()
        answer: Json | None
        try:
            answer = await asyncio.wait_for(asyncio.shield(work), max(left, 0.0))
        except TimeoutError:
            self.counts["invoke_late"] += 1
            work.add_done_callback(lambda done: self._finish_late(translated, done))
            answer = render.invoke_message(WORKING)
        except Exception:
            log.exception("teams: an invoke's handler failed")
            answer = render.invoke_message(FAILED)
        if answer is None:
            return RelayResponse(200)
        body = json.dumps(answer, separators=(",", ":")).encode()
        return RelayResponse(200, {"Content-Type": "application/json; charset=utf-8"}, body)

    def _finish_late(self, translated: events.Translated, done: asyncio.Task[Any]) -> None:
        if done.cancelled():
            return
        if done.exception() is not None:
            result: Json | None = render.invoke_message(FAILED)
        else:
            result = done.result()
        self._spawn(self.late(translated, result), "invoke-late")

    def _spawn(self, coro: Awaitable[Any], what: str) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        task.set_name(f"teams-{what}")
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.error("teams: %s failed: %s: %s", task.get_name(), type(exc).__name__, exc)
            self.counts["work_failed"] += 1

    async def close(self) -> None:
        """Cancel the work in hand (the daemon is stopping) and wait for it to end."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
