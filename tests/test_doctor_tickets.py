"""`chatopsd doctor` probes `[tickets]` read-only, with the daemon's own tracker client, against
the fake trackers that validate every request, and every answer they give to these calls,
against GitHub's and Jira's published descriptions (tests/fakes/tickets.py). It creates
nothing: on GitHub the repository as the token sees it; on Jira the credentials' account, the
project and its issue types."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chatopsd import config, doctor
from chatopsd.checks import Result
from tests.fakes.tickets import JIRA_EMAIL, TOKEN, FakeTrackers

WRONG = "tk-test-wrong-0000"


@pytest.fixture
async def trackers() -> AsyncIterator[FakeTrackers]:
    server = FakeTrackers()
    await server.start()
    yield server
    await server.close()


async def probe(
    tmp_path: Path, fake: FakeTrackers, timeout: float = 5, **keys: str
) -> dict[str, Result]:
    values = {"url": fake.url, "token": TOKEN, **keys}
    lines = "".join(f'{k} = "{v}"\n' for k, v in values.items())
    path = tmp_path / "c.toml"
    path.write_text(f'[chatopsd]\nstate_db = "{tmp_path / "s.db"}"\n[tickets]\n{lines}')
    cfg = config.load(path, env={})
    results = await doctor.run_checks(cfg, timeout_seconds=timeout, env={})
    found = {r.name: r for r in results if r.name.startswith("tickets")}
    for r in found.values():
        assert TOKEN not in r.line() and WRONG not in r.line()
    assert fake.violations == []  # every request and answer is in the published API
    assert fake.github == [] and fake.jira == []  # read-only: nothing was created
    return found


def github(**keys: str) -> dict[str, str]:
    return {"kind": "github", "project": "acme/infra", **keys}


def jira(**keys: str) -> dict[str, str]:
    return {"kind": "jira", "project": "OPS", "email": JIRA_EMAIL, **keys}


async def test_github_repository_with_issues_passes(tmp_path: Path, trackers: FakeTrackers) -> None:
    found = await probe(tmp_path, trackers, **github())
    assert list(found) == ["tickets"]
    assert found["tickets"].line() == "✓ tickets: acme/infra: the token can see it, issues are on"
    assert trackers.reads == ["/repos/acme/infra"]


async def test_jira_credentials_project_and_issue_type_pass(
    tmp_path: Path, trackers: FakeTrackers
) -> None:
    found = await probe(tmp_path, trackers, **jira(issue_type="Bug"))
    assert found["tickets token"].line() == (
        f"✓ tickets token: {trackers.url} accepts the credentials (account Chatops Bot)"
    )
    assert found["tickets project"].line() == (
        "✓ tickets project: OPS (OPS project), issue type Bug"
    )
    assert trackers.reads == ["/rest/api/3/myself", "/rest/api/3/project/OPS"]


@pytest.mark.parametrize(
    ("keys", "name", "expected"),
    [
        (
            github(token=WRONG),
            "tickets",
            "HTTP 401: the token is not accepted; set tickets.token (credential tickets_token",
        ),
        (
            github(project="acme/nope"),
            "tickets",
            "HTTP 404: not found; check tickets.project (acme/nope) and that tickets.token "
            "can see it",
        ),
        (
            jira(token=WRONG),
            "tickets token",
            "HTTP 401: the token is not accepted; set tickets.token (credential tickets_token",
        ),
        (
            jira(project="NOPE"),
            "tickets project",
            "NOPE: HTTP 404: not found; check tickets.project (NOPE), a project key the "
            "account can see",
        ),
        (
            jira(issue_type="Incident"),
            "tickets project",
            "OPS has no issue type 'Incident': set tickets.issue_type to one of Bug, Task",
        ),
    ],
)
async def test_a_wrong_token_repository_project_or_type_fails_and_names_the_key(
    tmp_path: Path, trackers: FakeTrackers, keys: dict[str, str], name: str, expected: str
) -> None:
    found = await probe(tmp_path, trackers, **keys)
    assert not found[name].ok
    assert expected in found[name].detail, found[name].detail
    assert sum(not r.ok for r in found.values()) == 1  # nothing else fails with it


async def test_jira_refused_credentials_name_the_email_and_skip_the_project(
    tmp_path: Path, trackers: FakeTrackers
) -> None:
    found = await probe(tmp_path, trackers, **jira(email="someone@example.com"))
    assert list(found) == ["tickets token"]  # the project is not judged with refused credentials
    assert found["tickets token"].detail.endswith(
        "; check tickets.email, the account the API token belongs to"
    )
    assert trackers.reads == []


async def test_jira_without_email_says_the_token_needs_it(
    tmp_path: Path, trackers: FakeTrackers
) -> None:
    keys = jira()
    del keys["email"]
    found = await probe(tmp_path, trackers, **keys)
    assert not found["tickets token"].ok
    assert "tickets.email is not set" in found["tickets token"].detail


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (
            (False, False),
            "✗ tickets: acme/infra has issues turned off: turn them on in its settings, or set "
            "tickets.project to another repository",
        ),
        (
            (True, True),
            "✗ tickets: acme/infra is archived (read-only), no issue can be opened: set "
            "tickets.project to another repository",
        ),
    ],
)
async def test_a_github_repository_that_takes_no_issues_fails(
    tmp_path: Path, trackers: FakeTrackers, state: tuple[bool, bool], expected: str
) -> None:
    trackers.repos["acme/infra"] = state
    found = await probe(tmp_path, trackers, **github())
    assert found["tickets"].line() == expected


async def test_a_github_token_the_organisation_refuses_says_why_it_may_be(
    tmp_path: Path, trackers: FakeTrackers
) -> None:
    trackers.fault = "403"
    found = await probe(tmp_path, trackers, **github())
    assert found["tickets"].line() == (
        f"✗ tickets: {trackers.url}: HTTP 403: the token lacks permission; tickets.token may "
        "not read acme/infra: authorise it for the organisation's SAML SSO, or check its IP "
        "allow list and rate limit"
    )


@pytest.mark.parametrize(
    ("fault", "why"),
    [("500", "HTTP 500"), ("badjson", "the answer is not JSON")],
)
@pytest.mark.parametrize("kind", ["github", "jira"])
async def test_a_failing_tracker_is_a_failed_line_without_a_hint(
    tmp_path: Path, trackers: FakeTrackers, fault: str, why: str, kind: str
) -> None:
    trackers.fault = fault
    found = await probe(tmp_path, trackers, **(github() if kind == "github" else jira()))
    first = found["tickets" if kind == "github" else "tickets token"]
    assert first.line() == f"✗ {first.name}: {trackers.url}: {why}"
    assert len(found) == 1


async def test_a_jira_project_read_that_fails_after_the_credentials_is_its_own_line(
    tmp_path: Path, trackers: FakeTrackers
) -> None:
    # the first call (the account) is answered, the second (the project) fails
    trackers.fault, trackers.fault_after = "500", 1
    found = await probe(tmp_path, trackers, **jira())
    assert found["tickets token"].ok
    assert found["tickets project"].line() == "✗ tickets project: OPS: HTTP 500"


@pytest.mark.parametrize("kind", ["github", "jira"])
async def test_a_tracker_that_does_not_answer_times_out(
    tmp_path: Path, trackers: FakeTrackers, kind: str
) -> None:
    trackers.fault = "hang"
    keys = github() if kind == "github" else jira()
    found = await probe(tmp_path, trackers, timeout=0.3, **keys)
    [line] = found.values()
    assert line.line() == f"✗ {line.name}: {trackers.url}: no answer in time (timeout)"
    assert trackers.hits == 1
