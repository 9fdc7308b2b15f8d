"""A small deterministic intent parser for plain-language mentions. Pure; no outside service.

"@chatopsd who is on call for payments?" becomes the command text `ic` (and the service
"payments"); "page the IC" becomes `ic page`, marked `confirm` so it never runs without a click
or reaction; what is missing is asked for ("Which incident?"), two requests in one sentence are
asked back, and what is not understood gets None so the caller can answer with help.

How: the text is normalised (quotes, politeness, punctuation), ids, severities, services and
people are pulled out with regular expressions, then a short decision list picks ONE intent.
Read-only questions are tried before verbs, so "who should I page?" is a lookup, not a page.

Anyone can mention the bot, and the parser runs on the event loop, so it must stay cheap
whatever the text: a request is at most MAX_CHARS characters (longer is refused, not cut: a
cut could drop the "don't" of "don't page anyone"), and every pattern here is linear in the
text. Python's regex engine backtracks, so the patterns follow three rules: a pattern that
`search` tries at every position starts with a guard that fails at once where it cannot
begin (a lookbehind, so a run of letters is scanned from its start only, not from each of its
letters); a run is matched possessively (`++`, `*+`) where what follows cannot be part of it,
so a failure gives nothing back to retry; and no `.*` between two words (search for the
second after the first instead). What is anchored at the end (`$`) is done with string
methods, since a search for it starts over at every position.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from chatopsd.core.errors import UsageError
from chatopsd.features.approvals.api import command_line

# A question or a request is a sentence or two; a title a line. Past this it is not chat.
MAX_CHARS = 1000


@dataclass(frozen=True, slots=True)
class Intent:
    """What a sentence asks for. Exactly one of command / ask / say is set, or none (unknown)."""

    command: str | None = None
    summary: str = ""
    confirm: bool = False  # paging or mutating: needs a click or reaction first
    ask: str | None = None  # something is missing or ambiguous: the question to ask back
    say: str | None = None  # a plain answer (greetings, "don't page anyone")
    incident: str | None = None
    severity: str | None = None
    service: str | None = None


_INCIDENT = re.compile(r"\binc-\d{4}-\d{1,6}\b")
_SEV = re.compile(r"\b(?:sev(?:erity)?[\s-]?|p)([1-4])\b")
_SEV_WORDS = {"critical": "SEV-1", "major": "SEV-2", "minor": "SEV-3"}
_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]++@[\w-]++(?:\.[\w-]++)+")
_MENTION = re.compile(r"<@[\w.-]++>|@[\w.-]++")
_SERVICE_AFTER = re.compile(r"\b(?:service|svc)\s++([a-z0-9][a-z0-9-]*+)")
# "api service": the name is the whole run of letters, digits and hyphens before "service",
# scanned from the run's start only ("a-a-a-…" is not re-scanned from every "a").
_SERVICE_BEFORE = re.compile(r"(?<![a-z0-9-])-*+([a-z0-9][a-z0-9-]*+)\s++service\b")
_NOT_SERVICE = frozenset(
    ["on", "for", "in", "of", "to", "the", "a", "an", "which", "what", "this", "that", "my", "our"]
)
_POLITE = re.compile(
    r"^(?:(?:hey|hi|hello|ok|okay|so|um|please|pls|plz|kindly|quick question)[\s,!:]++)++"
    r"|^(?:can|could|would|will) you (?:please )?|^i (?:want|need|would like) (?:you )?to "
    r"|^(?:let'?s|lets) |^go (?:and )?",
    re.I,
)
# Politeness at the end ("…, please", "… asap thanks"): stripped with string methods.
_TRAILING = ("right now", "thank you", "please", "thanks", "asap", "pls", "plz", "now")

_ONCALL = r"(?:on[\s-]?call|oncall)"
_IC_WORDS = re.compile(
    r"\b(?:ics?|incident commanders?|commanders?|" + _ONCALL + r"(?: person| engineer| folks?)?)\b"
)
_RESPONDERS = re.compile(
    r"\b(?:responders?|everyone|everybody|all hands|the (?:whole )?team|whole team|"
    r"all (?:of )?(?:the )?" + _ONCALL + r"(?: people)?|the rotation)\b"
)
_NEGATED_PAGE = re.compile(r"\b(?:don'?t|do not|never|no need to|stop)\s++(?:page|wake|call)")
_PAGE_VERB = re.compile(r"\b(?:page|wake(?: up)?|summon|call (?:in|out)|alert|ping)\b")
_ACK_VERB = re.compile(r"\b(?:ack|acknowledge|acknowledged|ack'?d|i'?m on it|taking)\b")
_RESOLVE_VERB = re.compile(
    r"\b(?:resolve|resolved|fixed|mark(?:ed)? (?:it |\S++ )?(?:as )?resolved)\b"
)
_CLOSE_VERB = re.compile(r"\bclose\b")
_UPDATE_VERB = re.compile(r"\b(?:update|post an update (?:to|on|for)|add (?:a )?note (?:to|on))\b")
_ESCALATE_VERB = re.compile(r"\b(?:escalate|bump|upgrade)\b")
_DECLARE = re.compile(
    r"\b(?:create|open|declare|start|raise|file|log|report|kick off|spin up)\s++"
    r"(?:a |an |the )?(?:new )?(?:(?:sev[\s-]?[1-4]|p[1-4]|critical|major|minor)\s++)?incident\b"
    r"|\b(?:we have|there'?s|there is|we'?ve got)\s++(?:a |an )?(?:new )?"
    r"(?:(?:sev[\s-]?[1-4]|p[1-4]|critical|major|minor)\s++)?(?:incident|outage)\b"
    r"|^(?:new|declare) incident\b"
)
# "list … incidents": the first word, then "incidents" somewhere after it (see _then).
_LIST_WORD = re.compile(r"\b(?:list|show(?: me)?|any|which|what|open|current|active|ongoing)\b")
_INCIDENTS = re.compile(r"\bincidents\b")
_LIST = re.compile(r"^incidents$|\bincidents (?:are )?(?:open|active|ongoing|running)\b")
_PENDING = re.compile(r"\bpending\b")
_APPROVALS = re.compile(r"\bapprovals?\b")
_STATUS = re.compile(
    r"\b(?:status|health|healthy|alerts?|alerting|firing)\b"
    r"|\bis (?:everything|everything'?s|all|it all) (?:ok|okay|fine|up|good|working|green)\b"
    r"|\bare (?:we|things|systems) (?:up|down|ok|okay|fine|healthy)\b"
    r"|\bhow (?:are|is) (?:things|everything|it going|prod|production)\b"
    r"|\bwhat'?s (?:broken|down|on fire|happening|going on)\b|\banything (?:broken|down|on fire)\b"
    r"|\bis (?:\S++ ){0,2}(?:down|up|broken|degraded)\b"
)
_WHO = re.compile(r"^(?:who|whos|who'?s|who is|who are)\b|\bwho (?:is|are|do|should|can)\b")
_CONTACT = re.compile(
    r"\b(?:how (?:do|can|should) (?:i|we) (?:reach|contact|call)"
    r"|contact (?:info(?:rmation)? |details )?(?:for|of)"
    r"|phone(?: number)? (?:for|of)|number for|reach)\s++(.+)$"
)
_HELP = re.compile(
    r"^(?:help|\?|what can you do|what do you do|commands|usage|how does this work"
    r"|how do i use (?:you|this))\b"
)
_GREETING = re.compile(r"^(?:hi|hello|hey|yo|thanks|thank you|thx|ty|good (?:morning|evening))$")
_JOIN = re.compile(r"\b(?:and|then|also|plus|after that)\b")
_STOP = frozenset(
    [
        "the",
        "a",
        "an",
        "now",
        "please",
        "asap",
        "urgently",
        "immediately",
        "right",
        "away",
        "me",
        "for",
        "to",
        "about",
        "someone",
        "somebody",
        "anyone",
        "help",
        "again",
        "too",
    ]
)
_VAGUE = frozenset({"someone", "somebody", "anyone", "anybody", "people"})


def parse(text: str, services: Sequence[str] = ()) -> Intent:
    """The intent of one mention (the bot's name already stripped). Raises UsageError when the
    text is longer than MAX_CHARS."""
    if len(text) > MAX_CHARS:
        raise UsageError(
            f"that is too long for me to read as a request ({len(text):,} characters; I read "
            f"up to {MAX_CHARS:,})",
            hint="ask in a sentence or two, or use a command: help lists them",
        )
    return _parse(text, services)


def _parse(text: str, services: Sequence[str]) -> Intent:
    """`parse` without the length limit (linear all the same: the tests hold it to that)."""
    clean = _normalise(text)
    low = clean.lower()
    if not low:
        return Intent(ask="Yes? Ask me e.g. “who is on call” or “what's the status”.")
    incident = m.group(0).upper() if (m := _INCIDENT.search(low)) else None
    severity = _severity(low)
    service = _service(low, services)
    base = Intent(incident=incident, severity=severity, service=service)

    if _HELP.search(low):
        return _with(base, command="help", summary="the list of commands")
    if _GREETING.match(low):
        return _with(
            base,
            say="Hello! Ask me “who is on call”, “what's the status”, or "
            "“page the IC”; !help lists every command.",
        )
    if _NEGATED_PAGE.search(low):
        return _with(base, say="OK, I will not page anyone.")

    # Read-only questions first: "who should I page?" is a lookup, never a page.
    if _WHO.search(low) or (_ONCALL_RE.search(low) and not _verbs(low)):
        who = _contact_target(clean, low)
        if who:
            return _with(
                base, command=command_line("ic who", [who]), summary=f"contact details for {who}"
            )
        if _RESPONDERS.search(low):
            return _with(base, command="ic responders", summary="everyone on call")
        if service is not None and service not in _NOT_A_SERVICE:
            return _for_service(base, service, services)
        if _IC_WORDS.search(low) or re.search(r"\b(?:call|page|contact|ping)\b", low):
            return _with(base, command="ic", summary=_oncall_summary(service))
    who = _contact_target(clean, low)
    if who:
        return _with(
            base, command=command_line("ic who", [who]), summary=f"contact details for {who}"
        )

    verbs = _verbs(low)
    if len(verbs) > 1:
        first, second = verbs[0], verbs[1]
        between = low[first[1] : second[1]]
        if _JOIN.search(between):
            names = " and ".join(_VERB_NAMES[v] for v, _ in verbs[:2])
            return _with(
                base, ask=f"That is two things ({names}). Which one first? Ask me one at a time."
            )
    if verbs:
        return _VERB_HANDLERS[verbs[0][0]](clean, low, base)

    if _LIST.search(low) or _then(_LIST_WORD, _INCIDENTS, low):
        return _with(base, command="incident list", summary="the open incidents")
    if incident is not None:
        if re.search(r"\btimeline\b", low):
            return _with(
                base, command=f"incident timeline {incident}", summary=f"the timeline of {incident}"
            )
        if re.search(r"\b(?:export|postmortem|post-mortem|write-?up)\b", low):
            return _with(
                base,
                command=f"incident export {incident}",
                summary=f"a postmortem draft for {incident}",
            )
        return _with(
            base, command=f"incident status {incident}", summary=f"the status of {incident}"
        )
    if _STATUS.search(low):
        return _with(base, command="status", summary="the system status")
    if _then(_PENDING, _APPROVALS, low) or _then(_APPROVALS, _PENDING, low) or low == "approvals":
        return _with(base, command="approvals", summary="the pending approval requests")
    return base


_ONCALL_RE = re.compile(r"\b" + _ONCALL + r"\b")
_ONCALL_FOR = re.compile(
    r"\b" + _ONCALL + r"\s++(?:for|on|in)\s++(?:the\s++)?([a-z0-9][a-z0-9-]*+)"
)


def _then(first: re.Pattern[str], second: re.Pattern[str], low: str) -> bool:
    """`first` somewhere, and `second` after it: what `first.*second` asks, in linear time
    (a `.*` makes the engine rescan the rest of the text from every match of `first`)."""
    m = first.search(low)
    return m is not None and second.search(low, m.end()) is not None


def _verbs(low: str) -> list[tuple[str, int]]:
    """Mutating verbs found, in order of appearance (kind, position)."""
    found: list[tuple[str, int]] = []
    for kind, pattern in (
        ("declare", _DECLARE),
        ("page", _PAGE_VERB),
        ("ack", _ACK_VERB),
        ("resolve", _RESOLVE_VERB),
        ("close", _CLOSE_VERB),
        ("escalate", _ESCALATE_VERB),
        ("update", _UPDATE_VERB),
    ):
        m = pattern.search(low)
        if m is None:
            continue
        if kind == "page" and re.search(r"\b(?:the|a|that|this) page\b", low[: m.end()]):
            continue  # "ack the page": the noun, not the verb
        if kind in ("resolve", "close", "update", "ack", "escalate") and not _about_incident(
            low, kind
        ):
            continue
        found.append((kind, m.start()))
    found.sort(key=lambda kv: kv[1])
    # an incident verb wins over "page" when the page is the thing being acknowledged
    return found


def _about_incident(low: str, kind: str) -> bool:
    if _INCIDENT.search(low) or re.search(r"\b(?:incident|it|this|that|the page|outage)\b", low):
        return True
    if kind == "escalate" and _IC_WORDS.search(low):
        return True  # "escalate to the IC" is a page
    return kind in ("ack", "escalate") and len(low.split()) <= 2


def _page(clean: str, low: str, base: Intent) -> Intent:
    m = _PAGE_VERB.search(low)
    assert m is not None
    rest_low = low[m.end() :]
    rest = clean[m.end() :]
    cut = re.search(
        r"\b(?:about|regarding|re|because|since|for|with|on(?![\s-]?call)|in)\b", rest_low
    )
    if cut is not None:
        rest_low, rest = rest_low[: cut.start()], rest[: cut.start()]
    if _RESPONDERS.search(rest_low):
        return _with(
            base,
            command="ic page responders",
            confirm=True,
            summary="page everyone on the responder schedules",
        )
    person = _EMAIL.search(rest) or _MENTION.search(rest)
    if person is not None:
        who = person.group(0)
        return _with(
            base, command=command_line("ic page", [who]), confirm=True, summary=f"page {who}"
        )
    if _IC_WORDS.search(rest_low):
        return _with(
            base, command="ic page", confirm=True, summary="page the Incident Commanders on call"
        )
    words = [w for w in re.findall(r"[\w.'-]+", rest) if w.lower() not in _STOP]
    if any(w.lower() in _VAGUE for w in re.findall(r"[\w'-]+", rest_low)) or not words:
        return _with(
            base,
            ask="Page whom? Say “page the IC”, “page the responders”, or “page jane@example.com”.",
        )
    name = " ".join(words)
    return _with(
        base, command=command_line("ic page", [name]), confirm=True, summary=f"page {name}"
    )


def _ack(clean: str, low: str, base: Intent) -> Intent:
    if base.incident is None:
        return _with(
            base,
            ask="Which incident? e.g. “acknowledge INC-2026-0042” "
            "(inside an incident channel, !incident ack works without the id).",
        )
    return _with(
        base,
        command=f"incident ack {base.incident}",
        confirm=True,
        summary=f"acknowledge {base.incident}",
    )


def _resolve(clean: str, low: str, base: Intent) -> Intent:
    if base.incident is None:
        return _with(
            base,
            ask="Which incident is resolved? e.g. “resolve INC-2026-0042 rolled back the deploy”.",
        )
    note = _after(clean, low, _INCIDENT)
    note = re.sub(r"^(?:is |as )?(?:resolved|fixed)\b", "", note, flags=re.I).strip(" ,.:-")
    note = re.sub(r"^(?:with|because|note|since|by)\b[:\s]*", "", note, flags=re.I).strip()
    if not note:
        return _with(
            base,
            ask=f"What fixed {base.incident}? Say “resolve {base.incident} "
            "<what was done>” so the timeline has it.",
        )
    return _with(
        base,
        command=command_line("incident resolve", [base.incident, note]),
        confirm=True,
        summary=f"resolve {base.incident}: {note}",
    )


def _close(clean: str, low: str, base: Intent) -> Intent:
    if base.incident is None:
        return _with(base, ask="Which incident should I close? e.g. “close INC-2026-0042”.")
    return _with(
        base,
        command=f"incident close {base.incident}",
        confirm=True,
        summary=f"close {base.incident}",
    )


def _escalate(clean: str, low: str, base: Intent) -> Intent:
    if base.incident is None:
        if _IC_WORDS.search(low):
            return _with(
                base,
                command="ic page",
                confirm=True,
                summary="page the Incident Commanders on call",
            )
        return _with(
            base,
            ask="Which incident, and to which severity? e.g. “escalate INC-2026-0042 to SEV-1”.",
        )
    if base.severity is None:
        return _with(base, ask=f"Escalate {base.incident} to which severity (SEV-1 to SEV-4)?")
    return _with(
        base,
        command=f"incident escalate {base.incident} {base.severity}",
        confirm=True,
        summary=f"escalate {base.incident} to {base.severity}",
    )


def _update(clean: str, low: str, base: Intent) -> Intent:
    if base.incident is None:
        return _with(base, ask="Which incident? e.g. “update INC-2026-0042: rolled back”.")
    note = _after(clean, low, _INCIDENT).strip(" ,.:-")
    note = re.sub(r"^(?:with|saying|that)\b[:\s]*", "", note, flags=re.I).strip()
    if not note:
        return _with(base, ask=f"What is the update for {base.incident}?")
    return _with(
        base,
        command=command_line("incident update", [base.incident, note]),
        confirm=True,
        summary=f"add to the timeline of {base.incident}: {note}",
    )


def _declare(clean: str, low: str, base: Intent) -> Intent:
    m = _DECLARE.search(low)
    assert m is not None
    rest = clean[m.end() :]
    rest = re.sub(
        r"^[\s:,-]*(?:(?:for|about|regarding|re|on|with|because of|:)\s*)?", "", rest, flags=re.I
    )
    rest = " ".join(_SEV.sub("", rest).split())
    if base.service:
        rest = _without_service(rest.rstrip(" .!?"), base.service)  # "... on service x" only
    rest = _SEV_AT_END.sub("", rest)
    title = re.sub(r"\s+", " ", rest).strip(" ,.:-")
    if not title:
        return _with(
            base,
            ask="What is the incident about? e.g. “create an incident for API "
            "errors” (severity and service are optional: “sev1 … service api”).",
        )
    args = [title]
    if base.severity:
        args += ["--sev", base.severity]
    if base.service:
        args += ["--service", base.service]
    sev = f" ({base.severity})" if base.severity else ""
    return _with(
        base,
        command=command_line("incident declare", args),
        confirm=True,
        summary=f"declare an incident{sev}: {title}",
    )


_VERB_HANDLERS = {
    "page": _page,
    "ack": _ack,
    "resolve": _resolve,
    "close": _close,
    "escalate": _escalate,
    "update": _update,
    "declare": _declare,
}
_VERB_NAMES = {
    "page": "page someone",
    "ack": "acknowledge",
    "resolve": "resolve",
    "close": "close",
    "escalate": "escalate",
    "update": "post an update",
    "declare": "declare an incident",
}


def _contact_target(clean: str, low: str) -> str | None:
    m = _CONTACT.search(low)
    if m is None:
        person = _EMAIL.search(clean)
        if person is not None and re.match(r"^(?:who(?: is|'?s)?|contact)\b", low):
            return person.group(0)
        return None
    target = clean[m.start(1) :].strip(" ?.!,")
    target = re.sub(r"^(?:the )", "", target, flags=re.I)
    return target or None


# Words after "on call for" that are not service names.
_NOT_A_SERVICE = frozenset(
    [
        "ic",
        "ics",
        "incident",
        "incidents",
        "responders",
        "today",
        "tonight",
        "now",
        "this",
        "week",
        "weekend",
        "me",
        "us",
        "it",
        "that",
    ]
)


def _for_service(base: Intent, service: str, services: Sequence[str]) -> Intent:
    """A question about a service ("who is on call for payments?") is answered for that
    service, or says it does not know the service; never the IC list as if it were the
    answer."""
    known = {s.lower(): s for s in services}
    name = known.get(service.lower())
    if name is not None:
        return _with(base, command=f"ic service {name}", summary=f"who is on call for {name}")
    listing = (
        f"I know: {', '.join(services)}."
        if services
        else "No services are configured (pagerduty.services)."
    )
    return _with(
        base,
        say=f"I don't know a service called {service}. {listing} "
        "Ask “who is on call” for the Incident Commanders.",
    )


def _oncall_summary(service: str | None) -> str:
    return f"who is on call (for {service})" if service else "who is on call"


def _severity(low: str) -> str | None:
    m = _SEV.search(low)
    if m is not None:
        return f"SEV-{m.group(1)}"
    for word, sev in _SEV_WORDS.items():
        if re.search(rf"\b{word}\b", low):
            return sev
    return None


def _service(low: str, services: Sequence[str]) -> str | None:
    for pattern in (_SERVICE_BEFORE, _SERVICE_AFTER):  # "api service", then "service api"
        m = pattern.search(low)
        if m is not None and m.group(1) not in _NOT_SERVICE:
            return m.group(1)
    for name in services:
        if re.search(rf"\b{re.escape(name.lower())}\b", low):
            return name
    m = _ONCALL_FOR.search(low)
    return m.group(1) if m else None


def _after(clean: str, low: str, pattern: re.Pattern[str]) -> str:
    m = pattern.search(low)
    return clean[m.end() :].strip() if m else ""


_SEV_AT_END = re.compile(r"\b(?:with )?(?:severity|sev)\b\s*+$", re.I)


def _without_service(title: str, service: str) -> str:
    """The title without a trailing "[, ][on|for|in|of ][the ]service X" or "X service"
    (any case). String methods: an end-anchored pattern is retried at every position."""
    svc = service.lower()
    for tail in (f"service {svc}", f"svc {svc}", f"{svc} service"):
        if len(title) >= len(tail) and title[-len(tail) :].lower() == tail:
            cut = title[: -len(tail)]
            break
    else:
        return title
    if cut[-4:].lower() == "the ":
        cut = cut[:-4]
    for word in ("on ", "for ", "in ", "of "):
        if cut[-len(word) :].lower() == word:
            cut = cut[: -len(word)]
            break
    return cut.rstrip(" ,")


def _without_trailing(text: str) -> str:
    """The text without politeness at its end: ", please", " asap thanks" (each word after a
    space or comma, at the very end). Walks back by index: no copy per word stripped."""
    end = len(text)
    while True:
        word = next((w for w in _TRAILING if text[end - len(w) : end].lower() == w), None)
        if word is None or end - len(word) < 1 or text[end - len(word) - 1] not in " ,":
            return text[:end]
        end -= len(word)
        while end and text[end - 1] in " ,":
            end -= 1


def _normalise(text: str) -> str:
    """Same-meaning spellings to one; keeps the case of what is left (titles, names)."""
    t = text.replace("\u2019", "'").replace("\u2018", "'").replace("\u201c", '"')
    t = t.replace("\u201d", '"')
    t = " ".join(t.split())
    t = t.strip(" ?!.").strip()
    for _ in range(3):
        t = _without_trailing(_POLITE.sub("", t, count=1)).strip(" ?!.,")
    return t.strip(" ?!.,").strip()


def _with(base: Intent, **changes: object) -> Intent:
    from dataclasses import replace

    return replace(base, **changes)  # type: ignore[arg-type]
