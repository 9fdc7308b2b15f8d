"""What an incident looks like on a public status page: pure mappings and request bodies.

Severity sets the impact and the affected components' status; the incident's lifecycle sets
the public status. Nothing internal is ever copied into a body: the only texts sent are the
public name (the incident's title when a person publishes it; for an automatic publication,
which nobody chose to show, `statuspage.public_title`) and the text a person gave
`--public` or `publish`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from chatopsd.features.incidents.api import Incident

IMPACT: dict[int, str] = {1: "critical", 2: "major", 3: "minor", 4: "minor"}
COMPONENT_STATUS: dict[int, str] = {
    1: "major_outage",
    2: "partial_outage",
    3: "degraded_performance",
    4: "degraded_performance",
}
# incident change kind -> public status it moves the page incident to
STATUS_FOR: dict[str, str] = {
    "acknowledged": "identified",
    "identified": "identified",
    "monitoring": "monitoring",
    "resolved": "resolved",
}
ORDER = ("investigating", "identified", "monitoring", "resolved")
METADATA_KEY = "chatopsd"
TITLE_PLACEHOLDERS = frozenset({"service", "sev", "title"})
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
# left dangling by an empty {service}: "Service disruption: " reads "Service disruption"
_DANGLING = " \t:;,-\u2013\u2014"


def placeholders(template: str) -> set[str]:
    """The {names} a title template refers to."""
    return set(_PLACEHOLDER.findall(template))


def auto_title(template: str, incident: Incident, components: Mapping[str, str]) -> str:
    """The public name of an incident published automatically. {service} is filled only with
    a service the page has a component for (a name the operator made public), {sev} with the
    severity; the internal title appears only where the template says {title}."""
    service = incident.service if incident.service and incident.service in components else ""
    values = {"service": service, "sev": incident.sev, "title": incident.title}
    name = _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)
    return name.strip(_DANGLING)[:255] or "Service disruption"


def components_for(
    incident: Incident, mapping: Mapping[str, str], named: Sequence[str] = ()
) -> tuple[list[str], list[str]]:
    """Component ids for the names given (or the incident's service), and unknown names."""
    names = list(named) or ([incident.service] if incident.service else [])
    ids: list[str] = []
    unknown: list[str] = []
    for name in names:
        cid = mapping.get(name)
        if cid is None:
            unknown.append(name)
        elif cid not in ids:
            ids.append(cid)
    return ids, unknown


def create_body(
    incident: Incident, name: str, components: Sequence[str], message: str | None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": name[:255],
        "status": "investigating",
        "impact_override": IMPACT[incident.severity],
        "deliver_notifications": True,
        # lets a retry after a lost answer find the incident instead of creating a second one
        "metadata": {METADATA_KEY: {"incident_id": incident.id}},
    }
    if components:
        body["component_ids"] = list(components)
        body["components"] = {c: COMPONENT_STATUS[incident.severity] for c in components}
    if message:
        body["body"] = message
    return body


def update_body(
    status: str, components: Sequence[str], message: str | None, *, resolve: bool = False
) -> dict[str, Any]:
    body: dict[str, Any] = {"status": status, "deliver_notifications": True}
    if resolve and components:
        body["components"] = {c: "operational" for c in components}
    if message:
        body["body"] = message
    return body


def severity_body(incident: Incident, status: str, components: Sequence[str]) -> dict[str, Any]:
    """After an escalation: the new impact and component status, the public status kept."""
    body: dict[str, Any] = {
        "status": status,
        "impact_override": IMPACT[incident.severity],
        "deliver_notifications": False,  # no message to subscribers without public text
    }
    if components:
        body["components"] = {c: COMPONENT_STATUS[incident.severity] for c in components}
    return body


def moves_forward(current: str, new: str) -> bool:
    """Whether `new` is later in the lifecycle than `current` (no going back to identified
    after monitoring because someone acknowledged late)."""
    return ORDER.index(new) > ORDER.index(current) if current in ORDER and new in ORDER else True
