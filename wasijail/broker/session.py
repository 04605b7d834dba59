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
        self.violation: str | None = None  # what the child did that ended it
        self.failure: str | None = None  # what went wrong on our side serving it (the run is a crash)
        self.compiled = trio.Event()  # set when the child says its module compiled
        self.on_compiled: Callable[[], None] | None = None  # called before the child may run guest code
        self.sandbox_missing: tuple[str, ...] | None = None  # layers the child could not apply
        self.artifact_sink = -1  # the memfd the child writes its artifact to, if it should
        self.artifact: bytes | None = None  # what it wrote, copied before any guest code ran

    async def serve(self) -> None:
        """Answer the child until it hangs up; end it at the first message it should not send.

        Nothing raised while serving reaches the caller: a broken or hostile
        message ends the run as a violation, anything unexpected on our side
        as a crash (`failure`), and either way the socket is closed at once so
        descriptors the child queued in it (copies of its stdout, say) are
        dropped and the run's output ends with the child.
        """
        try:
            await self._serve()
        except protocol.ProtocolError as exc:
            self._end(f"malformed broker request: {exc}")
        except trio.Cancelled:
            raise
        except Exception as exc:  # a bug or a host value we did not foresee: this run alone ends
            self.failure = f"internal error while serving the child: {type(exc).__name__}: {exc}"
            self.kill()
            self.sock.close()

    def _end(self, violation: str) -> None:
        self.violation = violation
        self.kill()
        self.sock.close()  # drops whatever the child queued, descriptors included

    async def _serve(self) -> None:
        while True:
            try:
                data, ancdata, flags, _ = await self.sock.recvmsg(
                    protocol.MAX_MESSAGE + 1, protocol.RECV_CMSG_SPACE)
            except (ConnectionResetError, trio.ClosedResourceError):
                return  # the child died with a request unanswered
            fds = protocol.unpack_fds(ancdata)
            try:
                if not data:
                    return
                reply, reply_fds = self._answer(data, fds, flags)
            finally:
                for fd in fds:
                    os.close(fd)
            if reply is None:
                continue
            try:
                await self.sock.sendmsg([reply.encode()], _rights(reply_fds))
            except OSError:
                return  # the child is gone
            finally:
                for fd in reply_fds:
                    os.close(fd)

    def _answer(self, data: bytes, fds: list[int], flags: int):
        """The reply to one message (None for one-way notices); ProtocolError ends the child."""
        if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
            raise protocol.ProtocolError("a truncated message")
        request = protocol.decode_request(data)
        if len(fds) != request.FDS:
            raise protocol.ProtocolError(f"{type(request).__name__} with {len(fds)} descriptors")
        if isinstance(request, protocol.Result):
            if self.reported is not None:
                raise protocol.ProtocolError("a second result")
            self.reported = request
            return None, []
        if isinstance(request, protocol.SandboxReport):
            if self.sandbox_missing is not None or self.compiled.is_set():
                raise protocol.ProtocolError("unexpected sandbox report")
            text = request.missing.decode("utf-8", "replace")
            self.sandbox_missing = tuple(line for line in text.split("\n") if line)
            return None, []
        if isinstance(request, protocol.Compiled):
            if self.compiled.is_set() or (request.artifact_size and self.artifact_sink < 0):
                raise protocol.ProtocolError("unexpected compile notice")
            if request.artifact_size:
                self.artifact = _read_artifact(self.artifact_sink, request.artifact_size)
            if self.on_compiled is not None:
                self.on_compiled()
            self.compiled.set()
            return protocol.Reply(0), []
        return self.broker.dispatch(request, tuple(fds))


def _read_artifact(fd: int, size: int) -> bytes:
    data = os.pread(fd, size, 0)
    if len(data) != size:
        raise protocol.ProtocolError(f"artifact of {len(data)} bytes, announced {size}")
    return data


def _rights(fds: list[int]):
    if not fds:
        return []
    return [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))]
