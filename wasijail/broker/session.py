"""Serving one child's broker socket: receive, validate, dispatch, reply.

The loop ends when the child closes its end (it has reported and exited), or
at the first malformed message: then the child is killed and the session
records the violation. Descriptors a child sends are always closed: an honest
child never sends any.
"""

from __future__ import annotations

import array
import os
import socket
from typing import Callable

import trio

from .. import protocol
from .handlers import Broker


class BrokerSession:
    def __init__(self, broker: Broker, sock, kill: Callable[[], None]) -> None:
        self.broker = broker
        self.sock = sock  # a trio socket
        self.kill = kill
        self.reported: protocol.Result | None = None
        self.violation: str | None = None
        self.compiled = trio.Event()  # set when the child says its module compiled
        self.sandbox_missing: tuple[str, ...] | None = None  # layers the child could not apply
        self.artifact_sink = -1  # the memfd the child writes its artifact to, if it should
        self.artifact: bytes | None = None  # what it wrote, copied before any guest code ran

    async def serve(self) -> None:
        while True:
            try:
                data, ancdata, flags, _ = await self.sock.recvmsg(
                    protocol.MAX_MESSAGE + 1, protocol.RECV_CMSG_SPACE)
            except ConnectionResetError:
                return  # the child died with a request unanswered
            fds = protocol.unpack_fds(ancdata)
            for fd in fds:
                os.close(fd)
            if not data:
                return
            try:
                if fds or flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
                    raise protocol.ProtocolError("unexpected descriptors or a truncated message")
                request = protocol.decode_request(data)
                if isinstance(request, protocol.Result):
                    if self.reported is not None:
                        raise protocol.ProtocolError("a second result")
                    self.reported = request
                    continue
                if isinstance(request, protocol.SandboxReport):
                    if self.sandbox_missing is not None or self.compiled.is_set():
                        raise protocol.ProtocolError("unexpected sandbox report")
                    text = request.missing.decode("utf-8", "replace")
                    self.sandbox_missing = tuple(line for line in text.split("\n") if line)
                    continue
                if isinstance(request, protocol.Compiled):
                    if self.compiled.is_set() or (request.artifact_size and self.artifact_sink < 0):
                        raise protocol.ProtocolError("unexpected compile notice")
                    if request.artifact_size:
                        self.artifact = _read_artifact(self.artifact_sink, request.artifact_size)
                    self.compiled.set()
                    reply, reply_fds = protocol.Reply(0), []
                else:
                    reply, reply_fds = self.broker.dispatch(request)
            except protocol.ProtocolError as exc:
                self.violation = f"malformed broker request: {exc}"
                self.kill()
                return
            try:
                await self.sock.sendmsg([reply.encode()], _rights(reply_fds))
            except OSError:
                return  # the child is gone
            finally:
                for fd in reply_fds:
                    os.close(fd)


def _read_artifact(fd: int, size: int) -> bytes:
    data = os.pread(fd, size, 0)
    if len(data) != size:
        raise protocol.ProtocolError(f"artifact of {len(data)} bytes, announced {size}")
    return data


def _rights(fds: list[int]):
    if not fds:
        return []
    return [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))]
