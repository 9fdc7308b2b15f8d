"""The demo's operations command: used only when nothing real is configured (`Config.demo`)
and no `[[commands]]` are, so `!deploy` and its approval can be tried. It runs this Python
with a one-line program that says what a real deploy would do; nothing is deployed."""

from __future__ import annotations

import sys

from chatopsd.config import ApprovalRuleSection, OpsCommandSection

_SAYS = "import sys; print('demo: would deploy', *sys.argv[1:], '(nothing was deployed)')"


def commands() -> list[OpsCommandSection]:
    return [
        OpsCommandSection.model_validate(
            {
                "name": "deploy",
                "summary": "deploy a service version to an environment (demo: nothing deployed)",
                "args": ["service", "version", "env"],
                "patterns": {
                    "service": "[a-z][a-z0-9-]{1,40}",
                    "version": r"v?[0-9]+(\.[0-9]+){0,3}",
                },
                "choices": {"env": ["staging", "production"]},
                "run": [sys.executable, "-c", _SAYS, "{service}", "{version}", "--env={env}"],
                "timeout_seconds": 30,
            }
        )
    ]


def rules() -> list[ApprovalRuleSection]:
    """Production needs one approval by someone else (in the demo, any other actor)."""
    return [ApprovalRuleSection(command="deploy", when={"env": "production"}, count=1)]
