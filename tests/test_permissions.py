"""Each guide's permission list is derived from the calls its connector makes.

For each platform: (a) every API method or route the connector's modules name (read with
`ast`, not run) is in its `permissions.py` map, and (b) the guide lists exactly the
permissions the map needs: Slack's manifest scopes, Discord's permission table and invite
integer, Mattermost's permission table. A new call without its permission, or a guide that
drifts from the code, fails here.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import yaml

from chatopsd.connectors.discord import permissions as discord
from chatopsd.connectors.mattermost import permissions as mattermost
from chatopsd.connectors.slack import permissions as slack
from chatopsd.core.capabilities import Capability
from tests.spec_files import vendored_spec

ROOT = Path(__file__).resolve().parents[1]
CONNECTORS = ROOT / "chatopsd" / "connectors"
# Slack Web API method families, as slack-sdk names its methods (`chat_postMessage`)
SLACK_FAMILIES = ("auth", "apps", "chat", "conversations", "pins", "reactions", "usergroups")
SLACK_FAMILIES += ("users", "team", "bots", "files", "views", "dnd", "emoji", "bookmarks")
API_ROOTS = ("channels", "users", "webhooks", "applications", "guilds", "oauth2", "posts")
API_ROOTS += ("teams", "interactions", "gateway")


def _modules(platform: str) -> list[Path]:
    return sorted(p for p in (CONNECTORS / platform).glob("*.py") if p.name != "permissions.py")


def _template(node: ast.expr) -> str | None:
    """A string constant, or an f-string with each {value} written "{}"."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        parts = []
        for value in node.values:
            if isinstance(value, ast.Constant):
                parts.append(str(value.value))
            else:
                parts.append("{}")
        return "".join(parts)
    return None


def _paths_named(platform: str) -> set[str]:
    """Every API path the platform's modules name ("/channels/{}/posts"), as a template:
    from a constant or f-string, less the base URL and /api/v4 in front."""
    found = set()
    for module in _modules(platform):
        tree = ast.parse(module.read_text())
        # an f-string's literal pieces are nodes too: read the f-string, not its pieces
        pieces = {id(v) for n in ast.walk(tree) if isinstance(n, ast.JoinedStr) for v in n.values}
        for node in ast.walk(tree):
            if not isinstance(node, ast.expr) or id(node) in pieces:
                continue
            text = _template(node)
            if text is None:
                continue
            text = text.removeprefix("{}").removeprefix("/api/v4")
            first = text.split("/")[1] if text.startswith("/") and "/" in text[1:] + "/" else ""
            if first in API_ROOTS and " " not in text and text != "/api/v4{}":
                found.add(re.sub(r"\{[^}]*\}", "{}", text.split("?")[0]))
    return found


def _generic(path: str) -> str:
    return re.sub(r"\{[^}]*\}", "{}", path)


# (a) every call is in the map


def test_every_slack_method_the_connector_calls_is_mapped() -> None:
    called = set()
    for module in _modules("slack"):
        for node in ast.walk(ast.parse(module.read_text())):
            attr = node.attr if isinstance(node, ast.Attribute) else ""
            if "_" in attr and attr.split("_")[0] in SLACK_FAMILIES:
                called.add(attr.replace("_", "."))
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                word = node.value
                if re.fullmatch(r"[a-z]+(\.[a-zA-Z]+)+", word) and word.split(".")[0] in (
                    SLACK_FAMILIES
                ):
                    called.add(word)  # the method named in an error ("conversations.create")
    assert {"chat.postMessage", "conversations.open", "usergroups.users.update"} <= called
    assert called - set(slack.METHODS) == set()
    # and nothing is mapped that nothing calls
    assert set(slack.METHODS) - called == set()


def test_every_discord_route_the_connector_names_is_mapped() -> None:
    named = _paths_named("discord")
    mapped = {_generic(path) for _method, path in discord.ROUTES}
    assert {"/channels/{}/messages", "/channels/{}", "/users/@me/channels"} <= named
    assert named - mapped == set()
    assert mapped - named == set()


