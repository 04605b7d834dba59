"""The WASI host functions, run inside the child.

One `WasiHost` per snapshot (preview1, preview0) shares a `WasiState`: the fd
table, guest memory, args and env. Data calls on local fds run here, straight
between the host fd and guest memory; anything that names a path, and
`fd_readdir`, is a request to the broker.

Every method takes the guest's (already unsigned) integers and returns a WASI
errno; `bindings.py` turns exceptions into errnos and registers the methods.
"""

from __future__ import annotations

import os
import select
import struct
import time

from .. import protocol
from ..wasi import (
    DIRECTORY_READONLY_RIGHTS,
    DIRECTORY_RIGHTS,
    DIRENT,
    EVENT,
    EXIT_STATUS_LIMIT,
    FDSTAT,
    FILE_READONLY_RIGHTS,
    FILE_RIGHTS,
    IOVEC,
    PRESTAT,
    READ_INTENT,
    STDIO_RIGHTS,
    WRITE_INTENT,
    Clockid,
    Errno,
    Eventrwflags,
    Eventtype,
    Fdflags,
    Filetype,
    Fstflags,
    Oflags,
    Preopentype,
    Rights,
    Sdflags,
    Snapshot,
    Subclockflags,
)
from .broker_client import BrokerClient
from .fdtable import Descriptor, FdTable, WasiError, close_quietly, filetype_of_mode
from .memory import GuestMemory

_CLOCKS = {
    Clockid.REALTIME: time.CLOCK_REALTIME,
    Clockid.MONOTONIC: time.CLOCK_MONOTONIC,
    Clockid.PROCESS_CPUTIME_ID: time.CLOCK_PROCESS_CPUTIME_ID,
    Clockid.THREAD_CPUTIME_ID: time.CLOCK_THREAD_CPUTIME_ID,
}
_ADVICE = {
    0: os.POSIX_FADV_NORMAL, 1: os.POSIX_FADV_SEQUENTIAL, 2: os.POSIX_FADV_RANDOM,
    3: os.POSIX_FADV_WILLNEED, 4: os.POSIX_FADV_DONTNEED, 5: os.POSIX_FADV_NOREUSE,
}
_I64_SIGN = 1 << 63
_MAX_IOVS = 1024  # IOV_MAX: more is EINVAL, as the kernel would say


class ProcExit(Exception):
    """The guest called proc_exit: unwinds out of wasm to the child's main loop."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def _signed64(value: int) -> int:
    return value - (1 << 64) if value & _I64_SIGN else value


class WasiState:
    """What both snapshots' hosts share for one module instance."""

    def __init__(self, *, args, env, broker: BrokerClient, preopens, open_files: int,
                 file_size: int = -1) -> None:
        self.args: list[bytes] = list(args)
        self.env: list[bytes] = list(env)
        self.broker = broker
        self.memory: GuestMemory | None = None
        self.file_size = file_size
        self.io = [0, 0]  # bytes read, bytes written through fd_read/fd_pread and fd_write/fd_pwrite
        self.fds = FdTable(open_files)
        for fd in (0, 1, 2):
            self.fds.entries[fd] = Descriptor(
                filetype=_stdio_filetype(fd), rights_base=int(STDIO_RIGHTS),
                rights_inheriting=0, host_fd=fd,
            )
        for handle, (name, readonly) in enumerate(preopens):
            base = DIRECTORY_READONLY_RIGHTS if readonly else DIRECTORY_RIGHTS
            inheriting = (DIRECTORY_READONLY_RIGHTS | FILE_READONLY_RIGHTS) if readonly else (
                DIRECTORY_RIGHTS | FILE_RIGHTS)
            self.fds.entries[3 + handle] = Descriptor(
                filetype=Filetype.DIRECTORY, rights_base=int(base),
                rights_inheriting=int(inheriting), handle=handle, preopen=name,
                readonly=readonly,
            )


