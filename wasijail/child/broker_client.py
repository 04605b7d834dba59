"""The child's end of the broker socket: blocking request, blocking reply."""

from __future__ import annotations

import os
import socket

from .. import protocol


class BrokerGone(Exception):
    """The supervisor closed the socket: the run is over."""


class BrokerClient:
    __slots__ = ("sock", "calls")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.calls = 0

    def call(self, request: protocol.Message, reply_cls: type[protocol.Message], fds: tuple[int, ...] = ()):
        """Send one request (with `fds`, for the requests that carry one); return (reply, donated fds)."""
        self.calls += 1
        protocol.send(self.sock, request, fds)
        data, fds = protocol.receive(self.sock)
        if not data:
            raise BrokerGone()
        return protocol.decode_reply(reply_cls, data), fds

    def call_errno(self, request: protocol.Message, fds: tuple[int, ...] = ()) -> int:
        reply, fds = self.call(request, protocol.Reply, fds)
        for fd in fds:  # an errno-only reply never carries fds
            os.close(fd)
        return reply.errno

    def send(self, message: protocol.Message) -> None:
        """A one-way notice to the supervisor (no reply)."""
        protocol.send(self.sock, message)

    def report(self, result: protocol.Result) -> None:
        try:
            protocol.send(self.sock, result)
        except OSError:
            pass  # the supervisor is gone; nobody is left to tell
