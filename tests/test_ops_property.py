"""Properties: no argument value can add an argv element or reach a run unvalidated, and no
free text can yield a paging or mutating command without a confirmation."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from chatopsd.core.errors import UsageError
from chatopsd.core.grammar import tokenize
from chatopsd.features.intents.parser import parse
from chatopsd.features.ops.runner import DEFAULT_ARG_PATTERN, ArgRule, render, validate

TEMPLATE = ["/usr/local/bin/deploy", "{service}", "--env={env}", "{service}-{env}"]
RULES = [ArgRule("service"), ArgRule("env", choices=("staging", "production"))]
SHELLISH = st.text(alphabet=st.sampled_from(list("a-z09;|&$()`'\" \n\r\t\\/.*<>{}-_=:@+")))


@settings(max_examples=300, deadline=None)
@given(service=st.one_of(st.text(), SHELLISH), env=st.one_of(st.text(), SHELLISH))
def test_values_are_validated_and_fill_one_element(service: str, env: str) -> None:
    try:
        values = validate(RULES, {"service": service, "env": env})
    except UsageError:
        return
    assert re.fullmatch(DEFAULT_ARG_PATTERN, values["service"])
    assert values["env"] in ("staging", "production")
    argv = render(TEMPLATE, values)
    assert len(argv) == len(TEMPLATE)
    assert argv[1] == values["service"]


@settings(max_examples=200, deadline=None)
@given(value=st.text())
def test_render_never_changes_the_element_count(value: str) -> None:
    assert len(render(TEMPLATE, {"service": value, "env": value})) == len(TEMPLATE)


MUTATING = (
    "ic page",
    "incident ack",
    "incident declare",
    "incident resolve",
    "incident close",
    "incident escalate",
    "incident update",
)
WORDS = st.sampled_from(
    [
        "page",
        "the",
        "IC",
        "ack",
        "acknowledge",
        "INC-2026-0042",
        "create",
        "an",
        "incident",
        "for",
        "API",
        "errors",
        "who",
        "is",
        "on",
        "call",
        "status",
        "resolve",
        "close",
        "escalate",
        "to",
        "sev1",
        "update",
        "please",
        "and",
        "then",
        "everyone",
        "jane@example.com",
        "don't",
        "what's",
        "help",
        "?",
        ",",
        ":",
        "service",
        "payments",
    ]
)


@settings(max_examples=400, deadline=None)
@given(text=st.one_of(st.text(), st.lists(WORDS, max_size=12).map(" ".join)))
def test_free_text_never_mutates_without_confirmation(text: str) -> None:
    intent = parse(text)
    set_ = [x for x in (intent.command, intent.ask, intent.say) if x is not None]
    assert len(set_) <= 1
    if intent.command is not None:
        tokenize(intent.command)  # always valid grammar text
        if intent.command.startswith(MUTATING):
            assert intent.confirm, text
