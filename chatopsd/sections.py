"""The base of every config section: unknown keys refused, values frozen.

A module of its own so a platform package's section (connectors/<platform>/config.py) needs
nothing from config.py, which composes those sections from the platform registry.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
