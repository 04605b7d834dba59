"""The WASI host functions, run inside the child.

One `WasiHost` per snapshot (preview1, preview0) shares a `WasiState`: the fd
table, guest memory, args and env. Data calls on local fds run here, straight
between the host fd and guest memory; anything that names a path, and
`fd_readdir`, is a request to the broker.

Every method takes the guest's (already unsigned) integers and returns a WASI
errno; `bindings.py` turns exceptions into errnos and registers the methods.
"""

from __future__ import annotations

import fcntl
import os
import select
import socket
import stat
import struct
import termios
import time

from ..fds import close_quietly
from ..protocol import broker as wire
from ..wasi import (
    ALL_FDFLAGS,
    ALL_FSTFLAGS,
    ALL_LOOKUPFLAGS,
    ALL_OFLAGS,
    filestat_of,
    timestamp_of,
    fstflags_conflict,
    ACCESS_MODE_RIGHTS,
    DIRECTORY_READONLY_RIGHTS,
    DIRECTORY_RIGHTS,
    DIRENT,
    EVENT,
    EXIT_STATUS_LIMIT,
    FDSTAT,
    FILE_READONLY_RIGHTS,
    FILE_RIGHTS,
    PATH_MAX,
    WasiErrno,
    PRESTAT,
    READ_INTENT,
    STDIN_RIGHTS,
    STDOUT_RIGHTS,
    WRITE_INTENT,
    Advice,
    Clockid,
    Errno,
    Eventrwflags,
    Eventtype,
    Fdflags,
    Filetype,
    Oflags,
    Preopentype,
    Riflags,
    RightBits,
    Roflags,
    Sdflags,
    Snapshot,
    Subclockflags,
    path_errno,
)
from .broker_client import BrokerClient
from .fdtable import Descriptor, FdTable
from .memory import GuestMemory

_CLOCKS = {
    Clockid.REALTIME: time.CLOCK_REALTIME,
    Clockid.MONOTONIC: time.CLOCK_MONOTONIC,
    Clockid.PROCESS_CPUTIME_ID: time.CLOCK_PROCESS_CPUTIME_ID,
    Clockid.THREAD_CPUTIME_ID: time.CLOCK_THREAD_CPUTIME_ID,
}
# poll_oneoff waits on wall-clock time only: a timeout in CPU time would never
# pass for a process that sleeps (wasmtime answers EINVAL for these too).
_POLL_CLOCKS = {Clockid.REALTIME: time.CLOCK_REALTIME, Clockid.MONOTONIC: time.CLOCK_MONOTONIC}
_ADVICE = {
    Advice.NORMAL: os.POSIX_FADV_NORMAL, Advice.SEQUENTIAL: os.POSIX_FADV_SEQUENTIAL,
    Advice.RANDOM: os.POSIX_FADV_RANDOM, Advice.WILLNEED: os.POSIX_FADV_WILLNEED,
    Advice.DONTNEED: os.POSIX_FADV_DONTNEED, Advice.NOREUSE: os.POSIX_FADV_NOREUSE,
}
_CREAT, _TRUNC = int(Oflags.CREAT), int(Oflags.TRUNC)  # ints: IntFlag `&` runs Python code
# What fd_fdstat_set_flags can change on an open file (Linux cannot change the sync flags).
_SETTABLE_FDFLAGS = int(Fdflags.APPEND | Fdflags.NONBLOCK)
_I64_SIGN = 1 << 63
_FD_READ, _FD_WRITE = RightBits.FD_READ, RightBits.FD_WRITE  # module globals: the hot path's lookups
MAX_IOVS = 1024  # IOV_MAX: more is EINVAL, as the kernel would say


class ProcExit(Exception):
    """The guest called proc_exit: unwinds out of wasm to the child's main loop."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def _signed64(value: int) -> int:
    return value - (1 << 64) if value & _I64_SIGN else value


class WasiState:
    """What both snapshots' hosts share for one module instance."""

    def __init__(self, *, args, env, broker: BrokerClient, preopens, open_files: int | None,
                 file_size: int | None = None, disk: int | None = None) -> None:
        self.args: list[bytes] = list(args)
        self.env: list[bytes] = list(env)
        self.broker = broker
        self.memory: GuestMemory | None = None
        self.file_size = file_size  # None: unlimited
        # Bytes the guest may still write to files (the `disk` limit); None: unlimited.
        self.disk_left = disk
        self.io = [0, 0]  # bytes read, bytes written through fd_read/fd_pread and fd_write/fd_pwrite
        self.fds = FdTable(None)  # what the guest starts with is not counted against its limit
        for fd, rights in ((0, STDIN_RIGHTS), (1, STDOUT_RIGHTS), (2, STDOUT_RIGHTS)):
            self.fds.add(Descriptor(
                filetype=_stdio_filetype(fd), rights_base=int(rights),
                rights_inheriting=0, host_fd=fd, stdio=True,
            ))
        for handle, (name, readonly) in enumerate(preopens):
            base = DIRECTORY_READONLY_RIGHTS if readonly else DIRECTORY_RIGHTS
            inheriting = (DIRECTORY_READONLY_RIGHTS | FILE_READONLY_RIGHTS) if readonly else (
                DIRECTORY_RIGHTS | FILE_RIGHTS)
            self.fds.add(Descriptor(
                filetype=Filetype.DIRECTORY, rights_base=int(base),
                rights_inheriting=int(inheriting), handle=handle, preopen=name,
                readonly=readonly,
            ))
        self.fds.limit = open_files


