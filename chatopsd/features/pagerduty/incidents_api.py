"""PagerDuty's incident, user and override endpoints on the shared REST client.

Every write carries `From: <the person's email>`, so PagerDuty's log names whoever clicked,
never the bot. Failures become `Unavailable` (what failed, fit for chat) or `NotFound`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from chatopsd.core.errors import NotFound, Unavailable
from chatopsd.features.pagerduty.client import PagerDutyClient, PagerDutyError, Query
from chatopsd.features.pagerduty.rules import PdIncident, PdUser

_OPEN = (("statuses[]", "triggered"), ("statuses[]", "acknowledged"))


class PagerDutyIncidents:
    def __init__(self, client: PagerDutyClient, *, deadline: float = 8.0) -> None:
        self.client = client
        self.deadline = deadline
        self._users: dict[str, PdUser] = {}  # email -> user, for users that exist

    async def _call(
        self,
        method: str,
        path: str,
        query: Query = (),
        *,
        ids: Sequence[str] = (),
        body: Any = None,
        sender: str | None = None,
    ) -> dict[str, Any]:
        """`path` is a template with `{}` for each of `ids` (client.rest_path)."""
        headers = {"From": sender} if sender else None
        try:
            return await self.client.request(
                method,
                path,
                query,
                ids=ids,
                deadline=self.deadline,
                json_body=body,
                headers=headers,
            )
        except PagerDutyError as exc:
            if exc.status == 404:
                raise NotFound(f"PagerDuty does not know {ids[-1] if ids else path}") from exc
            raise Unavailable(f"PagerDuty: {exc.message}") from exc

    async def _incidents(self, query: list[tuple[str, str]]) -> list[PdIncident]:
        found: list[PdIncident] = []
        offset = 0
        while True:
            page = [*query, ("limit", "100"), ("offset", str(offset))]
            body = await self._call("GET", "/incidents", page)
            items = body.get("incidents")
            if not isinstance(items, list):
                raise Unavailable("PagerDuty sent an incident list without 'incidents'")
            found.extend(incident(i) for i in items if isinstance(i, dict))
            if not body.get("more") or not items:
                return found
            offset += len(items)

    async def open_incidents(self, service_ids: Sequence[str]) -> list[PdIncident]:
        services = [("service_ids[]", s) for s in service_ids]
        return await self._incidents([*_OPEN, *services, ("date_range", "all")])

    async def resolved_since(self, since: datetime, service_ids: Sequence[str]) -> list[PdIncident]:
        services = [("service_ids[]", s) for s in service_ids]
        query = [("since", _iso(since)), ("statuses[]", "resolved"), *services]
        return await self._incidents(query)

    async def get(self, incident_id: str) -> PdIncident:
        body = await self._call("GET", "/incidents/{}", ids=(incident_id,))
        return incident(_obj(body, "incident"))

    async def update(
        self,
        incident_id: str,
        sender: str,
        *,
        status: str | None = None,
        level: int | None = None,
        assignee_ids: Sequence[str] = (),
        resolution: str | None = None,
    ) -> PdIncident:
        change: dict[str, Any] = {"type": "incident_reference"}
        if status is not None:
            change["status"] = status
        if level is not None:
            change["escalation_level"] = level
        if assignee_ids:
            change["assignments"] = [
                {"assignee": {"id": uid, "type": "user_reference"}} for uid in assignee_ids
            ]
        if resolution:
            change["resolution"] = resolution
        body = await self._call(
            "PUT", "/incidents/{}", ids=(incident_id,), body={"incident": change}, sender=sender
        )
        return incident(_obj(body, "incident"))

    async def note(self, incident_id: str, sender: str, text: str) -> None:
        await self._call(
            "POST",
            "/incidents/{}/notes",
            ids=(incident_id,),
            body={"note": {"content": text}},
            sender=sender,
        )

    async def snooze(self, incident_id: str, sender: str, seconds: int) -> PdIncident:
        body = await self._call(
            "POST",
            "/incidents/{}/snooze",
            ids=(incident_id,),
            body={"duration": seconds},
            sender=sender,
        )
        return incident(_obj(body, "incident"))

    async def find_users(self, query: str) -> list[PdUser]:
        body = await self._call("GET", "/users", [("query", query), ("limit", "25")])
        users = body.get("users")
        return [_user(u) for u in users if isinstance(u, dict)] if isinstance(users, list) else []

    async def user(self, user_id: str) -> PdUser:
        body = await self._call("GET", "/users/{}", ids=(user_id,))
        return _user(_obj(body, "user"))

    async def user_by_email(self, email: str) -> PdUser | None:
        key = email.lower()
        if key in self._users:
            return self._users[key]
        found = [u for u in await self.find_users(key) if u.email.lower() == key]
        if not found:
            return None  # not cached: the user may be added to PagerDuty later
        if len(self._users) > 10_000:
            self._users.clear()
        self._users[key] = found[0]
        return found[0]

    async def create(
        self,
        sender: str,
        *,
        service_id: str,
        title: str,
        user_ids: Sequence[str],
        key: str,
    ) -> PdIncident:
        try:
            created, _duplicate = await self.client.create_incident(
                from_email=sender,
                service_id=service_id,
                title=title,
                user_ids=user_ids,
                incident_key=key,
                deadline=self.deadline,
            )
        except PagerDutyError as exc:
            raise Unavailable(f"PagerDuty: {exc.message}") from exc
        return incident(created)

    async def team_policy(self, query: str) -> tuple[str, str] | None:
        """(team name, escalation policy id) of the one team matching, or None."""
        body = await self._call("GET", "/teams", [("query", query), ("limit", "25")])
        teams = [t for t in body.get("teams") or [] if isinstance(t, dict)]
        exact = [t for t in teams if str(t.get("name", "")).lower() == query.lower()]
        teams = exact or teams
        if len(teams) != 1:
            return None
        team_id = str(teams[0].get("id"))
        found = await self._call("GET", "/escalation_policies", [("team_ids[]", team_id)])
        policies = [p for p in found.get("escalation_policies") or [] if isinstance(p, dict)]
        if not policies:
            return None
        return str(teams[0].get("name") or team_id), str(policies[0].get("id"))

    async def create_for_policy(
        self, sender: str, *, service_id: str, title: str, policy_id: str, key: str
    ) -> PdIncident:
        body = {
            "incident": {
                "type": "incident",
                "title": title[:1024],
                "service": {"id": service_id, "type": "service_reference"},
                "urgency": "high",
                "incident_key": key,
                "escalation_policy": {"id": policy_id, "type": "escalation_policy_reference"},
            }
        }
        answer = await self._call("POST", "/incidents", body=body, sender=sender)
        return incident(_obj(answer, "incident"))

    async def on_call(self, schedule_id: str) -> list[tuple[PdUser, str | None]]:
        try:
            rows = await self.client.oncalls([schedule_id], deadline=self.deadline)
        except PagerDutyError as exc:
            raise Unavailable(f"PagerDuty: {exc.message}") from exc
        return [(PdUser(r.user_id, r.user_name, ""), r.until) for r in rows if r.level == 1]

    async def add_override(
        self, schedule_id: str, sender: str, user_id: str, start: datetime, end: datetime
    ) -> str:
        body = {
            "overrides": [
                {
                    "start": _iso(start),
                    "end": _iso(end),
                    "user": {"id": user_id, "type": "user_reference"},
                    "time_zone": "UTC",
                }
            ]
        }
        headers = {"From": sender}
        try:
            answer = await self.client.request(
                "POST",
                "/schedules/{}/overrides",
                (),
                ids=(schedule_id,),
                deadline=self.deadline,
                json_body=body,
                headers=headers,
            )
        except PagerDutyError as exc:
            raise Unavailable(f"PagerDuty: {exc.message}") from exc
        results = answer.get("items")
        first = results[0] if isinstance(results, list) and results else None
        if not isinstance(first, dict) or not isinstance(first.get("override"), dict):
            raise Unavailable("PagerDuty sent no override back")
        if first.get("status") not in (None, 201, 201.0):
            errors = "; ".join(str(e) for e in first.get("errors") or []) or "no detail"
            raise Unavailable(f"PagerDuty refused the override: {errors}")
        return str(first["override"].get("id") or "")

    async def delete_override(self, schedule_id: str, sender: str, override_id: str) -> None:
        await self._call(
            "DELETE",
            "/schedules/{}/overrides/{}",
            ids=(schedule_id, override_id),
            sender=sender,
        )


def incident(raw: dict[str, Any]) -> PdIncident:
    """PagerDuty's incident object → PdIncident (missing parts left empty, never invented)."""
    by = raw.get("last_status_change_by")
    by_name = ""
    if isinstance(by, dict) and by.get("type") in ("user_reference", "user"):
        by_name = str(by.get("summary") or by.get("id") or "")
    elif isinstance(by, dict):
        by_name = str(by.get("summary") or "")
    assignments = [a for a in raw.get("assignments") or [] if isinstance(a, dict)]
    people = [a["assignee"] for a in assignments if isinstance(a.get("assignee"), dict)]
    service = raw.get("service") if isinstance(raw.get("service"), dict) else {}
    assert isinstance(service, dict)
    level = raw.get("escalation_level")
    return PdIncident(
        id=str(raw.get("id") or "?"),
        number=int(raw.get("incident_number") or 0),
        title=str(raw.get("title") or raw.get("summary") or ""),
        status=str(raw.get("status") or "unknown"),
        urgency=str(raw.get("urgency") or ""),
        service_id=str(service.get("id") or ""),
        service=str(service.get("summary") or ""),
        assignees=tuple(str(p.get("summary") or p.get("id")) for p in people),
        assignee_ids=tuple(str(p.get("id")) for p in people),
        url=str(raw.get("html_url") or ""),
        created_at=str(raw.get("created_at") or ""),
        changed_by=by_name,
        changed_at=str(raw.get("last_status_change_at") or ""),
        level=level if isinstance(level, int) else None,
    )


def _user(raw: dict[str, Any]) -> PdUser:
    return PdUser(
        str(raw.get("id")), str(raw.get("name") or raw.get("summary")), str(raw.get("email") or "")
    )


def _obj(body: dict[str, Any], key: str) -> dict[str, Any]:
    value = body.get(key)
    if not isinstance(value, dict):
        raise Unavailable(f"PagerDuty sent an answer without '{key}'")
    return value


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
