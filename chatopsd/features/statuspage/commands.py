"""The status page from chat: `!incident publish/unpublish/identified/monitor`, automatic
publication by severity, and the durable queue that sends every call to the page through the
StatusPageProvider port (api.py), in its neutral vocabulary.

Hooked into the incident lifecycle as an `IncidentHook`: ack → identified, `update --public`
→ an incident update with exactly that text, resolve → resolved with the components back to
operational. Internal updates are never sent.

Every call is queued in SQLite first, then sent by one worker: one request per
`min_interval` (Statuspage allows 1/s per key), a "slow down" answer waits for the time the
page asked (or backs off), anything else backs off exponentially. A failed attempt is audited
as failed, said once in the incident's channel, and stays queued; calls of one incident go in
order. A create whose answer was lost is looked up (the provider's `find`) before it is sent
again, so no duplicate.

Several instances on PostgreSQL: every instance queues (the one that handled the
command), only the lease holder sends. The leader looks at the queue every `poll_seconds`
(lease_seconds / 5) besides its own kicks, so it picks up what followers queued. The token
is read when a drain starts; the claim of a call (`note_attempt`, before its request) and the
mark-sent are written only while that token is still the lease's, so a leader paused past its
lease sends nothing, and the next leader resumes the queue with the lost-answer checks above.
Between its claim and its request the worker checks once more that it still leads: the lease
(store/lease.py) ends a leader's own term a quarter lease before anyone may take over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from chatopsd.core.commands import Arg, CommandSpec, Handler
from chatopsd.core.context import Call
from chatopsd.core.errors import UsageError
from chatopsd.core.messages import Inbound, Priority, Reply
from chatopsd.core.outcome import Outcome
from chatopsd.core.ports import AuditEntry, AuditLog, Clock, ReplySink
from chatopsd.core.retry import Backoff
from chatopsd.features.incidents.api import (
    STATUSPAGE_ROLE,
    Change,
    Incident,
    IncidentService,
    touch,
    usage,
)
from chatopsd.features.statuspage import rules as ps
from chatopsd.features.statuspage.api import (
    PageCall,
    PageIncident,
    StatusPageError,
    StatusPageProvider,
)
from chatopsd.features.statuspage.ports import Publications, QueuedCall
from chatopsd.ha.fence import Lease, Superseded, read_fence

log = logging.getLogger("chatopsd.statuspage")

BACKOFF_BASE = 2.0
BACKOFF_CAP = 300.0


def backoff(attempts: int) -> float:
    # The queue's retries are spread by min_interval already: the ceiling, without jitter.
    return Backoff(base=BACKOFF_BASE, cap=BACKOFF_CAP).ceiling(attempts - 1)


def _raw(call: Call, name: str) -> str:
    return call.text(name) or ""


class PublicStatus:
    def __init__(
        self,
        store: Publications,
        incidents: IncidentService,
        provider: StatusPageProvider | None,
        outbox: ReplySink,
        audit: AuditLog,
        clock: Clock,
        *,
        components: Mapping[str, str] | None = None,
        auto_publish: Sequence[str] = (),
        public_title: str = "Service disruption: {service}",
        min_interval: float = 1.0,
        lease: Lease | None = None,
        poll_seconds: float | None = None,
    ) -> None:
        self.store = store
        self.incidents = incidents
        self.provider = provider  # None: no [statuspage] section
        self.outbox = outbox
        self.audit = audit
        self.clock = clock
        self.components = dict(components or {})
        self.auto_publish = frozenset(auto_publish)
        self.public_title = public_title
        self.min_interval = min_interval
        self.lease = lease  # None: the only instance (always leads, nothing to fence)
        # Shared database: how often the leader looks for calls other instances queued.
        self.poll_seconds = poll_seconds
        self._draining = asyncio.Lock()
        self._kick = asyncio.Event()
        self._next_request = 0.0  # monotonic: the key's rate limit, shared by every incident
        self._task: asyncio.Task[None] | None = None

    # -- commands ----------------------------------------------------------------------------

    def commands(self) -> list[CommandSpec]:
        def spec(sub: str, summary: str, handler: Handler, *args: Arg) -> CommandSpec:
            return CommandSpec(
                ("incident", sub),
                summary,
                handler,
                args,
                role=STATUSPAGE_ROLE,
                mutates=True,
                incident_work=True,
                priority=Priority.STATUS,
                effects=True,  # the status page
            )

        rest = Arg("rest", "[INC id] then the text", kind="rest", required=False)
        return [
            spec(
                "publish",
                "publish the incident on the status page (investigating)",
                self.publish,
                Arg(
                    "message",
                    "[INC id] then the public message (quoted: nothing after it)",
                    kind="rest",
                    required=False,
                    last=True,
                ),
                Arg(
                    "title",
                    "the public name (default: statuspage.public_title)",
                    option=True,
                    required=False,
                ),
                Arg(
                    "components",
                    "affected components, a,b (default: its service)",
                    option=True,
                    required=False,
                ),
            ),
            spec(
                "unpublish",
                "stop sending updates to the status page",
                self.unpublish,
                Arg("rest", "[INC id]", kind="rest", required=False),
            ),
            spec(
                "identified", "the cause is known: status page → identified", self.identified, rest
            ),
            spec("monitor", "a fix is out, watching: status page → monitoring", self.monitor, rest),
        ]

    def _need_provider(self) -> StatusPageProvider:
        if self.provider is None:
            raise UsageError(
                "the status page is not configured",
                hint="add a [statuspage] section (api_key, page_id): see docs/statuspage.md",
            )
        return self.provider

    async def publish(self, call: Call) -> Reply:
        self._need_provider()
        incident, message = await self.incidents.find(
            call.event, _raw(call, "message"), usage(call)
        )
        names = [n.strip() for n in (call.text("components") or "").split(",") if n.strip()]
        ids, unknown = ps.components_for(incident, self.components, names)
        if unknown:
            known = ", ".join(sorted(self.components)) or "none configured"
            raise UsageError(
                f"unknown status page component {', '.join(unknown)}",
                hint=f"components (statuspage.components): {known}",
            )
        if not incident.state.open:
            raise UsageError(
                f"{incident.id} is {incident.state.value}; only an open one is published"
            )
        existing = await self.store.get(incident.id)
        if existing is not None:
            state = "was unpublished" if existing.unpublished else "is already published"
            raise UsageError(
                f"{incident.id} {state}", hint="updates: incident update --public TEXT"
            )
        # The internal title is never shown unless someone types it as the public one: only
        # text explicitly given for the public page leaves for it.
        title = (call.text("title") or "").strip()
        name = title or ps.auto_title(self.public_title, incident, self.components)
        await self._start(incident, name, call.event, ids, message or None, "published")
        return Reply(text=f"{incident.id} queued for the status page (investigating).")

    async def _start(
        self,
        incident: Incident,
        name: str,
        event: Inbound,
        components: list[str],
        message: str | None,
        how: str,
    ) -> None:
        await self.store.start(
            incident.id,
            components,
            queued(ps.publish_call(incident, name, components, message)),
            _who(event),
            self.clock.now(),
        )

        def apply(i: Incident, _rest: str) -> tuple[Incident, str, str]:
            return i, "published", f"{how} on the status page"

        await self.incidents.change(event, incident.id, "", apply)
        self.kick()

    async def unpublish(self, call: Call) -> Reply:
        incident, _ = await self.incidents.find(call.event, _raw(call, "rest"), usage(call))
        pub = await self.store.get(incident.id)
        if pub is None or pub.unpublished:
            raise UsageError(f"{incident.id} is not published")
        dropped = await self.store.unpublish(incident.id, self.clock.now())

        def apply(i: Incident, _rest: str) -> tuple[Incident, str, str]:
            return i, "unpublished", "status page updates stopped"

        await self.incidents.change(call.event, incident.id, "", apply)
        more = f" {dropped} queued call(s) dropped." if dropped else ""
        return Reply(
            text=f"{incident.id}: no further status page updates.{more} "
            "The page incident stays as it is (edit it on the page if needed)."
        )

    async def identified(self, call: Call) -> Reply:
        return await self._mark(call, "identified")

    async def monitor(self, call: Call) -> Reply:
        return await self._mark(call, "monitoring")

    async def _mark(self, call: Call, kind: str) -> Reply:
        def apply(i: Incident, note: str) -> tuple[Incident, str, str]:
            return touch(i, "update", self.clock.now()), kind, note or kind

        _, after, _ = await self.incidents.change(
            call.event, _raw(call, "rest"), usage(call), apply
        )
        return Reply(text=f"{after.id}: {kind}.")

    # -- the lifecycle hook ------------------------------------------------------------------

    async def changed(self, change: Change) -> None:
        incident = change.incident
        if change.kind in ("declared", "escalated"):
            await self._severity(change)
            return
        wanted = ps.STATUS_FOR.get(change.kind)
        if wanted is None and change.public is None:
            return
        if self.provider is None:
            if change.public is not None:
                await self._say(
                    incident.id,
                    "No status page is configured ([statuspage]), so the --public text was "
                    "not sent anywhere (docs/statuspage.md says how to set one up).",
                )
            return
        pub = await self.store.get(incident.id)
        if pub is None or pub.unpublished:
            if change.public is not None:
                await self._say(
                    incident.id,
                    f"{incident.id} is not on the status page, so the --public text was not "
                    f"sent. Publish it first: {self.incidents.prefix}incident publish",
                )
            return
        status = pub.wanted
        if wanted is not None and ps.moves_forward(pub.wanted, wanted):
            status = wanted
        elif change.public is None:
            return  # e.g. a late ack after monitoring: nothing to say publicly
        page_call = ps.update_call(status, pub.components, change.public)
        await self.store.queue_update(
            incident.id, status, queued(page_call), _who(change.event), self.clock.now()
        )
        self.kick()

    async def _severity(self, change: Change) -> None:
        """Declared or escalated: publish if the severity says so; if already published, an
        escalation raises the impact and the components' status on the page."""
        incident = change.incident
        if self.provider is None:
            return
        pub = await self.store.get(incident.id)
        if pub is None:
            if incident.sev in self.auto_publish:
                ids, _ = ps.components_for(incident, self.components)
                how = f"auto-published ({incident.sev})"
                # nobody chose to show its internal title: the configured public name
                name = ps.auto_title(self.public_title, incident, self.components)
                await self._start(incident, name, change.event, ids, None, how)
            return
        if change.kind == "escalated" and not pub.unpublished:
            page_call = ps.severity_call(incident, pub.wanted, pub.components)
            await self.store.queue_update(
                incident.id, pub.wanted, queued(page_call), _who(change.event), self.clock.now()
            )
            self.kick()

    async def status_fields(self, incident: Incident) -> Sequence[tuple[str, str]]:
        pub = await self.store.get(incident.id)
        if pub is None:
            return ()
        if pub.unpublished:
            return (("Status page", f"unpublished ({pub.status or 'never shown'})"),)
        shown = f"{pub.status} {pub.shortlink or ''}".strip() if pub.status else "being published"
        pending = await self.store.pending_count(incident.id)
        if pending:
            shown += f" ({pending} queued"
            error = await self.store.last_error(incident.id)
            shown += f"; last attempt failed: {error})" if error else ")"
        return (("Status page", shown),)

    # -- the queue worker --------------------------------------------------------------------

    def kick(self) -> None:
        self._kick.set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="statuspage-queue")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            self._kick.clear()
            try:
                wait = await self.drain()
            except Exception:
                log.exception("status page queue failed; trying again shortly")
                wait = BACKOFF_BASE
            if self.poll_seconds is not None:
                wait = self.poll_seconds if wait is None else min(wait, self.poll_seconds)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), timeout=wait)

    async def drain(self) -> float | None:
        """Send every call that is due, rate limit allowing. Returns seconds until the next
        one is due (None: the queue is empty, or another instance leads and sends)."""
        if self.provider is None:
            return None
        leading, fence = read_fence(self.lease)
        if not leading:
            return None
        async with self._draining:
            try:
                while True:
                    heads = await self.store.heads()
                    if not heads:
                        return None
                    now = self.clock.now()
                    due = [h for h in heads if h.next_at <= now]
                    if not due:
                        return max(0.05, min((h.next_at - now).total_seconds() for h in heads))
                    wait = self._next_request - self.clock.monotonic()
                    if wait > 0:
                        return wait
                    await self._attempt(self.provider, due[0], fence)
            except Superseded:
                log.warning(
                    "status page queue: the lease moved on (token %s superseded); "
                    "this instance sends nothing more",
                    fence,
                )
                return None

    async def _attempt(
        self, provider: StatusPageProvider, call: QueuedCall, fence: int | None
    ) -> None:
        started = self.clock.monotonic()
        self._next_request = started + self.min_interval
        pub = await self.store.get(call.incident_id)
        if pub is None or pub.unpublished:
            await self.store.cancel(call.id, "unpublished", self.clock.now())
            return
        if call.action == "update" and pub.page_incident_id is None:
            await self.store.cancel(
                call.id, "the page incident was never created", self.clock.now()
            )
            return
        if not await self.store.note_attempt(call.id, fence=fence):
            return  # done or cancelled meanwhile (heads were read before)
        if self.lease is not None and not self.lease.leader:
            raise Superseded("the lease lapsed before the request went out")
        page_call = sent_call(call.payload)
        try:
            result = await self._send(provider, call, page_call, pub.page_incident_id)
        except StatusPageError as exc:
            await self._failed(call, exc, started, fence)
            return
        now = self.clock.now()
        status = page_call.status or result.status
        try:
            await self.store.succeeded(call, result.id, result.shortlink, status, now, fence=fence)
        except Superseded:
            # It went out, but whoever leads now owns the queue: it finds the call pending
            # with maybe_done set, sees the page has it, and records and announces it once.
            await self._audit(call, "ok: sent; the next leader records it", started)
            raise
        await self._audit(call, "ok", started)
        link = f" {result.shortlink}" if result.shortlink else ""
        if call.action == "create":
            await self._say(call.incident_id, f"Status page: published ({status}).{link}")
        elif call.attempts > 0:
            await self._say(call.incident_id, f"Status page: {status} update sent after all.{link}")
        await self.incidents.refresh_status(call.incident_id)

    async def _send(
        self,
        provider: StatusPageProvider,
        call: QueuedCall,
        page_call: PageCall,
        page_incident_id: str | None,
    ) -> PageIncident:
        if call.action == "update":
            assert page_incident_id is not None
            if call.maybe_done:
                # An earlier attempt may have posted this update already: a second identical
                # public update would be noise for every subscriber.
                current = await provider.get(page_incident_id)
                if current.latest_update == (page_call.status, page_call.message or ""):
                    return current
            return await provider.update(page_incident_id, page_call)
        if call.maybe_done:
            # An earlier attempt may have created it before its answer was lost (or a crash).
            found = await provider.find(call.incident_id)
            if found is not None:
                return found
        return await provider.create(call.incident_id, page_call)

    async def _failed(
        self, call: QueuedCall, exc: StatusPageError, started: float, fence: int | None
    ) -> None:
        attempts = call.attempts + 1
        if exc.slow_down and exc.retry_after is not None:
            delay = exc.retry_after
        else:
            delay = backoff(attempts)
        if exc.slow_down:
            # the limit is per key: every incident's calls wait
            self._next_request = max(self._next_request, self.clock.monotonic() + delay)
        retry_at = self.clock.now() + timedelta(seconds=delay)
        await self.store.attempt_failed(call.id, str(exc), retry_at, exc.maybe_done, fence=fence)
        await self._audit(call, f"failed: {exc}; retry in {delay:g} s", started)
        log.warning(
            "status page %s for %s failed (attempt %d): %s",
            call.action,
            call.incident_id,
            attempts,
            exc,
        )
        if attempts == 1:
            what = "publish it" if call.action == "create" else "send the update"
            await self._say(
                call.incident_id,
                f"Status page: could not {what} ({exc}). It stays queued and is retried in "
                f"{delay:g} s.",
            )
        await self.incidents.refresh_status(call.incident_id)

    async def _audit(self, call: QueuedCall, outcome: str, started: float) -> None:
        home = await self.incidents.home(call.incident_id)
        page_call = sent_call(call.payload)
        summary = f"{call.incident_id} status={page_call.status}"
        if page_call.message:
            summary += f" message={page_call.message!r}"
        if page_call.components:
            summary += f" components={','.join(page_call.components)}"
        if page_call.severity is not None:
            summary += f" severity=SEV-{page_call.severity}"
        await self.audit.append(
            AuditEntry(
                at=self.clock.now(),
                platform=home.platform if home else "",
                channel=home.channel if home else "",
                thread=home.thread if home else None,
                actor=call.actor,
                actor_name=call.actor_name,
                kind="publish",
                text=summary[:2000],
                command=f"statuspage {call.action}",
                # "failed: <why>" → the closed set's outcome, and the why as its cause
                outcome=Outcome(outcome.partition(": ")[0]),
                duration_ms=round((self.clock.monotonic() - started) * 1000, 3),
                event_id=f"statuspage/{call.id}/{call.attempts + 1}",
                ref=f"sp{call.id}",
                cause=outcome.partition(": ")[2],
            )
        )

    async def _say(self, incident_id: str, text: str) -> None:
        home = await self.incidents.home(incident_id)
        if home is not None:
            self.outbox.enqueue(home.destination, Reply(text=text, priority=Priority.STATUS))


def _who(event: Inbound) -> tuple[str, str]:
    return f"{event.platform}:{event.actor.id}", event.actor.display


def queued(page_call: PageCall) -> dict[str, Any]:
    """A call as the queue stores it."""
    return {"call": page_call.to_json()}


def sent_call(payload: dict[str, Any]) -> PageCall:
    """A queued call, to send. One queued before the queue spoke PageCall holds the request
    body itself, and only Atlassian Statuspage was ever sent those: it knows what it meant."""
    if isinstance(payload.get("call"), dict):
        return PageCall.from_json(payload["call"])
    from chatopsd.features.statuspage.atlassian import call_from_body

    return call_from_body(payload)
