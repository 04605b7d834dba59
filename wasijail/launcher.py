"""The supervisor's side of the fork server: start it, spawn children, wait, kill.

The fork server (`forkserver.py`) is the children's parent, so it reaps them
and reports each wait status over the control socket; the supervisor kills a
child through the pidfd it was handed, which cannot hit a recycled pid.
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
from typing import Sequence

import trio

from .protocol import control, transport
from .protocol.setup import ChildLimits
from .results import WasijailError
from .serverproc import ServerProcess, start_server


class ForkServerGone(WasijailError):
    """The fork server died; no child can be started or waited for."""


class Child:
    """A running child: its pid, a pidfd to kill it, and its exit status when known."""

    def __init__(self, launcher: "Launcher", pid: int, pidfd: int | None) -> None:
        self._launcher = launcher
        self.pid = pid
        self._pidfd = pidfd  # None once closed (or when the fork server sent none)
        self.returncode: int | None = None  # as subprocess: -N when killed by signal N
        self.cpu_time = 0.0  # user + system seconds, once it has ended
        self.max_rss = 0  # peak resident set in bytes, once it has ended

    def kill(self) -> None:
        if self.returncode is None and self._pidfd is not None:
            try:
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
            except ProcessLookupError:
                pass

    async def wait(self) -> int:
        if self.returncode is None:
            exited = await self._launcher._wait(self.pid)
            if exited is None:  # the fork server died: its children died with it
                self.returncode = -signal.SIGKILL
            else:
                self.returncode = os.waitstatus_to_exitcode(exited.status)
                self.cpu_time = (exited.user_us + exited.system_us) / 1e6
                self.max_rss = exited.max_rss_kib * 1024
            self.close()
        return self.returncode

    def close(self) -> None:
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None


class Launcher:
    """Owns one fork server process for the supervisor's lifetime."""

    def __init__(self, command: Sequence[str] | None = None, *, server: ServerProcess | None = None) -> None:
        # The fork server's command line (the control socket's fd is appended),
        # or a server already started with serverproc.start_server().
        self._command = command
        self._server = server
        self._sock: trio.socket.SocketType | None = None
        self._ids = itertools.count(1)
        self._spawned: dict[int, tuple[trio.Event, list]] = {}
        self._exits: dict[int, trio.Event] = {}
        self._statuses: dict[int, control.Exited] = {}
        self._gone = False

    @property
    def alive(self) -> bool:
        """False once the fork server has gone: no child can be started or awaited through it."""
        return self._server is not None and not self._gone

    @property
    def pid(self) -> int | None:
        """The fork server's pid (the parent of every child), once started."""
        return self._server.popen.pid if self._server is not None else None

    async def start(self, nursery: trio.Nursery) -> None:
        if self._server is None:
            self._server = start_server(self._command)
        self._sock = trio.socket.from_stdlib_socket(self._server.sock)
        nursery.start_soon(self._read_loop)

    async def spawn(self, broker_fd: int, stdio: tuple[int, int, int], violation_fd: int, *,
                    limits: ChildLimits = ChildLimits(), require: tuple[str, ...] = (),
                    cgroup_procs: tuple[int, ...] = (), host_uid: int = -1, artifact_fd: int = -1) -> Child:
        if self._gone or self._sock is None:
            raise ForkServerGone("the fork server is not running")
        run_id = next(self._ids)
        done, slot = trio.Event(), []
        self._spawned[run_id] = (done, slot)
        message = control.Spawn.of(run_id, limits, host_uid, require, artifact=artifact_fd >= 0)
        artifact = (artifact_fd,) if artifact_fd >= 0 else ()
        fds = (broker_fd, *stdio, violation_fd, *artifact, *cgroup_procs)
        await self._sock.sendmsg([message.encode()], transport.rights(fds))
        await done.wait()
        del self._spawned[run_id]
        if not slot:
            raise ForkServerGone("the fork server died while starting a child")
        reply, pidfd = slot
        if reply.pid < 0:
            if pidfd is not None:
                os.close(pidfd)
            raise WasijailError(f"cannot start a child: {reply.error.decode(errors='replace')}")
        return Child(self, reply.pid, pidfd)

    async def _wait(self, pid: int) -> "control.Exited | None":
        if self._gone and pid not in self._exits:
            return self._statuses.pop(pid, None)  # nobody is left to report it
        event = self._exits.setdefault(pid, trio.Event())
        await event.wait()
        del self._exits[pid]
        return self._statuses.pop(pid, None)

    async def _read_loop(self) -> None:
        assert self._sock is not None
        try:
            while True:
                data, ancdata, _, _ = await self._sock.recvmsg(transport.MAX_MESSAGE, transport.RECV_CMSG_SPACE)
                fds = transport.unpack_fds(ancdata)
                if not data:
                    break
                message = control.decode_from_server(data)
                if isinstance(message, control.Spawned):
                    waiter = self._spawned.get(message.run_id)
                    if waiter is None:  # its spawn was cancelled (the fork server reaps that child)
                        transport.close_all(fds)
                        continue
                    transport.close_all(fds[1:])  # one pidfd is all a reply carries
                    waiter[1].extend((message, fds[0] if fds else None))
                    waiter[0].set()
                else:
                    self._statuses[message.pid] = message
                    self._exits.setdefault(message.pid, trio.Event()).set()
        finally:
            self._gone = True
            self._sock.close()
            for done, _ in self._spawned.values():
                done.set()
            for event in self._exits.values():
                event.set()  # their status stays unknown: reported as killed

    async def aclose(self) -> None:
        if self._sock is not None and not self._gone:
            try:
                self._sock.shutdown(socket.SHUT_WR)  # the server sees EOF and exits
            except OSError:
                pass
        if self._server is not None:
            popen = self._server.popen
            with trio.CancelScope(shield=True):
                if popen.poll() is None:
                    # Woken the moment it exits (a pidfd is readable then), not by polling.
                    pidfd = os.pidfd_open(popen.pid)
                    try:
                        with trio.move_on_after(5):
                            await trio.lowlevel.wait_readable(pidfd)
                    finally:
                        trio.lowlevel.notify_closing(pidfd)
                        os.close(pidfd)
                if popen.poll() is None:
                    popen.kill()
                    await trio.to_thread.run_sync(popen.wait)
