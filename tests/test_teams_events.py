"""Teams activities -> Inbound events and conversation references (pure, table-driven), with a
fuzz test: any field of a real-shaped activity replaced by junk gives events or nothing, and at
worst MalformedActivity."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatopsd.connectors.teams import events, render
from chatopsd.connectors.teams.events import MalformedActivity, translate
from chatopsd.core.messages import Button, Reply
from tests.test_inbound_fuzz import _mutated

APP = "00000000-0000-4000-8000-0000000000b1"
BOT = f"28:{APP}"
USER = {"id": "29:1alice", "name": "Alice", "aadObjectId": "aad-alice"}
CHANNEL = "19:chan@thread.tacv2"
TENANT = "tenant-1"
SERVICE = "https://smba.trafficmanager.net/amer/tenant-1/"
MENTION = {
    "type": "mention",
    "text": "<at>chatopsd</at>",
    "mentioned": {"id": BOT, "name": "chatopsd"},
}


def activity(text: str = "<at>chatopsd</at> ic page", **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "type": "message",
        "id": "1700000000002",
        "serviceUrl": SERVICE,
        "channelId": "msteams",
        "from": dict(USER),
        "recipient": {"id": BOT, "name": "chatopsd"},
        "conversation": {
            "conversationType": "channel",
            "tenantId": TENANT,
            "id": f"{CHANNEL};messageid=1700000000001",
        },
        "text": text,
        "entities": [MENTION],
        "channelData": {
            "tenant": {"id": TENANT},
            "team": {"id": "19:team@thread.tacv2", "name": "Ops"},
            "channel": {"id": CHANNEL},
        },
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


def tr(act: Any, **kw: Any) -> events.Translated:
    return translate(act, app_id=APP, prefix="!", **kw)


def one(act: Any, **kw: Any) -> Any:
    (event,) = tr(act, **kw).events
    return event


def test_a_mention_in_a_thread_reply() -> None:
    event = one(activity())
    assert (event.text, event.kind) == ("ic page", "mention")
    assert event.channel == CHANNEL and event.thread == "1700000000001"
    assert event.actor.id == "aad-alice" and event.actor.name == "Alice"
    assert event.event_id == event.message_id == "1700000000002"


def test_a_top_level_post_is_no_thread() -> None:
    act = activity(
        conversation={
            "conversationType": "channel",
            "tenantId": TENANT,
            "id": f"{CHANNEL};messageid=1700000000002",
        }
    )
    assert one(act).thread is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<at>chatopsd</at>\u00a0ic page", ("ic page", "mention")),
        ("<at>chatopsd</at>&nbsp;ic", ("ic", "mention")),
        ("!ic page", ("!ic page", "message")),  # the prefix form keeps its text for the bus
        ("<at>chatopsd</at> ic swap <at>Bob</at>", ("ic swap @Bob", "mention")),
        ("<at>chatopsd</at> status &lt;db&gt; &amp; more", ("status <db> & more", "mention")),
    ],
)
def test_texts(text: str, expected: tuple[str, str]) -> None:
    entities = [MENTION, {"type": "mention", "text": "<at>Bob</at>", "mentioned": {"id": "29:bob"}}]
    event = one(activity(text, entities=entities))
    assert (event.text, event.kind) == expected


def test_chatter_and_others_mentions_are_not_for_us() -> None:
    assert tr(activity("hello all", entities=[])).events == ()
    bob = {"type": "mention", "text": "<at>Bob</at>", "mentioned": {"id": "29:bob"}}
    assert tr(activity("<at>Bob</at> ic", entities=[bob], recipient={"id": BOT})).events == ()


def test_a_missing_mention_entity_falls_back_on_the_bot_name() -> None:
    assert one(activity(entities=[{"type": "clientInfo"}])).text == "ic page"


def test_personal_chat_needs_no_prefix() -> None:
    act = activity(
        "ic",
        entities=[],
        conversation={"conversationType": "personal", "tenantId": TENANT, "id": "a:1dm"},
    )
    event = one(act)
    assert (event.text, event.kind, event.channel) == ("ic", "mention", "a:1dm")
    ref = tr(act).reference
    assert ref is not None and ref.user is not None and ref.user.id == "29:1alice"


def test_replies_in_our_threads_need_no_prefix() -> None:
    act = activity("ic ack", entities=[])
    assert tr(act).events == ()
    assert one(act, bot_roots={"1700000000001"}).kind == "thread"


def test_our_own_and_other_bots_messages_are_ignored() -> None:
    assert tr(activity(**{"from": {"id": BOT, "name": "chatopsd"}})).events == ()
    other = {"id": "28:other-bot", "name": "Other"}
    assert tr(activity(**{"from": other})).events == ()
    event = one(activity(**{"from": other}), allow_bots=True)
    assert event.actor.is_bot


def test_team_filter() -> None:
    assert tr(activity(), team_ids=["Sales"]).events == ()
    assert tr(activity(), team_ids=["Sales"]).reference is None  # nothing kept from it either
    assert one(activity(), team_ids=["Ops"]).text == "ic page"
    assert one(activity(), team_ids=["19:team@thread.tacv2"]).text == "ic page"


def test_card_buttons_round_trip_with_render() -> None:
    card = render.card(Reply(text="paged", buttons=(Button("Ack", "ic ack 42", "primary"),)))
    (execute,) = card["actions"]
    assert execute["type"] == "Action.Execute" and execute["style"] == "positive"
    invoke = activity(
        type="invoke",
        name="adaptiveCard/action",
        text=None,
        replyToId="1700000000005",
        value={
            "action": {"type": "Action.Execute", "verb": execute["verb"], "data": execute["data"]}
        },
    )
    translated = tr(invoke)
    (event,) = translated.events
    assert (event.text, event.kind, event.message_id) == ("ic ack 42", "button", "1700000000005")
    assert translated.invoke == "adaptiveCard/action"
    # The Action.Submit fallback: a message whose value carries the same data.
    submit = activity(text=None, replyToId="1700000000005", value=execute["fallback"]["data"])
    assert one(submit).kind == "button" and one(submit).text == "ic ack 42"


def test_other_invokes_and_other_verbs_make_no_event() -> None:
    foreign = activity(
        type="invoke",
        name="adaptiveCard/action",
        value={
            "action": {
                "type": "Action.Execute",
                "verb": "someone-else",
                "data": {render.BUTTON_KEY: "ic page"},
            }
        },
    )
    assert tr(foreign).events == () and tr(foreign).invoke == "adaptiveCard/action"
    fetch = activity(type="invoke", name="task/fetch", value={})
    assert tr(fetch).events == () and tr(fetch).invoke == "task/fetch"
    submit_other = activity(text=None, value={"other": "ic page"})
    assert tr(submit_other).events == ()


def test_reactions() -> None:
    act = activity(
        type="messageReaction",
        text=None,
        replyToId="1700000000001",
        reactionsAdded=[{"type": "like"}, {"type": "heart"}, "junk"],
        reactionsRemoved=[{"type": "sad"}],
    )
    translated = tr(act)
    assert [(e.text, e.kind, e.message_id) for e in translated.events] == [
        ("like", "reaction", "1700000000001"),
        ("heart", "reaction", "1700000000001"),
    ]
    assert len({e.event_id for e in translated.events}) == 2


def test_installation_and_membership() -> None:
    added = activity(type="conversationUpdate", text=None, membersAdded=[{"id": BOT}])
    translated = tr(added)
    assert translated.installed is True and translated.events == ()
    ref = translated.reference
    assert ref is not None and ref.service_url == SERVICE and ref.tenant_id == TENANT
    assert ref.team_id == "19:team@thread.tacv2" and ref.teams_channel_id == CHANNEL
    assert ref.channel == CHANNEL and ref.bot_id == BOT
    assert tr(activity(type="conversationUpdate", membersRemoved=[{"id": BOT}])).installed is False
    assert tr(activity(type="conversationUpdate", membersAdded=[{"id": "29:x"}])).installed is None
    assert tr(activity(type="installationUpdate", action="add")).installed is True
    assert tr(activity(type="installationUpdate", action="remove-upgrade")).installed is False


@pytest.mark.parametrize("body", [[], "x", 5, None, {}, {"type": 5}, {"type": ""}])
def test_not_an_activity(body: Any) -> None:
    with pytest.raises(MalformedActivity):
        tr(body)


def test_wrong_types_degrade() -> None:
    odd = activity(text=5, entities="x", conversation=[], channelData="y", recipient=None)
    translated = tr(odd)
    assert translated.events == () and translated.reference is None
    odd = activity(**{"from": {"id": 7}})
    assert tr(odd).events == ()


BASE = activity()
FUZZ_BASES = [
    BASE,
    activity(
        type="invoke",
        name="adaptiveCard/action",
        value={
            "action": {
                "type": "Action.Execute",
                "verb": render.VERB,
                "data": {render.BUTTON_KEY: "ic"},
            }
        },
    ),
    activity(type="messageReaction", reactionsAdded=[{"type": "like"}], replyToId="1"),
    activity(type="conversationUpdate", membersAdded=[{"id": BOT}]),
]


@settings(max_examples=400, deadline=None)
@given(base=st.sampled_from(FUZZ_BASES), data=st.data())
def test_translation_never_raises_anything_else(base: dict[str, Any], data: st.DataObject) -> None:
    act = _mutated(copy.deepcopy(base), data)
    try:
        translated = tr(act)
    except MalformedActivity:
        return
    for event in translated.events:
        assert isinstance(event.text, str) and isinstance(event.channel, str)
        assert isinstance(event.actor.id, str) and event.actor.id
    envelope = events.envelope(act)
    assert isinstance(envelope.tenant_id, str) and isinstance(envelope.service_url, str)
