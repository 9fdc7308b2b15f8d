"""The Toy Chat connector: reads the room's events, posts and edits replies, opens DMs.

Same constructor shape as every connector: its section, then `clock` and `prefix`."""

from __future__ import annotations

import logging

from chatopsd.connectors.base import Session
from chatopsd.core.errors import FatalConnectorError, TransientSendError
from chatopsd.core.messages import Destination, Reply, Sent
from chatopsd.core.ports import Clock
from tests.fakes.toychat import SERVERS, ToyServer
from tests.toychat import events, render
from tests.toychat.config import ToyChatSection

log = logging.getLogger("chatopsd.toychat")


class ToyChatConnector:
    platform = events.PLATFORM

    def __init__(self, section: ToyChatSection, *, clock: Clock, prefix: str = "!") -> None:
        self.section, self.clock, self.prefix = section, clock, prefix
        self.me = events.identity(section.bot_name)
        self._token = section.token.get_secret_value()

    def _server(self) -> ToyServer:
        server = SERVERS.get(self.section.room)
        if server is None:
            raise ConnectionError(f"no Toy Chat room {self.section.room!r}")  # retried
        return server

    async def run(self, session: Session) -> None:
        server = self._server()
        if not server.login(self._token):
            raise FatalConnectorError("Toy Chat refused the token: check toychat.token")
        session.ready()
        while True:
            payload = await server.events.get()
            try:
                event = events.inbound(payload, self.me, self.prefix)
            except events.MalformedPayload as exc:
                log.warning("toychat: skipped a malformed payload: %s", exc)
                continue
            if event is not None:
                session.emit(event)

    async def send(self, destination: Destination, reply: Reply) -> Sent | None:
        text = render.render(reply, self.prefix)
        try:
            message_id = self._server().post(
                self._token, destination.channel, text, destination.thread
            )
        except ConnectionError as exc:
            raise TransientSendError(str(exc)) from exc
        return Sent(destination, message_id)

    async def edit(self, sent: Sent, reply: Reply) -> None:
        self._server().edit(self._token, sent.message_id, render.render(reply, self.prefix))

    async def close(self) -> None:
        return None

    # -- DIRECT_MESSAGES ---------------------------------------------------------------------

    async def dm_channel(self, user_id: str) -> str:
        return self._server().open_dm(self._token, user_id)
