"""Serving one child's broker socket: receive, validate, dispatch, reply.

The loop ends when the child closes its end (it has reported and exited), or
at the first malformed message: then the child is killed and the session
records the violation. A message must carry exactly the descriptors its type
declares (`Message.FDS`: one for `FdFilestatSetTimes`, none for every other),
checked here once for every message, and every descriptor a child sends is
closed once its request is answered.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import threading
from typing import Callable

import trio

from ..protocol import broker as wire
from ..protocol import transport
from ..protocol.transport import ProtocolError
from .handlers import Broker
from .placement import IDLE, REBALANCE, Placement

# SO_RCVTIMEO's struct timeval: the kernel ends a blocking receive (EAGAIN) after this
# long, at no cost per message (a Python-level timeout would poll before every receive).
_IDLE_TIMEVAL = struct.pack("ll", 0, int(IDLE * 1e6))
_NO_TIMEVAL = struct.pack("ll", 0, 0)


class BrokerSession:
    """One child's broker socket, served by a thread of its own.

    Answering is blocking code on a worker thread, off the event loop: a
    request costs one receive and one send (no reschedule of the trio loop
    per message), and one child's slow calls never queue behind another's —
    the threads share only the GIL, which the host calls release.
    """

    def __init__(self, broker: Broker, sock: socket.socket, kill: Callable[[], None], *,
                 pid: int | None = None, placement: Placement | None = None) -> None:
        self.broker = broker
        self.sock = sock  # a blocking stdlib socket: the thread's alone while it serves
        self.kill = kill
        self.pid = pid  # the child's, for placement
        self.placement = placement if placement is not None and placement.useful and pid is not None else None
        self.cpu: int | None = None  # where the child and this thread are pinned now
        self._requests = 0  # while pinned, for the periodic rebalance
        self.reported: wire.Result | None = None
        self.reported_while_loading = False  # the result came before the module compiled: a module problem
        self.violation: str | None = None  # what the child did that ended it
        self.failure: str | None = None  # what went wrong on our side serving it (the run is a crash)
        self.compiled = trio.Event()  # set when the child says its module compiled
        self._compile_seen = False  # the same, on the serving thread at once (the event is set on the loop later)
        self.on_compiled: Callable[[], None] | None = None  # called before the child may run guest code
        self.sandbox_missing: tuple[str, ...] | None = None  # layers the child could not apply
        self.artifact_sink = -1  # the memfd the child writes its artifact to, if it should
        self.artifact: bytes | None = None  # what it wrote, copied before any guest code ran
        self._notify: Callable = lambda fn: fn()

    async def serve(self) -> None:
        """Answer the child until it hangs up; end it at the first message it should not send.

        Nothing raised while serving reaches the caller: a broken or hostile
        message ends the run as a violation, anything unexpected on our side
        as a crash (`failure`), and either way the socket is shut at once so
        descriptors the child queued in it (copies of its stdout, say) are
        dropped and the run's output ends with the child. Cancelling `serve`
        shuts the socket too, so the thread ends before the run's descriptors
        are closed: it never outlives them.
        """
        self.sock.setblocking(True)
        token = trio.lowlevel.current_trio_token()
        done = trio.Event()
        finished = threading.Event()  # the thread is done with the socket (set on the thread)
        self._notify = token.run_sync_soon  # thread -> loop, never blocking the thread

        def ended(_) -> None:  # on the thread, once serving has returned
            finished.set()
            try:
                token.run_sync_soon(done.set)
            except trio.RunFinishedError:
                pass

        # A thread of trio's cache, not a new one per child: an idle one is reused and none
        # is waited for to start (~1 ms of the event loop per run, in batches).
        trio.lowlevel.start_thread_soon(self._serve_in_thread, ended, name="wasijail-broker")
        try:
            await done.wait()
        finally:
            if not done.is_set():  # cancelled (a deadline, Ctrl-C): wake the thread, let it finish
                self._shut()
                finished.wait()

    def _shut(self) -> None:
        """Wake the thread: its receive returns nothing and it ends (and closes the socket)."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _serve_in_thread(self) -> None:
        try:
            self._serve()
        except ProtocolError as exc:
            self.violation = f"malformed broker request: {exc}"
            self.kill()
        except Exception as exc:  # a bug or a host value we did not foresee: this run alone ends
            self.failure = f"internal error while serving the child: {type(exc).__name__}: {exc}"
            self.kill()
        finally:
            if self.cpu is not None:  # the thread goes back to trio's cache: every CPU again
                self.placement.release(None, self.cpu)  # the child is ending: its pid is not touched
                self.cpu = None
            # Closing, not just shutting, drops every message still queued and the
            # descriptors they carry. Only this thread uses the socket, so it closes it.
            self.sock.close()

    def _place(self) -> None:
        """Pin the child and this thread together (see placement.py), with an idle timeout."""
        self.cpu = self.placement.pin(self.pid)
        if self.cpu is None:
            self.placement = None  # refused (a cpuset, say): not asked again for every request
        else:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _IDLE_TIMEVAL)

    def _unplace(self) -> None:
        """The child has not asked for anything for IDLE seconds: give it every CPU back."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _NO_TIMEVAL)
        # Only while the child still holds its end of the socket (no hang-up): then it
        # has not exited, so it has not been reaped and its pid is still its own.
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        alive = not any(events & select.POLLHUP for _, events in poller.poll(0))
        self.placement.release(self.pid if alive else None, self.cpu)
        self.cpu = None

    def _serve(self) -> None:
        sock = self.sock
        while True:
            try:
                data, ancdata, flags, _ = sock.recvmsg(transport.MAX_MESSAGE + 1, transport.RECV_CMSG_SPACE)
            except BlockingIOError:  # the idle timeout, set only while pinned
                self._unplace()
                continue
            except OSError:
                return  # the child died with a request unanswered, or the run shut the socket
            if self.placement is not None and self._compile_seen and data:
                if self.cpu is None:
                    self._place()  # asking again after an idle spell
                else:
                    self._requests += 1
                    if not self._requests % REBALANCE:
                        self.cpu = self.placement.rebalance(self.pid, self.cpu)
            fds = transport.unpack_fds(ancdata) if ancdata else ()
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
                if reply_fds:
                    sock.sendmsg([reply], transport.rights(reply_fds))
                else:
                    sock.send(reply)
            except OSError:
                return  # the child is gone
            finally:
                for fd in reply_fds:
                    os.close(fd)

    def _answer(self, data: bytes, fds: list[int], flags: int):
        """The encoded reply to one message and the descriptors to send with it
        (None for one-way notices); ProtocolError ends the child."""
        if flags & transport.TRUNCATED:
            raise ProtocolError("a truncated message")
        request = wire.decode_request(data)
        if len(fds) != request.FDS:
            raise ProtocolError(f"{type(request).__name__} with {len(fds)} descriptors")
        if isinstance(request, wire.Result):
            if self.reported is not None:
                raise ProtocolError("a second result")
            self.reported = request
            self.reported_while_loading = not self._compile_seen
            return None, ()
        if isinstance(request, wire.SandboxReport):
            if self.sandbox_missing is not None or self._compile_seen:
                raise ProtocolError("unexpected sandbox report")
            text = request.missing.decode("utf-8", "replace")
            self.sandbox_missing = tuple(line for line in text.split("\n") if line)
            return None, ()
        if isinstance(request, wire.Compiled):
            if self._compile_seen or (request.artifact_size and self.artifact_sink < 0):
                raise ProtocolError("unexpected compile notice")
            self._compile_seen = True
            if request.artifact_size:
                self.artifact = _read_artifact(self.artifact_sink, request.artifact_size)
            if self.on_compiled is not None:
                self.on_compiled()  # on this thread, before the reply lets guest code run
            if self.placement is not None:
                self._place()  # compiling is done (it uses every core): the guest and we share one
            self._notify(self.compiled.set)
            return wire.encode_reply(request.OP, 0), ()
        errno, body, reply_fds = self.broker.dispatch(request, tuple(fds))
        return wire.encode_reply(request.OP, errno, body), reply_fds


def _read_artifact(fd: int, size: int) -> bytes:
    data = os.pread(fd, size, 0)
    if len(data) != size:
        raise ProtocolError(f"artifact of {len(data)} bytes, announced {size}")
    return data

