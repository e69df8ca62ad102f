"""uvicorn's HTTP protocol with a deadline for receiving each request.

uvicorn times out idle keep-alive connections, but not a client that sends its request slowly (a
header a byte at a time, a body that trickles): each such connection holds a socket and a parser
for as long as the client likes. Here every request, headers and body, must arrive within
LENET_SERVE_REQUEST_TIMEOUT_S of its first byte (or of the connection, for the first request);
past that the connection is closed with one line in the log. `lenet-dist serve --request-timeout`.
"""

from __future__ import annotations

import logging
import os

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("lenet_dist.serve")


class TimedRequestProtocol(HttpToolsProtocol):
    def connection_made(self, transport) -> None:  # noqa: ANN001 (asyncio's own signature)
        self._deadline = None
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:  # a keep-alive connection's next request
            self._arm()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        seconds = float(os.environ.get("LENET_SERVE_REQUEST_TIMEOUT_S", "60"))
        self._deadline = self.loop.call_later(seconds, self._too_slow, seconds)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self, seconds: float) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            host = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
            log.warning("serve: %s did not send its request within %g s; connection closed", host, seconds)
            self.transport.close()