def _stdio_filetype(fd: int) -> Filetype:
    try:
        return filetype_of_mode(os.fstat(fd).st_mode)
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
            raise WasiError(Errno.FAULT)
        return memory

    def _path(self, ptr: int, length: int) -> bytes:
        raw = self.mem.read(ptr, length)
        if b"\0" in raw:
            raise WasiError(Errno.INVAL)
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            raise WasiError(Errno.ILSEQ) from None
        if len(raw) > 4096:
            raise WasiError(Errno.NAMETOOLONG)
        return raw

    def _dir(self, fd: int, rights: int) -> Descriptor:
        entry = self.s.fds.get(fd)
        if not entry.is_remote:
            raise WasiError(Errno.NOTDIR)
        if (entry.rights_base & rights) != rights:
            raise WasiError(Errno.NOTCAPABLE)
        return entry

    def _local(self, fd: int, rights: int) -> Descriptor:
        entry = self.s.fds.get(fd, rights)
        if entry.is_remote:
            raise WasiError(Errno.ISDIR)
        return entry

    def _buffers(self, iovs: int, iovs_len: int) -> list[memoryview]:
        if iovs_len > _MAX_IOVS:
            raise WasiError(Errno.INVAL)
        mem = self.mem
        buffers = []
        for i in range(iovs_len):
            buf, length = mem.unpack(IOVEC, iovs + 8 * i)
            if length:
                buffers.append(mem.slice(buf, length))
        return buffers

    def _write_filestat(self, ptr: int, reply) -> None:
        self.mem.pack(self.filestat, ptr, reply.dev, reply.ino, reply.filetype, reply.nlink,
                      reply.size, reply.atim, reply.mtim, reply.ctim)

    def _write_host_stat(self, ptr: int, st: os.stat_result) -> None:
        self.mem.pack(self.filestat, ptr, st.st_dev, st.st_ino, filetype_of_mode(st.st_mode),
                      st.st_nlink, st.st_size, st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns)

    def _ask(self, request: protocol.Message) -> None:
        errno = self.s.broker.call_errno(request)
        if errno:
            raise WasiError(Errno(errno))

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
        self.mem.set_u64(result, time.clock_gettime_ns(clock))
        return Errno.SUCCESS

    def random_get(self, buf: int, length: int) -> int:
        target = self.mem.slice(buf, length)
        target[:] = os.urandom(length)
        return Errno.SUCCESS

    def sched_yield(self) -> int:
        os.sched_yield()
        return Errno.SUCCESS

    def proc_exit(self, code: int) -> None:
        raise ProcExit(code)

    def proc_raise(self, sig: int) -> int:
        # Raising a signal in the child would let the guest pick how its
        # process dies; wasmtime does not implement this either.
        return Errno.NOSYS

    # -- descriptors --------------------------------------------------------------

    def fd_advise(self, fd: int, offset: int, length: int, advice: int) -> int:
        entry = self._local(fd, Rights.FD_ADVISE)
        if advice not in _ADVICE:
            return Errno.INVAL
        os.posix_fadvise(entry.host_fd, offset, length, _ADVICE[advice])
        return Errno.SUCCESS

    def fd_allocate(self, fd: int, offset: int, length: int) -> int:
        entry = self._local(fd, Rights.FD_ALLOCATE)
        self._check_file_size(offset + length)
        os.posix_fallocate(entry.host_fd, offset, length)
        return Errno.SUCCESS

    def fd_close(self, fd: int) -> int:
        entry = self.s.fds.pop(fd)
        if entry.is_remote:
            self.s.broker.call_errno(protocol.DirClose(entry.handle))
        elif fd > 2 or entry.host_fd > 2:
            close_quietly(entry.host_fd)
        return Errno.SUCCESS

    def fd_datasync(self, fd: int) -> int:
        entry = self._local(fd, Rights.FD_DATASYNC)
        os.fdatasync(entry.host_fd)
        return Errno.SUCCESS

    def fd_sync(self, fd: int) -> int:
        entry = self.s.fds.get(fd, Rights.FD_SYNC)
        if entry.is_remote:
            self._ask(protocol.DirSync(entry.handle))
        else:
            os.fsync(entry.host_fd)
        return Errno.SUCCESS

    def fd_fdstat_get(self, fd: int, result: int) -> int:
        entry = self.s.fds.get(fd)
        self.mem.pack(FDSTAT, result, entry.filetype, entry.fdflags, entry.rights_base,
                      entry.rights_inheriting)
        return Errno.SUCCESS

    def fd_fdstat_set_flags(self, fd: int, flags: int) -> int:
        entry = self.s.fds.get(fd, Rights.FD_FDSTAT_SET_FLAGS)
        if entry.is_remote:
            return Errno.BADF
        # Only APPEND and NONBLOCK can change on an open file on Linux.
        if flags & ~(Fdflags.APPEND | Fdflags.NONBLOCK):
            return Errno.INVAL
        import fcntl

        current = fcntl.fcntl(entry.host_fd, fcntl.F_GETFL)
        wanted = current & ~(os.O_APPEND | os.O_NONBLOCK)
        if flags & Fdflags.APPEND:
            wanted |= os.O_APPEND
        if flags & Fdflags.NONBLOCK:
            wanted |= os.O_NONBLOCK
        fcntl.fcntl(entry.host_fd, fcntl.F_SETFL, wanted)
        entry.fdflags = (entry.fdflags & ~(Fdflags.APPEND | Fdflags.NONBLOCK)) | flags
        return Errno.SUCCESS

    def fd_fdstat_set_rights(self, fd: int, base: int, inheriting: int) -> int:
        entry = self.s.fds.get(fd)
        if base & ~entry.rights_base or inheriting & ~entry.rights_inheriting:
            return Errno.NOTCAPABLE  # rights can only be dropped
        entry.rights_base, entry.rights_inheriting = base, inheriting
        return Errno.SUCCESS

    def fd_filestat_get(self, fd: int, result: int) -> int:
        entry = self.s.fds.get(fd, Rights.FD_FILESTAT_GET)
        if entry.is_remote:
            reply, _ = self.s.broker.call(protocol.DirFilestatGet(entry.handle), protocol.StatReply)
            if reply.errno:
                return reply.errno
            self._write_filestat(result, reply)
        else:
            self._write_host_stat(result, os.fstat(entry.host_fd))
        return Errno.SUCCESS

    def fd_filestat_set_size(self, fd: int, size: int) -> int:
        entry = self._local(fd, Rights.FD_FILESTAT_SET_SIZE)
        self._check_file_size(size)
        os.ftruncate(entry.host_fd, size)
        return Errno.SUCCESS

    def fd_filestat_set_times(self, fd: int, atim: int, mtim: int, fstflags: int) -> int:
        entry = self.s.fds.get(fd, Rights.FD_FILESTAT_SET_TIMES)
        _check_fstflags(fstflags)
        if entry.is_remote:
            self._ask(protocol.DirFilestatSetTimes(entry.handle, atim, mtim, fstflags))
        else:
            os.utime(entry.host_fd, ns=_utime_ns(os.fstat(entry.host_fd), atim, mtim, fstflags))
        return Errno.SUCCESS

    def fd_pread(self, fd: int, iovs: int, iovs_len: int, offset: int, nread: int) -> int:
        entry = self._local(fd, Rights.FD_READ | Rights.FD_SEEK)
        buffers = self._buffers(iovs, iovs_len)
        count = os.preadv(entry.host_fd, buffers, offset) if buffers else 0
        self.s.io[0] += count
        self.mem.set_u32(nread, count)
        return Errno.SUCCESS

    def fd_pwrite(self, fd: int, iovs: int, iovs_len: int, offset: int, nwritten: int) -> int:
        entry = self._local(fd, Rights.FD_WRITE | Rights.FD_SEEK)
        buffers = self._buffers(iovs, iovs_len)
        self._check_file_size(offset + sum(len(b) for b in buffers))
        count = os.pwritev(entry.host_fd, buffers, offset) if buffers else 0
        self.s.io[1] += count
        self.mem.set_u32(nwritten, count)
        return Errno.SUCCESS

    def fd_read(self, fd: int, iovs: int, iovs_len: int, nread: int) -> int:
        entry = self._local(fd, Rights.FD_READ)
        buffers = self._buffers(iovs, iovs_len)
        count = os.readv(entry.host_fd, buffers) if buffers else 0
        self.s.io[0] += count
        self.mem.set_u32(nread, count)
        return Errno.SUCCESS

    def fd_write(self, fd: int, iovs: int, iovs_len: int, nwritten: int) -> int:
        entry = self._local(fd, Rights.FD_WRITE)
        buffers = self._buffers(iovs, iovs_len)
        if self.s.file_size >= 0 and entry.filetype == Filetype.REGULAR_FILE:
            end = os.lseek(entry.host_fd, 0, os.SEEK_CUR) + sum(len(b) for b in buffers)
            self._check_file_size(end)
        count = os.writev(entry.host_fd, buffers) if buffers else 0
        self.s.io[1] += count
        self.mem.set_u32(nwritten, count)
        return Errno.SUCCESS

    def _check_file_size(self, end: int) -> None:
        if 0 <= self.s.file_size < end:
            raise WasiError(Errno.FBIG)

    def fd_prestat_get(self, fd: int, result: int) -> int:
        entry = self.s.fds.get(fd)
        if entry.preopen is None:
            return Errno.BADF
        self.mem.pack(PRESTAT, result, Preopentype.DIR, len(entry.preopen))
        return Errno.SUCCESS

    def fd_prestat_dir_name(self, fd: int, path: int, path_len: int) -> int:
        entry = self.s.fds.get(fd)
        if entry.preopen is None:
            return Errno.BADF
        if path_len < len(entry.preopen):
            return Errno.NAMETOOLONG
        self.mem.write(path, entry.preopen)
        return Errno.SUCCESS

    def fd_readdir(self, fd: int, buf: int, buf_len: int, cookie: int, bufused: int) -> int:
        entry = self._dir(fd, Rights.FD_READDIR)
        target = self.mem.slice(buf, buf_len)
        filled = 0
        while filled < buf_len:
            want = min(protocol.READDIR_CHUNK, buf_len - filled)
            reply, _ = self.s.broker.call(
                protocol.FdReaddir(entry.handle, cookie, want), protocol.BytesReply)
            if reply.errno:
                return reply.errno
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
        table = self.s.fds
        source = table.get(fd)
        target = table.get(to)
        if fd == to:
            return Errno.SUCCESS
        del table.entries[fd]
        table.entries[to] = source
        if target.is_remote:
            self.s.broker.call_errno(protocol.DirClose(target.handle))
        elif target.host_fd != source.host_fd and target.host_fd > 2:
            close_quietly(target.host_fd)
        return Errno.SUCCESS

    def fd_seek(self, fd: int, offset: int, whence: int, result: int) -> int:
        wanted = Rights.FD_TELL if (offset == 0 and whence == self._whence_cur) else Rights.FD_SEEK
        entry = self._local(fd, wanted)
        how = self.snapshot.whence.get(whence)
        if how is None:
            return Errno.INVAL
        self.mem.set_u64(result, os.lseek(entry.host_fd, _signed64(offset), how))
        return Errno.SUCCESS

    @property
    def _whence_cur(self) -> int:
        return next(k for k, v in self.snapshot.whence.items() if v == os.SEEK_CUR)

    def fd_tell(self, fd: int, result: int) -> int:
        entry = self._local(fd, Rights.FD_TELL)
        self.mem.set_u64(result, os.lseek(entry.host_fd, 0, os.SEEK_CUR))
        return Errno.SUCCESS

    # -- paths (brokered) -----------------------------------------------------------

    def path_open(self, fd: int, dirflags: int, path: int, path_len: int, oflags: int,
                  rights_base: int, rights_inheriting: int, fdflags: int, opened: int) -> int:
        needed = Rights.PATH_OPEN
        if oflags & Oflags.CREAT:
            needed |= Rights.PATH_CREATE_FILE
        if oflags & Oflags.TRUNC:
            needed |= Rights.PATH_FILESTAT_SET_SIZE
        parent = self._dir(fd, needed)
        name = self._path(path, path_len)
        if oflags & ~0xF or fdflags & ~0x1F or dirflags & ~1:
            return Errno.INVAL
        self.s.fds.check_room()
        self.mem.refresh()  # fail on a bad `opened` pointer before the broker acts
        self.mem.slice(opened, 4)
        if rights_base & WRITE_INTENT & ~parent.rights_inheriting:
            return Errno.NOTCAPABLE  # e.g. opening for write under a read-only preopen
        rights_base &= parent.rights_inheriting
        rights_inheriting &= parent.rights_inheriting
        reply, fds = self.s.broker.call(
            protocol.PathOpen(parent.handle, dirflags, oflags, fdflags, rights_base,
                              rights_inheriting, name),
            protocol.OpenReply)
        if reply.errno:
            for extra in fds:
                close_quietly(extra)
            return reply.errno
        if reply.kind == protocol.FileKind.DIRECTORY:
            mask = DIRECTORY_READONLY_RIGHTS if parent.readonly else DIRECTORY_RIGHTS
            entry = Descriptor(
                filetype=Filetype.DIRECTORY, rights_base=rights_base & int(mask),
                rights_inheriting=rights_inheriting, handle=reply.handle,
                readonly=parent.readonly,
            )
        else:
            (host_fd,) = fds
            mask = int(FILE_READONLY_RIGHTS if parent.readonly else FILE_RIGHTS)
            if not rights_base & WRITE_INTENT and not oflags & Oflags.TRUNC:
                mask &= ~int(Rights.FD_WRITE | WRITE_INTENT)
            elif not rights_base & READ_INTENT:
                mask &= ~int(Rights.FD_READ)
            entry = Descriptor(
                filetype=Filetype(reply.filetype), rights_base=rights_base & mask,
                rights_inheriting=rights_inheriting & mask, fdflags=fdflags,
                host_fd=host_fd, readonly=parent.readonly,
            )
        new_fd = self.s.fds.add(entry)
        self.mem.set_u32(opened, new_fd)
        return Errno.SUCCESS

    def path_filestat_get(self, fd: int, flags: int, path: int, path_len: int, result: int) -> int:
        parent = self._dir(fd, Rights.PATH_FILESTAT_GET)
        name = self._path(path, path_len)
        if flags & ~1:
            return Errno.INVAL
        reply, _ = self.s.broker.call(
            protocol.PathFilestatGet(parent.handle, flags, name), protocol.StatReply)
        if reply.errno:
            return reply.errno
        self._write_filestat(result, reply)
        return Errno.SUCCESS

    def path_filestat_set_times(self, fd: int, flags: int, path: int, path_len: int,
                                atim: int, mtim: int, fstflags: int) -> int:
        parent = self._dir(fd, Rights.PATH_FILESTAT_SET_TIMES)
        name = self._path(path, path_len)
        _check_fstflags(fstflags)
        if flags & ~1:
            return Errno.INVAL
        self._ask(protocol.PathFilestatSetTimes(parent.handle, flags, atim, mtim, fstflags, name))
        return Errno.SUCCESS

    def path_create_directory(self, fd: int, path: int, path_len: int) -> int:
        parent = self._dir(fd, Rights.PATH_CREATE_DIRECTORY)
        self._ask(protocol.PathCreateDirectory(parent.handle, self._path(path, path_len)))
        return Errno.SUCCESS

    def path_remove_directory(self, fd: int, path: int, path_len: int) -> int:
        parent = self._dir(fd, Rights.PATH_REMOVE_DIRECTORY)
        self._ask(protocol.PathRemoveDirectory(parent.handle, self._path(path, path_len)))
        return Errno.SUCCESS

    def path_unlink_file(self, fd: int, path: int, path_len: int) -> int:
        parent = self._dir(fd, Rights.PATH_UNLINK_FILE)
        self._ask(protocol.PathUnlinkFile(parent.handle, self._path(path, path_len)))
        return Errno.SUCCESS

    def path_rename(self, fd: int, old_path: int, old_len: int, new_fd: int, new_path: int,
                    new_len: int) -> int:
        old_dir = self._dir(fd, Rights.PATH_RENAME_SOURCE)
        new_dir = self._dir(new_fd, Rights.PATH_RENAME_TARGET)
        self._ask(protocol.PathRename(old_dir.handle, new_dir.handle,
                                      self._path(old_path, old_len), self._path(new_path, new_len)))
        return Errno.SUCCESS

    def path_link(self, old_fd: int, old_flags: int, old_path: int, old_len: int, new_fd: int,
                  new_path: int, new_len: int) -> int:
        old_dir = self._dir(old_fd, Rights.PATH_LINK_SOURCE)
        new_dir = self._dir(new_fd, Rights.PATH_LINK_TARGET)
        if old_flags & ~1:
            return Errno.INVAL
        self._ask(protocol.PathLink(old_dir.handle, old_flags, new_dir.handle,
                                    self._path(old_path, old_len), self._path(new_path, new_len)))
        return Errno.SUCCESS

    def path_symlink(self, old_path: int, old_len: int, fd: int, new_path: int,
                     new_len: int) -> int:
        parent = self._dir(fd, Rights.PATH_SYMLINK)
        self._ask(protocol.PathSymlink(parent.handle, self._path(old_path, old_len),
                                       self._path(new_path, new_len)))
        return Errno.SUCCESS

    def path_readlink(self, fd: int, path: int, path_len: int, buf: int, buf_len: int,
                      bufused: int) -> int:
        parent = self._dir(fd, Rights.PATH_READLINK)
        reply, _ = self.s.broker.call(
            protocol.PathReadlink(parent.handle, self._path(path, path_len)), protocol.BytesReply)
        if reply.errno:
            return reply.errno
        data = reply.data[:buf_len]  # a short buffer truncates, as readlink(2) does
        self.mem.write(buf, data)
        self.mem.set_u32(bufused, len(data))
        return Errno.SUCCESS

    # -- poll -------------------------------------------------------------------------

    def poll_oneoff(self, subs: int, events: int, nsubscriptions: int, nevents: int) -> int:
        if nsubscriptions == 0:
            return Errno.INVAL
        layout = self.snapshot.subscription
        mem = self.mem
        mem.slice(subs, nsubscriptions * layout.size)
        mem.slice(events, nsubscriptions * EVENT.size)
        now = time.monotonic_ns()
        deadline: int | None = None
        clock_subs: list[tuple[int, int]] = []  # (userdata, deadline in monotonic ns)
        fd_subs: list[tuple[int, int, int, int]] = []  # (userdata, type, fd, host_fd)
        ready: list[tuple[int, int, int, int, int]] = []  # userdata, error, type, nbytes, flags
        for i in range(nsubscriptions):
            base = subs + i * layout.size
            userdata, tag = mem.unpack(layout.head, base)
            if tag == Eventtype.CLOCK:
                clock_id, timeout, _precision, flags = mem.unpack(
                    layout.clock, base + layout.clock_offset)
                clock = _CLOCKS.get(clock_id)
                if clock is None:
                    ready.append((userdata, Errno.INVAL, tag, 0, 0))
                    continue
                if flags & Subclockflags.ABSTIME:
                    at = now + max(0, timeout - time.clock_gettime_ns(clock))
                else:
                    at = now + timeout
                clock_subs.append((userdata, at))
                deadline = at if deadline is None else min(deadline, at)
            elif tag in (Eventtype.FD_READ, Eventtype.FD_WRITE):
                (fd,) = mem.unpack(layout.fd, base + layout.fd_offset)
                entry = self.s.fds.entries.get(fd)
                if entry is None:
                    ready.append((userdata, Errno.BADF, tag, 0, 0))
                elif entry.is_remote:
                    ready.append((userdata, Errno.BADF, tag, 0, 0))
                elif not entry.rights_base & Rights.POLL_FD_READWRITE:
                    ready.append((userdata, Errno.NOTCAPABLE, tag, 0, 0))
                elif entry.filetype == Filetype.REGULAR_FILE:
                    ready.append((userdata, 0, tag, _bytes_left(entry.host_fd, tag), 0))
                else:
                    fd_subs.append((userdata, tag, fd, entry.host_fd))
            else:
                return Errno.INVAL
        if not ready:
            timeout_ms = None if deadline is None else max(0, deadline - time.monotonic_ns()) / 1e6
            if fd_subs:
                poller = select.poll()
                for _, tag, _, host_fd in fd_subs:
                    poller.register(host_fd, select.POLLIN if tag == Eventtype.FD_READ else select.POLLOUT)
                while True:
                    try:
                        results = dict(poller.poll(timeout_ms))
                        break
                    except InterruptedError:
                        continue
                for userdata, tag, _, host_fd in fd_subs:
                    revents = results.get(host_fd, 0)
                    if revents & (select.POLLNVAL):
                        ready.append((userdata, Errno.BADF, tag, 0, 0))
                    elif revents:
                        flags = Eventrwflags.FD_READWRITE_HANGUP if revents & select.POLLHUP else 0
                        ready.append((userdata, 0, tag, 0, flags))
            elif timeout_ms:
                time.sleep(timeout_ms / 1e3)
        now = time.monotonic_ns()
        for userdata, at in clock_subs:
            if at <= now:
                ready.append((userdata, 0, Eventtype.CLOCK, 0, 0))
        for i, (userdata, error, tag, nbytes, flags) in enumerate(ready):
            mem.pack(EVENT, events + i * EVENT.size, userdata, error, tag, nbytes, flags)
        mem.set_u32(nevents, len(ready))
        return Errno.SUCCESS

    # -- sockets: wasijail grants no sockets, so only stdio could ever be one ----------

    def _socket(self, fd: int) -> Descriptor:
        entry = self.s.fds.get(fd)
        if entry.filetype not in (Filetype.SOCKET_STREAM, Filetype.SOCKET_DGRAM):
            raise WasiError(Errno.NOTSOCK)
        return entry

    def sock_accept(self, fd: int, flags: int, result: int) -> int:
        self._socket(fd)
        return Errno.NOTSUP

    def sock_recv(self, fd: int, ri_data: int, ri_len: int, ri_flags: int, ro_len: int,
                  ro_flags: int) -> int:
        entry = self._local(fd, Rights.FD_READ)
        self._socket(fd)
        buffers = self._buffers(ri_data, ri_len)
        import socket as _socket

        sock = _socket.socket(fileno=os.dup(entry.host_fd))
        try:
            count, _, msg_flags, _ = sock.recvmsg_into(buffers, 0, _recv_flags(ri_flags))
        finally:
            sock.close()
        self.mem.set_u32(ro_len, count)
        self.mem.pack(_U16, ro_flags, 1 if msg_flags & _socket.MSG_TRUNC else 0)
        return Errno.SUCCESS

    def sock_send(self, fd: int, si_data: int, si_len: int, si_flags: int, so_len: int) -> int:
        entry = self._local(fd, Rights.FD_WRITE)
        self._socket(fd)
        count = os.writev(entry.host_fd, self._buffers(si_data, si_len))
        self.mem.set_u32(so_len, count)
        return Errno.SUCCESS

    def sock_shutdown(self, fd: int, how: int) -> int:
        entry = self._socket(fd)
        if not how or how & ~(Sdflags.RD | Sdflags.WR):
            return Errno.INVAL
        import socket as _socket

        mode = {1: _socket.SHUT_RD, 2: _socket.SHUT_WR, 3: _socket.SHUT_RDWR}[how]
        sock = _socket.socket(fileno=os.dup(entry.host_fd))
        try:
            sock.shutdown(mode)
        finally:
            sock.close()
        return Errno.SUCCESS


