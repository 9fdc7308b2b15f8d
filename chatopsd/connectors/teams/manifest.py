"""The Teams app package (`chatopsd teams manifest --out FILE.zip --website URL`): what an
operator uploads to Teams so the bot can be installed in teams and chats.

A zip of `manifest.json` (schema 1.17: the bot id = the Azure Bot's app id, the scopes team,
personal and groupChat, and two resource-specific permissions granted by the team owner at
install: `ChannelMessage.Read.Group` so channel commands need no @mention, and
`Channel.Create.Group` for incident channels through Graph) and two icons Teams requires:
`color.png` (192×192, full colour) and `outline.png` (32×32, white on transparent). The icons
are drawn here, as PNG written with zlib: a rounded square with a bang ("!") in it.
"""

from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib
from collections.abc import Callable
from typing import Any

SCHEMA = "https://developer.microsoft.com/json-schemas/teams/v1.17/MicrosoftTeams.schema.json"
MANIFEST_VERSION = "1.17"
ACCENT = (0x2F, 0x55, 0x97)
PERMISSIONS = ("ChannelMessage.Read.Group", "Channel.Create.Group")
SCOPES = ("team", "personal", "groupChat")
COLOR_SIZE, OUTLINE_SIZE = 192, 32

Pixel = tuple[int, int, int, int]


def manifest(
    app_id: str, website: str, *, name: str = "chatopsd", version: str = "1.0.0"
) -> dict[str, Any]:
    site = website.rstrip("/")
    return {
        "$schema": SCHEMA,
        "manifestVersion": MANIFEST_VERSION,
        "version": version,
        "id": app_id,
        "developer": {
            "name": name,
            "websiteUrl": site,
            "privacyUrl": f"{site}/privacy",
            "termsOfUseUrl": f"{site}/terms",
        },
        "name": {"short": name[:30], "full": f"{name}: incident response and on-call"[:100]},
        "description": {
            "short": "Incident response and on-call commands",
            "full": (
                "!ic, status, incidents, approvals and follow-ups in Teams, as in Slack, "
                "Discord and Mattermost: the same chatopsd daemon behind the same firewall."
            ),
        },
        "icons": {"color": "color.png", "outline": "outline.png"},
        "accentColor": "#{:02X}{:02X}{:02X}".format(*ACCENT),
        "bots": [
            {
                "botId": app_id,
                "scopes": list(SCOPES),
                "isNotificationOnly": False,
                "supportsFiles": False,
            }
        ],
        "validDomains": [],
        "webApplicationInfo": {"id": app_id, "resource": "https://RscBasedStoreApp"},
        "authorization": {
            "permissions": {
                "resourceSpecific": [
                    {"name": permission, "type": "Application"} for permission in PERMISSIONS
                ]
            }
        },
    }


def png(width: int, height: int, pixel: Callable[[int, int], Pixel]) -> bytes:
    """An 8-bit RGBA PNG of `pixel(x, y)`."""
    rows = b"".join(
        b"\x00" + b"".join(bytes(pixel(x, y)) for x in range(width)) for y in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows, 9))
        + chunk(b"IEND", b"")
    )


def _shape(size: int) -> Callable[[int, int], str]:
    """Where a pixel falls: "bang" (the "!"), "tile" (the rounded square) or "out"."""
    radius, margin = size // 5, size // 16
    lo, hi = margin, size - 1 - margin
    stem = size // 14
    centre = size // 2

    def where(x: int, y: int) -> str:
        if not (lo <= x <= hi and lo <= y <= hi):
            return "out"
        cx = min(max(x, lo + radius), hi - radius)
        cy = min(max(y, lo + radius), hi - radius)
        if (x - cx) ** 2 + (y - cy) ** 2 > radius**2:
            return "out"
        if abs(x - centre) <= stem:
            if size * 0.22 <= y <= size * 0.62:
                return "bang"
            if size * 0.70 <= y <= size * 0.78:
                return "bang"
        return "tile"

    return where


def color_icon() -> bytes:
    where = _shape(COLOR_SIZE)
    colours = {"bang": (255, 255, 255, 255), "tile": (*ACCENT, 255), "out": (0, 0, 0, 0)}
    return png(COLOR_SIZE, COLOR_SIZE, lambda x, y: colours[where(x, y)])


def outline_icon() -> bytes:
    """White on transparent, as Teams requires of the outline icon: the "!" alone."""
    where = _shape(OUTLINE_SIZE)
    return png(
        OUTLINE_SIZE,
        OUTLINE_SIZE,
        lambda x, y: (255, 255, 255, 255) if where(x, y) == "bang" else (255, 255, 255, 0),
    )


def package(app_id: str, website: str, *, name: str = "chatopsd") -> bytes:
    """The app package: a zip of manifest.json, color.png and outline.png at its top level."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        text = json.dumps(manifest(app_id, website, name=name), indent=2)
        zf.writestr("manifest.json", text + "\n")
        zf.writestr("color.png", color_icon())
        zf.writestr("outline.png", outline_icon())
    return out.getvalue()
