"""What an incident looks like on a public status page: pure rules, in the port's neutral
vocabulary (api.py); a provider turns the calls into its own requests.

Severity sets the impact shown and the affected components; the incident's lifecycle sets
the public status. Nothing internal is ever copied into a call: the only texts sent are the
public name (the incident's title when a person publishes it; for an automatic publication,
which nobody chose to show, `statuspage.public_title`) and the text a person gave
`--public` or `publish`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from chatopsd.features.incidents.api import Incident
from chatopsd.features.statuspage.api import PLACEHOLDER, STATUSES, PageCall

# incident change kind -> public status it moves the page incident to
STATUS_FOR: dict[str, str] = {
    "acknowledged": "identified",
    "identified": "identified",
    "monitoring": "monitoring",
    "resolved": "resolved",
}
# left dangling by an empty {service}: "Service disruption: " reads "Service disruption"
_DANGLING = " \t:;,-\u2013\u2014"


def auto_title(template: str, incident: Incident, components: Mapping[str, str]) -> str:
    """The public name of an incident published automatically. {service} is filled only with
    a service the page has a component for (a name the operator made public), {sev} with the
    severity; the internal title appears only where the template says {title}."""
    service = incident.service if incident.service and incident.service in components else ""
    values = {"service": service, "sev": incident.sev, "title": incident.title}
    name = PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)
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


def publish_call(
    incident: Incident, name: str, components: Sequence[str], message: str | None
) -> PageCall:
    """A new page incident: investigating, with the incident's severity as its impact."""
    return PageCall(
        "investigating",
        message=message,
        components=tuple(components),
        severity=incident.severity,
        name=name[:255],
    )


def update_call(status: str, components: Sequence[str], message: str | None) -> PageCall:
    """A move along the lifecycle, or a public update (resolved: components operational)."""
    return PageCall(status, message=message, components=tuple(components))


def severity_call(incident: Incident, status: str, components: Sequence[str]) -> PageCall:
    """After an escalation: the new impact and components' state, the public status kept,
    and no message to subscribers without public text."""
    return PageCall(status, components=tuple(components), severity=incident.severity, notify=False)


def moves_forward(current: str, new: str) -> bool:
    """Whether `new` is later in the lifecycle than `current` (no going back to identified
    after monitoring because someone acknowledged late)."""
    known = current in STATUSES and new in STATUSES
    return STATUSES.index(new) > STATUSES.index(current) if known else True