def test_every_mattermost_route_the_connector_names_is_mapped() -> None:
    named = _paths_named("mattermost")
    mapped = {_generic(path) for _method, path in mattermost.ROUTES}
    assert {"/posts", "/channels", "/channels/direct", "/posts/{}/pin"} <= named
    assert named - mapped == set()
    assert mapped - named == set()


def test_mattermost_permissions_are_those_of_the_published_reference() -> None:
    """Each route's permissions are named in the "Permissions" paragraph of that route in
    Mattermost's API reference; a route mapped to none asks for a session only."""
    operations: dict[tuple[str, str], str] = {}
    for name in ("channels.yaml", "posts.yaml", "users.yaml"):
        for path, item in yaml.safe_load(vendored_spec("mattermost", name).read_text()).items():
            for method, op in item.items():
                text = op.get("description", "")
                operations[(method.upper(), _generic(path.removeprefix("/api/v4")))] = text
    for (method, path), perms in mattermost.ROUTES.items():
        # /users/me/...: the reference writes the user id, which "me" stands for
        key = (method, _generic(path.replace("/users/me/", "/users/{user_id}/")))
        if path == "/users/me":
            key = ("GET", "/users/{}")
        if key not in operations:
            # teams.yaml is not among the vendored files: its one route asks for a session
            assert (method, path) == ("GET", "/users/me/teams") and not perms
            continue
        if (method, path) in mattermost.NOT_IN_REFERENCE:
            assert "Permissions" not in operations[key]  # still silent: keep the exception
            continue
        for perm in perms:
            assert f"`{perm}`" in operations[key], (method, path, perm)
    assert "post:channels" not in " ".join(operations.values())


# (b) the guide lists exactly what the map needs


def test_slack_manifest_grants_exactly_the_scopes_the_calls_need() -> None:
    guide = (ROOT / "docs" / "slack.md").read_text()
    manifest = yaml.safe_load(guide.split("```yaml\n", 1)[1].split("```", 1)[0])
    scopes = manifest["oauth_config"]["scopes"]["bot"]
    assert sorted(scopes) == sorted(slack.all_scopes())
    assert {"im:write", "usergroups:write"} <= set(scopes)
    events = manifest["settings"]["event_subscriptions"]["bot_events"]
    assert sorted(events) == sorted(slack.EVENTS)
    # the app-level token's scope, in the steps below the manifest
    for scope in slack.APP_TOKEN_SCOPES:
        assert f"`{scope}`" in guide


def test_slack_capabilities_map_to_called_methods() -> None:
    for capability, methods in slack.USES.items():
        assert isinstance(capability, Capability)
        assert set(methods) <= set(slack.METHODS)


def _table(guide: str, header: str) -> list[str]:
    """The first column of the Markdown table under `header`, without backticks."""
    rows = guide.split(header, 1)[1].strip().split("\n\n", 1)[0].splitlines()
    return [row.split("|")[1].strip().strip("`") for row in rows[1:]]


def test_discord_guide_lists_exactly_the_permissions_and_their_integer() -> None:
    guide = (ROOT / "docs" / "discord.md").read_text()
    listed = _table(guide, "| permission | why |")
    assert sorted(listed) == sorted(discord.needed())
    assert "Manage Channels" in listed
    integers = {int(n) for n in re.findall(r"permissions(?: integer |=)(\d+)", guide)}
    assert integers == {discord.invite_integer()}
    assert discord.invite_integer() == sum(discord.BITS[p] for p in listed)
    assert "scope=bot+applications.commands" in guide


def test_discord_routes_are_in_the_published_api() -> None:
    import json

    spec = json.loads(vendored_spec("discord", "openapi.json").read_text())
    published = {
        (method.upper(), _generic(path)) for path, item in spec["paths"].items() for method in item
    }
    for method, path in discord.ROUTES:
        assert (method, _generic(path)) in published, (method, path)


def test_mattermost_guide_lists_exactly_the_permissions() -> None:
    guide = (ROOT / "docs" / "mattermost.md").read_text()
    listed = _table(guide, "| permission | why |")
    assert sorted(listed) == mattermost.needed()
    assert "post:channels" not in guide.replace("no `post:channels`", "")
