"""The child's end of the broker socket: blocking request, blocking reply."""

from __future__ import annotations

import socket

from ..protocol import broker as wire
from ..protocol import transport


class BrokerGone(Exception):
    """The supervisor closed the socket: the run is over."""


class BrokerClient:
    __slots__ = ("sock",)

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def call(self, request: wire.Message, body: type[wire.Reply] | None = None,
             fds: tuple[int, ...] = ()) -> tuple[wire.Reply | None, list[int]]:
        """Send one request (with `fds`, for the requests that carry one); return the
        reply's body and the descriptors donated with it. An error reply is WasiErrno."""
        sock = self.sock
        transport.send(sock, request, fds)
        data, donated = transport.receive(sock)
        if not data:
            raise BrokerGone()
        try:
            return wire.decode_reply(request, body, data), donated
        except BaseException:  # an error reply donates nothing: drop whatever came
            transport.close_all(donated)
            raise

    def ask(self, request: wire.Message, fds: tuple[int, ...] = ()) -> None:
        """A request answered by its errno alone: WasiErrno unless it is 0."""
        _, donated = self.call(request, None, fds)
        transport.close_all(donated)  # an errno-only reply never carries fds

    def send(self, message: wire.Message) -> None:
        """A one-way notice to the supervisor (no reply)."""
        transport.send(self.sock, message)

    def report(self, result: wire.Result) -> None:
        try:
            transport.send(self.sock, result)
        except OSError:
            pass  # the supervisor is gone; nobody is left to tell