def _stdio_filetype(fd: int) -> Filetype:
    """A terminal is a character device; any other stream is UNKNOWN, as in wasmtime.

    wasi-libc's isatty() is "a character device without seek rights", so
    /dev/null or a file on stdin must not look like one.
    """
    try:
        return Filetype.CHARACTER_DEVICE if os.isatty(fd) else Filetype.UNKNOWN
    except OSError:
        return Filetype.UNKNOWN


class WasiHost:
    """The functions of one snapshot. Method names are the WASI import names."""

    def __init__(self, state: WasiState, snapshot: Snapshot) -> None:
        self.s = state
        self.snapshot = snapshot
        self.filestat = snapshot.filestat

    # -- helpers ------------------------------------------------------------

    @property
    def mem(self) -> GuestMemory:
        memory = self.s.memory
        if memory is None:
            raise WasiErrno(Errno.FAULT)
        return memory

    def _path(self, ptr: int, length: int) -> bytes:
        # A path over PATH_MAX is checked in place (path_errno reads it in
        # pieces), never copied whole: it is refused whatever it holds.
        raw = self.mem.read(ptr, length) if length <= PATH_MAX else self.mem.slice(ptr, length)
        problem = path_errno(raw)
        if problem is not None:
            raise WasiErrno(problem)
        return raw  # type: ignore[return-value]

    def _dir(self, fd: int, rights: int) -> Descriptor:
        """The directory a path call names (anything else is EBADF, as in wasmtime)."""
        entry = self.s.fds.get(fd)
        if not entry.is_remote:
            raise WasiErrno(Errno.BADF)
        _require(entry, rights)
        return entry

    def _file(self, fd: int, rights: int, *, on_stdio: Errno | None = None) -> Descriptor:
        """The file (or stdio stream) a data call names.

        A directory is EBADF, as in wasmtime. `on_stdio` is the answer when
        the call makes no sense on a stream: ESPIPE for positioned calls,
        EBADF for the file-only ones. A right the guest gave up, or never
        asked for, is ENOTCAPABLE; one its open mode withholds (writing to a
        read-only file) is answered by the kernel, as natively (EBADF).
        """
        entry = self.s.fds.get(fd)
        if entry.is_remote:
            raise WasiErrno(Errno.BADF)
        if entry.stdio and on_stdio is not None:
            raise WasiErrno(on_stdio)
        missing = rights & ~entry.rights_base
        if missing:
            if missing & (entry.dropped | ~int(ACCESS_MODE_RIGHTS)):
                raise WasiErrno(Errno.NOTCAPABLE)
            if entry.stdio:
                raise WasiErrno(Errno.BADF)  # the other direction of a stream
        return entry

    def _buffers(self, iovs: int, iovs_len: int) -> list[memoryview]:
        if iovs_len > MAX_IOVS:
            raise WasiErrno(Errno.INVAL)
        return self.mem.iovecs(iovs, iovs_len)

    def _on_disk(self, entry: Descriptor) -> bool:
        """Whether writes to `entry` count against the `disk` limit (files, not streams)."""
        return (self.s.disk_left is not None and not entry.stdio
                and entry.filetype == Filetype.REGULAR_FILE)

    def _within_quota(self, buffers: list[memoryview]) -> list[memoryview]:
        """`buffers` cut to the bytes the `disk` limit still allows.

        Past the limit the guest gets EDQUOT, as from a full quota; a write
        that crosses it is short, as a write that fills a disk is.
        """
        room = self.s.disk_left
        if sum(len(b) for b in buffers) <= room:
            return buffers
        if room == 0:
            raise WasiErrno(Errno.DQUOT)
        kept = []
        for buf in buffers:
            if room <= 0:
                break
            kept.append(buf[:room])
            room -= len(kept[-1])
        return kept

    def _write_filestat(self, ptr: int, reply: wire.StatReply) -> None:
        self._pack_filestat(ptr, reply.dev, reply.ino, reply.filetype, reply.nlink, reply.size,
                            reply.atim, reply.mtim, reply.ctim)

    def _write_host_stat(self, ptr: int, st: os.stat_result) -> None:
        self._pack_filestat(ptr, *filestat_of(st))

    def _pack_filestat(self, ptr: int, dev, ino, filetype, nlink, size, atim, mtim, ctim) -> None:
        # Values are u64 already (filestat_of); preview0's nlink is narrower.
        self.mem.pack(self.filestat, ptr, dev, ino, filetype, min(nlink, self.snapshot.nlink_max),
                      size, atim, mtim, ctim)

    # -- args, environ ---------------------------------------------------------

    def _strings_get(self, strings: list[bytes], ptrs: int, buf: int) -> int:
        mem = self.mem
        for i, value in enumerate(strings):
            mem.set_u32(ptrs + 4 * i, buf)
            mem.write(buf, value + b"\0")
            buf += len(value) + 1
        return Errno.SUCCESS

    def _strings_sizes(self, strings: list[bytes], count_ptr: int, size_ptr: int) -> int:
        self.mem.set_u32(count_ptr, len(strings))
        self.mem.set_u32(size_ptr, sum(len(s) + 1 for s in strings))
        return Errno.SUCCESS

    def args_get(self, argv: int, buf: int) -> int:
        return self._strings_get(self.s.args, argv, buf)

    def args_sizes_get(self, argc: int, size: int) -> int:
        return self._strings_sizes(self.s.args, argc, size)

    def environ_get(self, environ: int, buf: int) -> int:
        return self._strings_get(self.s.env, environ, buf)

    def environ_sizes_get(self, count: int, size: int) -> int:
        return self._strings_sizes(self.s.env, count, size)

    # -- clocks, random, scheduling ----------------------------------------------

    def clock_res_get(self, clock_id: int, result: int) -> int:
        clock = _CLOCKS.get(clock_id)
        if clock is None:
            return Errno.INVAL
        self.mem.set_u64(result, max(1, round(time.clock_getres(clock) * 1e9)))
        return Errno.SUCCESS

    def clock_time_get(self, clock_id: int, precision: int, result: int) -> int:
        clock = _CLOCKS.get(clock_id)
        if clock is None:
            return Errno.INVAL
        # A host clock set before 1970 reads as 0 rather than failing the call.
        self.mem.set_u64(result, timestamp_of(time.clock_gettime_ns(clock)))
        return Errno.SUCCESS

    def random_get(self, buf: int, length: int) -> int:
        target = self.mem.slice(buf, length)
        # In pieces: one copy of a guest-sized length would double what the guest costs the host.
        for at in range(0, length, _RANDOM_CHUNK):
            piece = target[at:at + _RANDOM_CHUNK]
            piece[:] = os.urandom(len(piece))
        return Errno.SUCCESS

    def sched_yield(self) -> int:
        os.sched_yield()
        return Errno.SUCCESS

    def proc_exit(self, code: int) -> None:
        raise ProcExit(code)

    def proc_raise(self, sig: int) -> int:
        # Raising a signal in the child would let the guest pick how its
        # process dies; wasmtime answers ENOTSUP too.
        return Errno.NOTSUP

    # -- descriptors --------------------------------------------------------------

    def fd_advise(self, fd: int, offset: int, length: int, advice: int) -> int:
        entry = self._file(fd, RightBits.FD_ADVISE, on_stdio=Errno.BADF)
        if advice not in _ADVICE:
            return Errno.INVAL
        os.posix_fadvise(entry.host_fd, offset, length, _ADVICE[advice])
        return Errno.SUCCESS

    def fd_allocate(self, fd: int, offset: int, length: int) -> int:
        entry = self._file(fd, RightBits.FD_ALLOCATE, on_stdio=Errno.BADF)
        self._check_file_size(offset + length)
        growth = 0
        if self._on_disk(entry):  # allocated blocks are disk used, as written ones are
            growth = max(0, offset + length - os.fstat(entry.host_fd).st_size)
            if growth > self.s.disk_left:
                return Errno.DQUOT
        os.posix_fallocate(entry.host_fd, offset, length)
        if growth:
            self.s.disk_left -= growth
        return Errno.SUCCESS

    def fd_close(self, fd: int) -> int:
        entry = self.s.fds.pop(fd)
        if entry.is_remote:
            _close_handle(self.s.broker, entry.handle)
        elif not entry.stdio:
            # The host's stdio stays open: the supervisor reads it to the end,
            # and a later donated fd must never take its number.
            close_quietly(entry.host_fd)
        return Errno.SUCCESS

    def fd_datasync(self, fd: int) -> int:
        entry = self._file(fd, RightBits.FD_DATASYNC, on_stdio=Errno.BADF)
        os.fdatasync(entry.host_fd)
        return Errno.SUCCESS

    def fd_sync(self, fd: int) -> int:
        entry = self.s.fds.get(fd)
        if entry.is_remote:
            # A directory is flushed too (wasmtime answers EBADF): programs
            # fsync a directory after a rename for durability.
            _require(entry, RightBits.FD_SYNC)
            self.s.broker.ask(wire.DirSync(entry.handle))
        else:
            os.fsync(self._file(fd, RightBits.FD_SYNC, on_stdio=Errno.BADF).host_fd)
        return Errno.SUCCESS

    def fd_fdstat_get(self, fd: int, result: int) -> int:
        entry = self.s.fds.get(fd)
        self.mem.pack(FDSTAT, result, entry.filetype, entry.fdflags, entry.rights_base,
                      entry.rights_inheriting)
        return Errno.SUCCESS

    def fd_fdstat_set_flags(self, fd: int, flags: int) -> int:
        # Files only: O_NONBLOCK on stdio would change the host's shared stream.
        entry = self._file(fd, RightBits.FD_FDSTAT_SET_FLAGS, on_stdio=Errno.BADF)
        # Only APPEND and NONBLOCK can change on an open file on Linux.
        if flags & ~_SETTABLE_FDFLAGS:
            return Errno.INVAL
        current = fcntl.fcntl(entry.host_fd, fcntl.F_GETFL)
        wanted = current & ~(os.O_APPEND | os.O_NONBLOCK)
        if flags & Fdflags.APPEND:
            wanted |= os.O_APPEND
        if flags & Fdflags.NONBLOCK:
            wanted |= os.O_NONBLOCK
        fcntl.fcntl(entry.host_fd, fcntl.F_SETFL, wanted)
        entry.fdflags = (entry.fdflags & ~_SETTABLE_FDFLAGS) | flags
        return Errno.SUCCESS

    def fd_fdstat_set_rights(self, fd: int, base: int, inheriting: int) -> int:
        entry = self.s.fds.get(fd)
        if base & ~entry.rights_base or inheriting & ~entry.rights_inheriting:
            return Errno.NOTCAPABLE  # rights can only be dropped
        # Remembered, so a dropped right stays ENOTCAPABLE even where its
        # absence would otherwise be left to the kernel (see _file).
        entry.dropped |= entry.rights_base & ~base
        entry.rights_base, entry.rights_inheriting = base, inheriting
        return Errno.SUCCESS

    def fd_filestat_get(self, fd: int, result: int) -> int:
        entry = self.s.fds.get(fd, RightBits.FD_FILESTAT_GET)
        if entry.is_remote:
            reply, _ = self.s.broker.call(wire.DirFilestatGet(entry.handle), wire.StatReply)
            self._write_filestat(result, reply)
        elif entry.stdio:
            # A stream has no inode, size or times (as in wasmtime); this also
            # keeps the host's device and inode numbers from the guest.
            self.mem.pack(self.filestat, result, 0, 0, entry.filetype, 0, 0, 0, 0, 0)
        else:
            self._write_host_stat(result, os.fstat(entry.host_fd))
        return Errno.SUCCESS

    def fd_filestat_set_size(self, fd: int, size: int) -> int:
        entry = self._file(fd, RightBits.FD_FILESTAT_SET_SIZE, on_stdio=Errno.BADF)
        self._check_file_size(size)
        os.ftruncate(entry.host_fd, size)
        return Errno.SUCCESS

    def fd_filestat_set_times(self, fd: int, atim: int, mtim: int, fstflags: int) -> int:
        _check_fstflags(fstflags)
        entry = self.s.fds.get(fd)
        if entry.is_remote:
            _require(entry, RightBits.FD_FILESTAT_SET_TIMES)
            self.s.broker.ask(wire.DirFilestatSetTimes(entry.handle, atim, mtim, fstflags))
        else:
            entry = self._file(fd, RightBits.FD_FILESTAT_SET_TIMES, on_stdio=Errno.BADF)
            # The broker re-times it: the child's filter refuses utimensat.
            self.s.broker.ask(wire.FdFilestatSetTimes(atim, mtim, fstflags), (entry.host_fd,))
        return Errno.SUCCESS

    def fd_pread(self, fd: int, iovs: int, iovs_len: int, offset: int, nread: int) -> int:
        entry = self._file(fd, RightBits.FD_READ | RightBits.FD_SEEK, on_stdio=Errno.SPIPE)
        buffers = self._buffers(iovs, iovs_len)
        count = os.preadv(entry.host_fd, buffers, offset) if buffers else 0
        self.s.io[0] += count
        self.mem.set_u32(nread, count)
        return Errno.SUCCESS

    def fd_pwrite(self, fd: int, iovs: int, iovs_len: int, offset: int, nwritten: int) -> int:
        entry = self._file(fd, RightBits.FD_WRITE | RightBits.FD_SEEK, on_stdio=Errno.SPIPE)
        buffers = self._buffers(iovs, iovs_len)
        quota = self._on_disk(entry)
        if quota:
            buffers = self._within_quota(buffers)
        count = os.pwritev(entry.host_fd, buffers, offset) if buffers else 0
        if quota:
            self.s.disk_left -= count
        self.s.io[1] += count
        self.mem.set_u32(nwritten, count)
        return Errno.SUCCESS

    def _stream(self, fd: int, right: int) -> Descriptor:
        """`_file(fd, right)` for fd_read/fd_write: the common case (a local entry holding
        the right) answered inline, anything else by `_file`, which gives the errno."""
        entry = self.s.fds.entries.get(fd)
        if entry is None or entry.handle >= 0 or not entry.rights_base & right:
            return self._file(fd, right)
        return entry

    def fd_read(self, fd: int, iovs: int, iovs_len: int, nread: int) -> int:
        entry = self._stream(fd, _FD_READ)
        buffers = self._buffers(iovs, iovs_len)
        count = os.readv(entry.host_fd, buffers) if buffers else 0
        state = self.s
        state.io[0] += count
        state.memory.set_u32(nread, count)  # not None: _buffers went through self.mem
        return Errno.SUCCESS

    def fd_write(self, fd: int, iovs: int, iovs_len: int, nwritten: int) -> int:
        entry = self._stream(fd, _FD_WRITE)
        buffers = self._buffers(iovs, iovs_len)
        state = self.s
        quota = self._on_disk(entry)
        if quota:
            buffers = self._within_quota(buffers)
        # The file-size limit is RLIMIT_FSIZE (set in lockdown): the kernel answers EFBIG.
        count = os.writev(entry.host_fd, buffers) if buffers else 0
        if quota:
            state.disk_left -= count
        state.io[1] += count
        state.memory.set_u32(nwritten, count)  # not None: _buffers went through self.mem
        return Errno.SUCCESS

    def _check_file_size(self, end: int) -> None:
        if self.s.file_size is not None and end > self.s.file_size:
            raise WasiErrno(Errno.FBIG)

    def fd_prestat_get(self, fd: int, result: int) -> int:
        entry = self.s.fds.get(fd)
        if entry.preopen is None:
            return Errno.BADF
        self.mem.pack(PRESTAT, result, Preopentype.DIR, len(entry.preopen))
        return Errno.SUCCESS

    def fd_prestat_dir_name(self, fd: int, path: int, path_len: int) -> int:
        entry = self.s.fds.get(fd)
        if entry.preopen is None:
            return Errno.NOTDIR  # as wasmtime (fd_prestat_get says EBADF)
        if path_len < len(entry.preopen):
            return Errno.NAMETOOLONG
        self.mem.write(path, entry.preopen)
        return Errno.SUCCESS

    def fd_readdir(self, fd: int, buf: int, buf_len: int, cookie: int, bufused: int) -> int:
        entry = self._dir(fd, RightBits.FD_READDIR)
        target = self.mem.slice(buf, buf_len)
        filled = 0
        while filled < buf_len:
            want = min(wire.READDIR_CHUNK, buf_len - filled)
            reply, _ = self.s.broker.call(wire.FdReaddir(entry.handle, cookie, want), wire.BytesReply)
            data = reply.data[:want]
            if len(data) < want or filled + len(data) == buf_len:
                target[filled:filled + len(data)] = data
                filled += len(data)
                break
            # A full chunk and room for more: keep only whole entries and
            # continue after the last one.
            whole, cookie = _whole_dirents(data)
            if not whole:
                target[filled:filled + len(data)] = data
                filled += len(data)
                break
            target[filled:filled + whole] = data[:whole]
            filled += whole
        self.mem.set_u32(bufused, filled)
        return Errno.SUCCESS

    def fd_renumber(self, fd: int, to: int) -> int:
        source = self.s.fds.get(fd)
        target = self.s.fds.renumber(fd, to)
        if target is None:
            return Errno.SUCCESS
        if target.is_remote:
            _close_handle(self.s.broker, target.handle)
        elif not target.stdio and target.host_fd != source.host_fd:
            close_quietly(target.host_fd)  # the host's stdio stays open, as in fd_close
        return Errno.SUCCESS

    def fd_seek(self, fd: int, offset: int, whence: int, result: int) -> int:
        how = self.snapshot.whence.get(whence)
        if how is None:
            return Errno.INVAL
        wanted = RightBits.FD_TELL if (offset == 0 and how == os.SEEK_CUR) else RightBits.FD_SEEK
        entry = self._file(fd, wanted, on_stdio=Errno.SPIPE)
        self.mem.set_u64(result, os.lseek(entry.host_fd, _signed64(offset), how))
        return Errno.SUCCESS

    def fd_tell(self, fd: int, result: int) -> int:
        entry = self._file(fd, RightBits.FD_TELL, on_stdio=Errno.SPIPE)
        self.mem.set_u64(result, os.lseek(entry.host_fd, 0, os.SEEK_CUR))
        return Errno.SUCCESS

    # -- paths (brokered) -----------------------------------------------------------

    def path_open(self, fd: int, dirflags: int, path: int, path_len: int, oflags: int,
                  rights_base: int, rights_inheriting: int, fdflags: int, opened: int) -> int:
        needed = RightBits.PATH_OPEN
        if oflags & _CREAT:
            needed |= RightBits.PATH_CREATE_FILE
        if oflags & _TRUNC:
            needed |= RightBits.PATH_FILESTAT_SET_SIZE
        entry = self.s.fds.get(fd)
        if not entry.is_remote:  # as wasmtime: under a file ENOTDIR, under stdio EBADF
            return Errno.BADF if entry.stdio else Errno.NOTDIR
        parent = self._dir(fd, needed)
        name = self._path(path, path_len)
        if oflags & ~ALL_OFLAGS or fdflags & ~ALL_FDFLAGS or dirflags & ~ALL_LOOKUPFLAGS:
            return Errno.INVAL
        self.s.fds.check_room()
        self.mem.slice(opened, 4)  # fail on a bad `opened` pointer before the broker acts
        if rights_base & WRITE_INTENT & ~parent.rights_inheriting:
            return Errno.NOTCAPABLE  # e.g. opening for writing under a read-only preopen
        rights_base &= parent.rights_inheriting
        rights_inheriting &= parent.rights_inheriting
        reply, fds = self.s.broker.call(
            wire.PathOpen(parent.handle, dirflags, oflags, fdflags, rights_base, rights_inheriting, name),
            wire.OpenReply)
        if reply.kind == wire.FileKind.DIRECTORY:
            mask = DIRECTORY_READONLY_RIGHTS if parent.readonly else DIRECTORY_RIGHTS
            entry = Descriptor(
                filetype=Filetype.DIRECTORY, rights_base=rights_base & int(mask),
                rights_inheriting=rights_inheriting, handle=reply.handle,
                readonly=parent.readonly,
            )
        else:
            (host_fd,) = fds
            # The broker opened it for writing only with a write right asked
            # for, and for reading unless only writing was asked for.
            mask = int(FILE_READONLY_RIGHTS if parent.readonly else FILE_RIGHTS)
            if not rights_base & WRITE_INTENT:
                mask &= ~int(WRITE_INTENT)
            elif not rights_base & READ_INTENT:
                mask &= ~int(READ_INTENT)
            entry = Descriptor(
                filetype=Filetype(reply.filetype), rights_base=rights_base & mask,
                rights_inheriting=rights_inheriting & mask, fdflags=fdflags,
                host_fd=host_fd, readonly=parent.readonly,
            )
        new_fd = self.s.fds.add(entry)
        self.mem.set_u32(opened, new_fd)
        return Errno.SUCCESS

    def path_filestat_get(self, fd: int, flags: int, path: int, path_len: int, result: int) -> int:
        parent = self._dir(fd, RightBits.PATH_FILESTAT_GET)
        name = self._path(path, path_len)
        if flags & ~ALL_LOOKUPFLAGS:
            return Errno.INVAL
        reply, _ = self.s.broker.call(wire.PathFilestatGet(parent.handle, flags, name), wire.StatReply)
        self._write_filestat(result, reply)
        return Errno.SUCCESS

    def path_filestat_set_times(self, fd: int, flags: int, path: int, path_len: int,
                                atim: int, mtim: int, fstflags: int) -> int:
        parent = self._dir(fd, RightBits.PATH_FILESTAT_SET_TIMES)
        name = self._path(path, path_len)
        _check_fstflags(fstflags)
        if flags & ~ALL_LOOKUPFLAGS:
            return Errno.INVAL
        self.s.broker.ask(wire.PathFilestatSetTimes(parent.handle, flags, atim, mtim, fstflags, name))
        return Errno.SUCCESS

    def path_create_directory(self, fd: int, path: int, path_len: int) -> int:
        parent = self._dir(fd, RightBits.PATH_CREATE_DIRECTORY)
        self.s.broker.ask(wire.PathCreateDirectory(parent.handle, self._path(path, path_len)))
        return Errno.SUCCESS

    def path_remove_directory(self, fd: int, path: int, path_len: int) -> int:
        parent = self._dir(fd, RightBits.PATH_REMOVE_DIRECTORY)
        self.s.broker.ask(wire.PathRemoveDirectory(parent.handle, self._path(path, path_len)))
        return Errno.SUCCESS

    def path_unlink_file(self, fd: int, path: int, path_len: int) -> int:
        parent = self._dir(fd, RightBits.PATH_UNLINK_FILE)
        self.s.broker.ask(wire.PathUnlinkFile(parent.handle, self._path(path, path_len)))
        return Errno.SUCCESS

    def path_rename(self, fd: int, old_path: int, old_len: int, new_fd: int, new_path: int,
                    new_len: int) -> int:
        old_dir = self._dir(fd, RightBits.PATH_RENAME_SOURCE)
        new_dir = self._dir(new_fd, RightBits.PATH_RENAME_TARGET)
        self.s.broker.ask(wire.PathRename(old_dir.handle, new_dir.handle,
                                      self._path(old_path, old_len), self._path(new_path, new_len)))
        return Errno.SUCCESS

    def path_link(self, old_fd: int, old_flags: int, old_path: int, old_len: int, new_fd: int,
                  new_path: int, new_len: int) -> int:
        old_dir = self._dir(old_fd, RightBits.PATH_LINK_SOURCE)
        new_dir = self._dir(new_fd, RightBits.PATH_LINK_TARGET)
        if old_flags & ~ALL_LOOKUPFLAGS:
            return Errno.INVAL
        self.s.broker.ask(wire.PathLink(old_dir.handle, old_flags, new_dir.handle,
                                    self._path(old_path, old_len), self._path(new_path, new_len)))
        return Errno.SUCCESS

    def path_symlink(self, old_path: int, old_len: int, fd: int, new_path: int,
                     new_len: int) -> int:
        parent = self._dir(fd, RightBits.PATH_SYMLINK)
        self.s.broker.ask(wire.PathSymlink(parent.handle, self._path(old_path, old_len),
                                       self._path(new_path, new_len)))
        return Errno.SUCCESS

    def path_readlink(self, fd: int, path: int, path_len: int, buf: int, buf_len: int,
                      bufused: int) -> int:
        parent = self._dir(fd, RightBits.PATH_READLINK)
        reply, _ = self.s.broker.call(wire.PathReadlink(parent.handle, self._path(path, path_len)),
                                      wire.BytesReply)
        data = reply.data[:buf_len]  # a short buffer truncates, as readlink(2) does
        self.mem.write(buf, data)
        self.mem.set_u32(bufused, len(data))
        return Errno.SUCCESS

    # -- poll -------------------------------------------------------------------------

    def poll_oneoff(self, subs: int, events: int, nsubscriptions: int, nevents: int) -> int:
        """Wait for the first of the subscriptions, in two passes over guest memory.

        A guest may pass millions of subscriptions: nothing here keeps an
        object per subscription, so the host memory one call costs is the
        distinct descriptors it waits on plus one chunk of events, whatever
        the count. The first pass validates every subscription (one bad
        clock or descriptor fails the whole call, as in wasmtime, before
        anything waits) and finds what to wait for; the second, after the
        wait, writes the events out chunk by chunk. The guest cannot change
        its memory in between: it is not running.
        """
        if nsubscriptions == 0:
            return Errno.INVAL  # it would sleep forever
        layout = self.snapshot.subscription
        mem = self.mem
        mem.slice(subs, nsubscriptions * layout.size)
        mem.slice(events, nsubscriptions * EVENT.size)
        now = time.monotonic_ns()
        clocks = {clock_id: time.clock_gettime_ns(clock) for clock_id, clock in _POLL_CLOCKS.items()}
        deadline: int | None = None
        masks: dict[int, int] = {}  # host fd -> poll events, for pipes, terminals and sockets
        file_ready = False  # a regular file is always ready: then nothing waits
        for userdata, tag, base in _subscriptions(mem, layout, subs, nsubscriptions):
            if tag == Eventtype.CLOCK:
                at = self._clock_deadline(base, now, clocks)
                if at is None:
                    return Errno.INVAL
                deadline = at if deadline is None else min(deadline, at)
            elif tag in (Eventtype.FD_READ, Eventtype.FD_WRITE):
                entry = self._poll_fd(base)
                if isinstance(entry, int):
                    return entry
                if entry.filetype == Filetype.REGULAR_FILE:
                    file_ready = True
                else:
                    masks[entry.host_fd] = masks.get(entry.host_fd, 0) | _POLL_MASK[tag]
            else:
                return Errno.INVAL
        revents: dict[int, int] = {}
        if not file_ready:
            if masks:
                poller = select.poll()
                for host_fd, mask in masks.items():
                    poller.register(host_fd, mask)
                # poll() resumes after a signal with the time left (PEP 475).
                timeout_ms = None if deadline is None else max(0, deadline - time.monotonic_ns()) / 1e6
                revents = dict(poller.poll(timeout_ms))
            elif deadline is not None:
                time.sleep(max(0, deadline - time.monotonic_ns()) / 1e9)
        woke = time.monotonic_ns()
        out = bytearray()
        written = 0
        for userdata, tag, base in _subscriptions(mem, layout, subs, nsubscriptions):
            event = None
            if tag == Eventtype.CLOCK:
                if self._clock_deadline(base, now, clocks) <= woke:
                    event = (userdata, 0, tag, 0, 0)
            else:
                entry = self._poll_fd(base)
                if entry.filetype == Filetype.REGULAR_FILE:
                    # Always ready; at the end of the file a reader is told so.
                    left = _bytes_left(entry.host_fd) if tag == Eventtype.FD_READ else 0
                    eof = tag == Eventtype.FD_READ and left == 0
                    event = (userdata, 0, tag, left, Eventrwflags.FD_READWRITE_HANGUP if eof else 0)
                elif not file_ready:
                    ready = revents.get(entry.host_fd, 0) & (_POLL_MASK[tag] | _POLL_ALWAYS)
                    if ready & select.POLLNVAL:
                        event = (userdata, Errno.BADF, tag, 0, 0)
                    elif ready:
                        hangup = Eventrwflags.FD_READWRITE_HANGUP if ready & select.POLLHUP else 0
                        nbytes = _bytes_queued(entry.host_fd) if tag == Eventtype.FD_READ else 0
                        event = (userdata, 0, tag, nbytes, hangup)
            if event is not None:
                out += EVENT.pack(*event)
                if len(out) >= _POLL_CHUNK * EVENT.size:
                    mem.write(events + written, out)
                    written += len(out)
                    out.clear()
        mem.write(events + written, out)
        written += len(out)
        mem.set_u32(nevents, written // EVENT.size)
        return Errno.SUCCESS

    def _clock_deadline(self, base: int, now: int, clocks: dict[int, int]) -> int | None:
        """When a clock subscription fires, in monotonic ns; None for a clock poll cannot wait on."""
        layout = self.snapshot.subscription
        clock_id, timeout, _precision, flags = self.mem.unpack(layout.clock, base + layout.clock_offset)
        if clock_id not in clocks or flags & ~_ALL_SUBCLOCKFLAGS:
            return None
        if flags & Subclockflags.ABSTIME:
            return now + max(0, timeout - clocks[clock_id])
        return now + timeout

    def _poll_fd(self, base: int) -> "Descriptor | int":
        """The descriptor an fd subscription names, or the errno that fails the call."""
        layout = self.snapshot.subscription
        (fd,) = self.mem.unpack(layout.fd, base + layout.fd_offset)
        entry = self.s.fds.get(fd)
        if entry.is_remote:
            return Errno.BADF
        if not entry.rights_base & RightBits.POLL_FD_READWRITE:
            return Errno.NOTCAPABLE
        return entry

    # -- sockets: wasijail grants no sockets, so only stdio could ever be one ----------

    def _socket(self, fd: int, rights: int = 0) -> Descriptor:
        entry = self.s.fds.get(fd)
        if entry.is_remote or not _is_socket(entry.host_fd):
            raise WasiErrno(Errno.NOTSOCK)
        return self._file(fd, rights) if rights else entry

    def sock_accept(self, fd: int, flags: int, result: int) -> int:
        self._socket(fd)
        return Errno.NOTSUP  # no listening socket is ever granted

    def sock_recv(self, fd: int, ri_data: int, ri_len: int, ri_flags: int, ro_len: int,
                  ro_flags: int) -> int:
        entry = self._socket(fd, RightBits.FD_READ)
        buffers = self._buffers(ri_data, ri_len)
        sock = socket.socket(fileno=os.dup(entry.host_fd))
        try:
            count, _, msg_flags, _ = sock.recvmsg_into(buffers, 0, _recv_flags(ri_flags))
        finally:
            sock.close()
        self.s.io[0] += count
        self.mem.set_u32(ro_len, count)
        self.mem.pack(_U16, ro_flags, Roflags.RECV_DATA_TRUNCATED if msg_flags & socket.MSG_TRUNC else 0)
        return Errno.SUCCESS

    def sock_send(self, fd: int, si_data: int, si_len: int, si_flags: int, so_len: int) -> int:
        entry = self._socket(fd, RightBits.FD_WRITE)
        count = os.writev(entry.host_fd, self._buffers(si_data, si_len))
        self.s.io[1] += count
        self.mem.set_u32(so_len, count)
        return Errno.SUCCESS

    def sock_shutdown(self, fd: int, how: int) -> int:
        entry = self._socket(fd)
        mode = _SHUTDOWN.get(how)
        if mode is None:
            return Errno.INVAL
        sock = socket.socket(fileno=os.dup(entry.host_fd))
        try:
            sock.shutdown(mode)
        finally:
            sock.close()
        return Errno.SUCCESS


_U16 = struct.Struct("<H")
_RANDOM_CHUNK = 1 << 16


_SHUTDOWN = {Sdflags.RD: socket.SHUT_RD, Sdflags.WR: socket.SHUT_WR,
             Sdflags.RD | Sdflags.WR: socket.SHUT_RDWR}
_ALL_SUBCLOCKFLAGS = int(Subclockflags.ABSTIME)
# poll_oneoff reads subscriptions, and writes events, this many at a time.
_POLL_CHUNK = 4096
_POLL_MASK = {Eventtype.FD_READ: select.POLLIN, Eventtype.FD_WRITE: select.POLLOUT}
_POLL_ALWAYS = select.POLLHUP | select.POLLERR | select.POLLNVAL  # reported whatever was asked


def _subscriptions(mem: GuestMemory, layout, subs: int, count: int):
    """(userdata, tag, address) of each subscription, read a chunk at a time."""
    head = layout.head
    for first in range(0, count, _POLL_CHUNK):
        n = min(_POLL_CHUNK, count - first)
        start = subs + first * layout.size
        view = mem.slice(start, n * layout.size)
        for offset in range(0, n * layout.size, layout.size):
            userdata, tag = head.unpack_from(view, offset)
            yield userdata, tag, start + offset
_FIONREAD = struct.Struct("i")


def _recv_flags(ri_flags: int) -> int:
    flags = 0
    if ri_flags & Riflags.RECV_PEEK:
        flags |= socket.MSG_PEEK
    if ri_flags & Riflags.RECV_WAITALL:
        flags |= socket.MSG_WAITALL
    return flags


def _is_socket(host_fd: int) -> bool:
    try:
        return stat.S_ISSOCK(os.fstat(host_fd).st_mode)
    except OSError:
        return False


def _bytes_left(host_fd: int) -> int:
    """Bytes between a file's position and its end."""
    try:
        return max(0, os.fstat(host_fd).st_size - os.lseek(host_fd, 0, os.SEEK_CUR))
    except OSError:
        return 0


def _bytes_queued(host_fd: int) -> int:
    """Bytes waiting in a pipe, terminal or socket (FIONREAD), 0 when unknown."""
    try:
        return _FIONREAD.unpack(fcntl.ioctl(host_fd, termios.FIONREAD, bytes(_FIONREAD.size)))[0]
    except OSError:
        return 0


def _whole_dirents(data: bytes) -> tuple[int, int]:
    """(bytes of whole dirents at the start of `data`, cookie after the last one)."""
    offset, cookie = 0, 0
    while offset + DIRENT.size <= len(data):
        d_next, _, namlen, _ = DIRENT.unpack_from(data, offset)
        end = offset + DIRENT.size + namlen
        if end > len(data):
            break
        offset, cookie = end, d_next
    return offset, cookie


def _close_handle(broker: BrokerClient, handle: int) -> None:
    """Tell the broker a directory handle is gone (it cannot refuse: the guest's fd is closed already)."""
    try:
        broker.ask(wire.DirClose(handle))
    except WasiErrno:
        pass


def _require(entry: Descriptor, rights: int) -> None:
    """Refuse a directory call its rights do not allow.

    A read-only preopen lacks every mutating right, so changing its tree is
    ENOTCAPABLE ("Capabilities insufficient"), as fd_fdstat_get reports;
    wasmtime says EPERM there.
    """
    if rights & ~entry.rights_base:
        raise WasiErrno(Errno.NOTCAPABLE)


def _check_fstflags(fstflags: int) -> None:
    if fstflags & ~ALL_FSTFLAGS:
        raise WasiErrno(Errno.INVAL)
    if fstflags_conflict(fstflags):
        raise WasiErrno(Errno.INVAL)


def exit_status(code: int) -> int | None:
    """The process status for proc_exit(code), or None when it is not a valid one."""
    return code if 0 <= code < EXIT_STATUS_LIMIT else None

