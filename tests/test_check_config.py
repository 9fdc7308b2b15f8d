"""`chatopsd check-config` refuses every value that would only fail later, naming the key.

Each case is the real command on a file that is valid but for one value: a URL without a
scheme, with a scheme its key does not speak, or malformed; a destination on a misspelt
platform or on one that is not configured; a bad email; a config nothing can reach. The
refusal names the key and never repeats the value (a URL can carry a key, and the platform
tokens below must not be printed either).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SLACK = "[slack]\napp_token = 'xapp-test-cc'\nbot_token = 'xoxb-test-cc'\n"
PD = (
    "[pagerduty]\napi_token = 'pd-test-cc'\nfrom_email = 'ada@example.com'\n"
    "service_id = 'PSVC'\nic_schedules = ['PIC']\n"
)


def check_config(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return subprocess.run(
        [sys.executable, "-m", "chatopsd", "check-config", str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )


def _with(section: str, line: str) -> str:
    """SLACK and PD, with `line` set in `section` (replacing that key's line, or added; a new
    section when absent)."""
    lines = (SLACK + PD).splitlines()
    key = line.split("=", 1)[0].strip()
    if f"[{section}]" not in lines:
        return "\n".join([*lines, f"[{section}]", line, ""])
    start = lines.index(f"[{section}]") + 1
    for i in range(start, len(lines)):
        if lines[i].startswith("["):
            break
        if lines[i].split("=", 1)[0].strip() == key:
            lines[i] = line
            return "\n".join([*lines, ""])
    lines.insert(start, line)
    return "\n".join([*lines, ""])


BAD = [
    # URLs: scheme-less, another protocol, malformed, no host
    ("slack url without scheme", _with("slack", "api_url = 'slack.com/api/'"), "slack.api_url"),
    ("slack ftp", _with("slack", "api_url = 'ftp://slack.com/api/'"), "slack.api_url"),
    ("pagerduty malformed", _with("pagerduty", "api_url = 'http://[::1'"), "pagerduty.api_url"),
    ("pagerduty no host", _with("pagerduty", "api_url = 'https://'"), "pagerduty.api_url"),
    ("pagerduty bad port", _with("pagerduty", "api_url = 'https://h:x/'"), "pagerduty.api_url"),
    ("events ftp", _with("pagerduty", "events_url = 'ftp://e.example'"), "pagerduty.events_url"),
    (
        "discord gateway is https",
        SLACK + "[discord]\ntoken = 'd-test-cc'\ngateway_url = 'https://gateway.discord.gg/'\n",
        "discord.gateway_url",
    ),
    (
        "status source without scheme",
        SLACK + "[[status.sources]]\nkind = 'alertmanager'\nurl = '127.0.0.1:9093'\n",
        "status.sources[0].url",
    ),
    (
        "bridge ftp",
        _with("incidents", "bridge_url = 'ftp://meet.example.com/{incident_id}'"),
        "incidents.bridge_url",
    ),
    (
        "statuspage scheme-less",
        SLACK + "[statuspage]\napi_key = 'sp-test'\npage_id = 'p'\napi_url = 'api.statuspage.io'\n",
        "statuspage.api_url",
    ),
    (
        "tickets ftp",
        SLACK
        + "[tickets]\nkind = 'jira'\ntoken = 't-test'\nproject = 'OPS'\nurl = 'ftp://j.example'\n",
        "tickets.url",
    ),
    # destinations: misspelt platforms, platforms not configured
    ("slak", _with("incidents", "default_channels = ['slak:C1']"), "incidents.default_channels[0]"),
    (
        "discrod",
        _with("pagerduty", "incident_channels = ['discrod:1']"),
        "pagerduty.incident_channels[0]",
    ),
    (
        "discord not configured",
        _with("control", "broadcast_channels = ['slack:C1', 'discord:1']"),
        "control.broadcast_channels[1]",
    ),
    (
        "mattermost not configured",
        _with("incidents", "routing = { 'SEV-1' = ['mattermost:town'] }"),
        "incidents.routing.SEV-1[0]",
    ),
    (
        "console off",
        _with("pagerduty", "handoff_channels = ['console:oncall']"),
        "pagerduty.handoff_channels[0]",
    ),
    ("misspelt identity", _with("pagerduty", "users = { 'slak:U1' = 'a@example.com' }"), "users"),
    ("misspelt role member", _with("roles", "lead = ['slakc:U1']"), "roles.lead[0]"),
    (
        "misspelt paging channel",
        _with("auth", "paging_channels = ['slack:C1', 'discrod:9']"),
        "auth.paging_channels[1]",
    ),
    # emails
    ("from_email no @", _with("pagerduty", "from_email = 'ada.example.com'"), "from_email"),
    ("from_email no domain", _with("pagerduty", "from_email = 'ada@example'"), "from_email"),
    ("from_email spaces", _with("pagerduty", "from_email = 'ada @example.com'"), "from_email"),
    (
        "from_email too long",
        _with("pagerduty", f"from_email = '{'a' * 60}@{'b' * 200}.com'"),
        "pagerduty.from_email",
    ),
    # nothing can reach the daemon
    ("nothing reaches it", "[console]\nenabled = false\n", "console.enabled"),
]


@pytest.mark.parametrize(("text", "key"), [case[1:] for case in BAD], ids=[c[0] for c in BAD])
def test_check_config_refuses_and_names_the_key(tmp_path: Path, text: str, key: str) -> None:
    result = check_config(tmp_path, text)
    assert result.returncode == 2, result.stdout
    assert key in result.stderr, result.stderr
    assert "OK" not in result.stdout
    assert "-test-cc" not in result.stdout + result.stderr


def test_the_same_file_with_good_values_passes(tmp_path: Path) -> None:
    """The table's base is valid: each refusal above is the one bad value's."""
    text = (
        SLACK
        + PD.replace("[pagerduty]\n", "[pagerduty]\nincident_channels = ['slack:C1']\n")
        + "[discord]\ntoken = 'd-test-cc'\ngateway_url = 'ws://127.0.0.1:9/'\n"
        + "[incidents]\nbridge_url = 'https://meet.example.com/{incident_id}'\n"
        + "routing = { 'SEV-1' = ['discord:1'] }\n"
        + "[control]\nbroadcast_channels = ['slack:C1']\n"
        + "[[status.sources]]\nkind = 'alertmanager'\nurl = 'http://127.0.0.1:9093'\n"
    )
    result = check_config(tmp_path, text)
    assert result.returncode == 0, result.stderr
    assert "OK (platforms: slack, discord)" in result.stdout
    console_only = check_config(tmp_path, "[incidents]\ndefault_channels = ['console:ops']\n")
    assert console_only.returncode == 0, console_only.stderr