_U16 = struct.Struct("<H")


def _recv_flags(ri_flags: int) -> int:
    import socket as _socket

    flags = 0
    if ri_flags & 1:
        flags |= _socket.MSG_PEEK
    if ri_flags & 2:
        flags |= _socket.MSG_WAITALL
    return flags


def _bytes_left(host_fd: int, tag: int) -> int:
    if tag != Eventtype.FD_READ:
        return 0
    try:
        return max(0, os.fstat(host_fd).st_size - os.lseek(host_fd, 0, os.SEEK_CUR))
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


def _check_fstflags(fstflags: int) -> None:
    if fstflags & ~0xF:
        raise WasiError(Errno.INVAL)
    if (fstflags & Fstflags.ATIM and fstflags & Fstflags.ATIM_NOW) or (
            fstflags & Fstflags.MTIM and fstflags & Fstflags.MTIM_NOW):
        raise WasiError(Errno.INVAL)


def _utime_ns(st: os.stat_result, atim: int, mtim: int, fstflags: int) -> tuple[int, int]:
    """The (atime, mtime) pair os.utime needs, keeping what fstflags leaves alone."""
    now = time.time_ns()
    a = atim if fstflags & Fstflags.ATIM else now if fstflags & Fstflags.ATIM_NOW else st.st_atime_ns
    m = mtim if fstflags & Fstflags.MTIM else now if fstflags & Fstflags.MTIM_NOW else st.st_mtime_ns
    return a, m


def exit_status(code: int) -> int | None:
    """The process status for proc_exit(code), or None when it is not a valid one."""
    return code if 0 <= code < EXIT_STATUS_LIMIT else None

