"""PagerDuty ids from chat stay in their path segment, and only configured schedules are
reachable: `!ic take --schedule PIC1/../PRS1` once made an override on PRS1. Through the bus
against the fake PagerDuty (every request checked against PagerDuty's OpenAPI document)."""

from __future__ import annotations

import pytest

from chatopsd.app import App
from chatopsd.core.errors import UsageError
from chatopsd.features.pagerduty.client import rest_path
from tests.fakes.pagerduty import FakePagerDuty
from tests.test_pd_incidents import (  # noqa: F401 (fixtures)
    ADA,
    app,
    out,
    pd,
    say,
    text_of,
)

# In the account, but named nowhere in the config.
UNCONFIGURED = "PHR01"


async def refused(app: App, pd: FakePagerDuty, text: str, *, also: str = "") -> str:
    """Send `text`; it must be answered as a usage error, with no request to PagerDuty but
    the on-call refresh job's reads (and reads of `also`)."""
    before = len(pd.requests)
    reply = text_of(await say(app, text, actor=ADA))
    made = [r for r in pd.requests[before:] if r not in {("GET", "/oncalls"), ("GET", also)}]
    assert made == [], made
    rows = await app.audit.since(None)
    assert rows[-1].text == text and rows[-1].outcome == "user_error", rows[-1]
    return reply


@pytest.mark.parametrize(
    "text",
    [
        "!ic take 1h --schedule PIC1/../PRS1",
        "!ic take 1h --schedule PIC1%2F..%2FPRS1",
        "!ic handback --schedule PIC1/../PRS1",
    ],
)
async def test_a_schedule_id_that_leaves_its_path_segment_is_refused(
    app: App, pd: FakePagerDuty, text: str
) -> None:
    reply = await refused(app, pd, text)
    assert "is not one of the IC schedules" in reply and "PIC1, PIC2" in reply
    assert pd.overrides == {} and pd.writes == []


@pytest.mark.parametrize("schedule", [UNCONFIGURED, "PRS1"])
async def test_take_only_reaches_the_configured_ic_schedules(
    app: App, pd: FakePagerDuty, schedule: str
) -> None:
    pd.schedules[UNCONFIGURED] = ("HR on call", [("PLIN", 1)])
    reply = await refused(app, pd, f"!ic take 1h --schedule {schedule}")
    assert f"'{schedule}' is not one of the IC schedules" in reply
    assert "pagerduty.ic_schedules: PIC1, PIC2" in reply
    assert pd.overrides == {}
    taken = text_of(await say(app, "!ic take 1h --schedule PIC2", actor=ADA))
    assert "Pager taken" in taken
    assert [o["schedule"] for o in pd.overrides.values()] == ["PIC2"]


async def test_incident_page_reaches_only_configured_schedules(app: App, pd: FakePagerDuty) -> None:
    pd.schedules[UNCONFIGURED] = ("HR on call", [("PLIN", 1)])
    reply = await refused(app, pd, f"!incident page schedule:{UNCONFIGURED}")
    assert f"'{UNCONFIGURED}' is not a configured schedule" in reply
    assert pd.incidents == []
    paged = text_of(await say(app, "!incident page PRS1", actor=ADA))  # a responder schedule
    assert "Paged Edsger Dijkstra as ada@example.com" in paged
    assert pd.incidents[-1]["assignees"] == ["PEDS"]


async def test_an_incident_id_that_is_no_pagerduty_id_is_refused_before_any_request(
    app: App, pd: FakePagerDuty
) -> None:
    # (the asker's PagerDuty user is looked up first, by email: GET /users?query=…)
    reply = await refused(app, pd, "!pd ack " + "P" * 200, also="/users")
    assert "is not a PagerDuty id" in reply and "P" * 41 not in reply


@pytest.mark.parametrize(
    "bad",
    [
        "PIC1/../PRS1",
        "PIC1?x=1",
        "PIC1#",
        "pic1",
        "",
        "P" * 65,
        "PÏC1",
        "P١٢٣",
        "PIC1 ",
        "..",
        "%2F",
    ],
)
def test_rest_path_refuses_anything_but_a_pagerduty_id(bad: str) -> None:
    with pytest.raises(UsageError, match="is not a PagerDuty id"):
        rest_path("/schedules/{}/overrides", (bad,))


def test_rest_path_builds_the_path_and_takes_only_literal_templates() -> None:
    assert rest_path("/schedules/{}/overrides/{}", ("PIC1", "Q2KEIG9RMGOSUL")) == (
        "/schedules/PIC1/overrides/Q2KEIG9RMGOSUL"
    )
    assert rest_path("/oncalls") == "/oncalls"
    for template, ids in (
        ("/schedules/PIC1/overrides", ()),  # an id pasted into the template
        ("/schedules/{}/overrides", ()),  # an id missing
        ("/users/{}", ("PADA", "PGRACE")),  # one too many
        ("users/{}", ("PADA",)),
        ("/users/{}/../incidents", ("PADA",)),
    ):
        with pytest.raises(ValueError, match="not a PagerDuty path template"):
            rest_path(template, ids)
