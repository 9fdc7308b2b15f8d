"""`chatopsd doctor` probes `[statuspage]` read-only, against the fake that validates every
request against Statuspage's published description (tests/fakes/statuspage.py): the key, the
page, and each configured component id. It publishes nothing."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chatopsd import config, doctor
from chatopsd.checks import Result
from tests.fakes.statuspage import API_KEY, PAGE_ID, FakeStatuspage


@pytest.fixture
async def statuspage() -> AsyncIterator[FakeStatuspage]:
    server = FakeStatuspage()
    await server.start()
    yield server
    await server.close()


async def probe(tmp_path: Path, fake: FakeStatuspage, **keys: str) -> dict[str, Result]:
    values = {"api_url": fake.url, "api_key": API_KEY, "page_id": PAGE_ID, **keys}
    lines = "".join(
        f"{k} = {v}\n" if v.startswith("{") else f'{k} = "{v}"\n' for k, v in values.items()
    )
    path = tmp_path / "c.toml"
    path.write_text(f'[chatopsd]\nstate_db = "{tmp_path / "s.db"}"\n[statuspage]\n{lines}')
    cfg = config.load(path, env={})
    results = await doctor.run_checks(cfg, timeout_seconds=5, env={})
    found = {r.name: r for r in results if r.name.startswith("statuspage")}
    for r in found.values():
        assert API_KEY not in r.line()
    assert fake.violations == []  # every request the probe made is in the published API
    assert not fake.calls("POST") and not fake.calls("PATCH")  # read-only
    return found


async def test_statuspage_key_page_and_components_pass(
    tmp_path: Path, statuspage: FakeStatuspage
) -> None:
    found = await probe(
        tmp_path, statuspage, components='{ payments = "cmp_pay", api = "cmp_api" }'
    )
    assert found["statuspage"].ok, found
    assert found["statuspage"].detail == f"page {PAGE_ID} accepts the key (2 components)"
    assert found["statuspage components"].line() == "✓ statuspage components: all 2 are on the page"
    assert statuspage.hits == 1


async def test_a_component_id_not_on_the_page_is_named(
    tmp_path: Path, statuspage: FakeStatuspage
) -> None:
    found = await probe(
        tmp_path, statuspage, components='{ payments = "cmp_pay", search = "cmp_typo" }'
    )
    assert found["statuspage"].ok
    assert found["statuspage components"].line() == (
        f"✗ statuspage components: not on page {PAGE_ID}: search = cmp_typo; "
        "check statuspage.components"
    )


async def test_more_than_a_page_of_components_is_read_to_the_end(
    tmp_path: Path, statuspage: FakeStatuspage
) -> None:
    statuspage.components = {f"cmp_{i:03}": "operational" for i in range(150)}
    found = await probe(tmp_path, statuspage, components='{ last = "cmp_149" }')
    assert found["statuspage"].detail.endswith("(150 components)")
    assert found["statuspage components"].ok
    assert statuspage.hits == 2


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        (
            {"api_key": "sp-test-wrong"},
            "HTTP 401: the token is not accepted; set statuspage.api_key (credential "
            "statuspage_api_key",
        ),
        ({"page_id": "pgwrong"}, "HTTP 404: not found; check statuspage.page_id"),
    ],
)
async def test_a_wrong_key_or_page_fails_and_says_what_to_fix(
    tmp_path: Path, statuspage: FakeStatuspage, keys: dict[str, str], expected: str
) -> None:
    found = await probe(tmp_path, statuspage, **keys)
    assert not found["statuspage"].ok
    assert expected in found["statuspage"].detail, found["statuspage"].detail
    assert "sp-test-wrong" not in found["statuspage"].line()


async def test_a_failing_statuspage_is_a_failed_line(
    tmp_path: Path, statuspage: FakeStatuspage
) -> None:
    statuspage.fault = "500"
    found = await probe(tmp_path, statuspage)
    assert found["statuspage"].line() == f"✗ statuspage: {statuspage.url}: HTTP 500"


def test_a_config_nothing_can_reach_is_not_called_valid(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f'[chatopsd]\nstate_db = "{tmp_path / "s.db"}"\n[console]\nenabled = false\n')
    out = io.StringIO()
    assert doctor.main(path, out=out, env={}) == 1
    first = out.getvalue().splitlines()[0]
    assert first.startswith("✗ config: console.enabled: the console is off and no platform")
    assert "nothing can reach the daemon" in first
