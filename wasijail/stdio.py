"""The standard streams at the boundary between wasijail and its caller.

Two rules, both about descriptors the caller owns:

* Nothing internal lands on 0, 1 or 2. A process started with a standard
  stream closed hands its next descriptor that number, so the fork server's
  control socket could become the guest's stdout. Every wasijail process
  (CLI, fork server, a supervisor opened through the API) calls
  `fill_closed_stdio()` before it opens anything.
* A child never holds the caller's open file descriptions. Status flags
  (O_NONBLOCK, O_APPEND, O_DIRECT...) belong to the description, so native
  code in a compromised child could otherwise change the caller's own
  descriptor with fcntl(F_SETFL) or ioctl(FIONBIO). `PrivateStdio` gives the
  child a new description of the same file (reopened through /proc/self/fd),
  or, where a file cannot be reopened (a FIFO with no reader, no permission),
  a pipe that a thread of the supervisor copies through. A socket is the one
  exception: it has a single description and the guest may use it as a
  socket (sock_recv, sock_shutdown), so the child shares it and its status
  flags are put back when the run ends.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import stat
import sys
import threading
from typing import final

_DEVNULL = "/dev/null"
_CHUNK = 1 << 16


def fill_closed_stdio() -> None:
    """Open /dev/null on whichever of 0, 1, 2 is closed (reads: end of file; writes: lost).

    Python started with the stream closed left `sys.stdin`/`stdout`/`stderr`
    None; it gets a text stream on the new descriptor, so a message written
    to it is lost quietly instead of raising.
    """
    for fd, name, mode in ((0, "stdin", "r"), (1, "stdout", "w"), (2, "stderr", "w")):
        try:
            os.fstat(fd)
        except OSError as exc:
            if exc.errno != errno.EBADF:
                raise
            null = os.open(_DEVNULL, os.O_RDWR)  # the lowest free number: fd itself
            if null != fd:  # cannot happen while fd is the lowest closed number; be exact anyway
                os.dup2(null, fd, inheritable=True)
                os.close(null)
            else:
                os.set_inheritable(fd, True)
            if getattr(sys, name) is None:
                setattr(sys, name, open(fd, mode, closefd=False, errors="backslashreplace"))


@final
class _Reopened:
    # A plain class, not a dataclass: this module is imported before the CLI starts the fork
    # server, and `dataclasses` (with `inspect`) costs ~10 ms of that path.
    __slots__ = ("original", "private", "seekable")

    def __init__(self, original: int, private: int, seekable: bool) -> None:
        self.original = original  # the caller's descriptor (not ours to close)
        self.private = private  # our copy of the child's description: closed at the end
        self.seekable = seekable  # a regular file: its offset is handed back to the caller's description


@final
class PrivateStdio:
    """The child's three standard streams, each its own open file description.

    Built from the descriptors the caller handed over (``(stdin, stdout,
    stderr)``); `child_fds` go to the fork server and are closed by the
    supervisor after the spawn (`spawned()`). `finish()` hands regular-file
    offsets back to the caller's descriptions and stops the copy threads.
    """

    def __init__(self, fds: tuple[int, int, int], own: frozenset[int]) -> None:
        """fds: the three descriptors for the child; own: those of them the supervisor made
        itself (its pipes' ends for the child), passed through as they are and owned from
        here on: closed after the spawn, or by `close()`."""
        self.child_ends: list[int] = list(own)
        self._reopened: list[_Reopened] = []
        self._pumps: list[_Pump] = []
        self._restore: list[tuple[int, int]] = []  # shared sockets and their status flags
        # One private description per file and access mode: 2>&1 keeps one offset, and
        # `<file >file` (</dev/null >/dev/null) still gives stdout a description it may write.
        by_file: dict[tuple[int, int, int], int] = {}
        child = []
        try:
            for index, fd in enumerate(fds):
                if fd in own:
                    child.append(fd)
                    continue
                st = os.fstat(fd)
                if stat.S_ISSOCK(st.st_mode):
                    self._restore.append((fd, fcntl.fcntl(fd, fcntl.F_GETFL)))
                    child.append(fd)
                    continue
                key = (st.st_dev, st.st_ino, fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE)
                if key in by_file:
                    child.append(by_file[key])
                    continue
                private = self._reopen(fd, st)
                if private is None:
                    private = self._pipe_through(fd, reading=index == 0)
                by_file[key] = private
                child.append(private)
        except BaseException:
            self.close()
            raise
        self.child_fds = tuple(child)

    def _reopen(self, fd: int, st: os.stat_result) -> int | None:
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        accmode = flags & os.O_ACCMODE
        seekable = stat.S_ISREG(st.st_mode)
        new_flags = accmode | os.O_CLOEXEC | os.O_NOCTTY
        if seekable:
            new_flags |= flags & os.O_APPEND
        else:
            new_flags |= os.O_NONBLOCK  # a FIFO's open must never wait for its other end
        try:
            private = os.open(f"/proc/self/fd/{fd}", new_flags)
        except OSError:
            return None  # no reader on a FIFO, no permission: copy through a pipe instead
        try:
            if seekable:
                os.lseek(private, os.lseek(fd, 0, os.SEEK_CUR), os.SEEK_SET)
            else:
                os.set_blocking(private, True)  # what a guest expects of its stdio
            ours = os.dup(private)
        except BaseException:
            os.close(private)
            raise
        self.child_ends.append(private)
        self._reopened.append(_Reopened(fd, ours, seekable and not flags & os.O_APPEND))
        return private

    def _pipe_through(self, fd: int, *, reading: bool) -> int:
        read_end, write_end = os.pipe2(os.O_CLOEXEC)
        if reading:  # caller -> pipe -> child
            self.child_ends.append(read_end)
            self._pumps.append(_Pump(fd, write_end, owns_dst=True))
            return read_end
        self.child_ends.append(write_end)
        self._pumps.append(_Pump(read_end, fd, owns_src=True))
        return write_end

    def spawned(self) -> None:
        """The child holds its ends now: close ours and start copying through the pipes."""
        for fd in self.child_ends:
            os.close(fd)
        self.child_ends.clear()
        for pump in self._pumps:
            pump.start()

    @property
    def copying(self) -> bool:
        """Whether threads copy through pipes (then `finish` may block for a moment)."""
        return bool(self._pumps)

    def finish(self, *, drain_timeout: float = 1.0) -> None:
        """The child is gone: flush output copies, stop input ones, hand offsets back. Blocking."""
        for pump in self._pumps:
            pump.stop(drain=pump.owns_src, timeout=drain_timeout)
        for fd, flags in self._restore:
            try:
                fcntl.fcntl(fd, fcntl.F_SETFL, flags)
            except OSError:
                pass
        self._restore.clear()
        for item in self._reopened:
            if item.seekable:
                try:
                    os.lseek(item.original, os.lseek(item.private, 0, os.SEEK_CUR), os.SEEK_SET)
                except OSError:
                    pass  # the caller closed or replaced it meanwhile
        self.close()

    def close(self) -> None:
        for pump in self._pumps:
            pump.stop(drain=False, timeout=0)
        self._pumps.clear()
        for item in self._reopened:
            os.close(item.private)
        self._reopened.clear()
        for fd in self.child_ends:
            os.close(fd)
        self.child_ends.clear()


class _Pump:
    """A thread copying src to dst with blocking-safe I/O, never changing either's flags."""

    def __init__(self, src: int, dst: int, *, owns_src: bool = False, owns_dst: bool = False) -> None:
        self.src, self.dst = src, dst
        self.owns_src, self.owns_dst = owns_src, owns_dst
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._thread = threading.Thread(target=self._run, name="wasijail-stdio", daemon=True)
        self._started = False

    def start(self) -> None:
        self._started = True
        self._thread.start()

    def stop(self, *, drain: bool, timeout: float) -> None:
        if self._wake_w < 0:
            return
        if self._started:
            if drain:
                self._thread.join(timeout)  # ends by itself at the end of the child's output
            os.write(self._wake_w, b"x")
            self._thread.join()
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)
        self._wake_r = self._wake_w = -1
        if self.owns_src:
            os.close(self.src)
        if self.owns_dst:
            os.close(self.dst)

    def _wait(self, fd: int, events: int) -> bool:
        poller = select.poll()
        poller.register(fd, events)
        poller.register(self._wake_r, select.POLLIN)
        while True:
            ready = dict(poller.poll())
            if self._wake_r in ready:
                return False
            if fd in ready:
                return True

    def _run(self) -> None:
        try:
            while self._wait(self.src, select.POLLIN):
                try:
                    data = os.read(self.src, _CHUNK)
                except BlockingIOError:
                    continue
                if not data:
                    return
                view = memoryview(data)
                while view:
                    if not self._wait(self.dst, select.POLLOUT):
                        return
                    try:
                        view = view[os.write(self.dst, view):]
                    except BlockingIOError:
                        continue
        except OSError:
            return  # the other end is gone (EPIPE, EBADF): nothing more to copy
