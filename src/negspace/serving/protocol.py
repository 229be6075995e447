"""uvicorn's HTTP protocol with a request read deadline (slowloris).

uvicorn closes idle keep-alive connections but has no limit on how long a client may take to
send a request's head and body: a client sending a byte every few seconds held a connection (and
a file descriptor) for ever. Here a connection must deliver a whole request within
`config.read_timeout` seconds of connecting or of its previous answer, or it is closed.
"""

from __future__ import annotations

from asyncio import TimerHandle
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

READ_TIMEOUT_S = 10.0


class DeadlineProtocol(HttpToolsProtocol):
    """HttpToolsProtocol closing a connection whose request is not in after the deadline."""

    def __init__(self, config: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self.read_timeout = float(getattr(config, "read_timeout", READ_TIMEOUT_S))
        self.read_deadline: TimerHandle | None = None

    def _arm(self) -> None:
        self._disarm()
        self.read_deadline = self.loop.call_later(self.read_timeout, self._too_slow)

    def _disarm(self) -> None:
        if self.read_deadline is not None:
            self.read_deadline.cancel()
            self.read_deadline = None

    def _too_slow(self) -> None:
        self.read_deadline = None
        if not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_complete(self) -> None:
        self._disarm()  # the request is in: the app's time to answer is not bounded here
        super().on_message_complete()

    def on_response_complete(self) -> None:
        pipelined = bool(self.pipeline)  # a request already in starts now: no deadline for it
        super().on_response_complete()
        if not pipelined and not self.transport.is_closing():
            self._arm()  # the next request on this connection gets the same deadline

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)
