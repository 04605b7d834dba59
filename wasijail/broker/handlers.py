"""The broker: the parent's side of one child's WASI path operations.

The parent holds every directory the guest may reach as an fd (a *handle*);
the child names a handle and a path, and the broker resolves the path beneath
that handle's fd with `Resolver`, which never rises above it. Requests arrive
decoded and validated (`protocol.broker.decode_request`); `Broker.dispatch`
looks the handler up in a table keyed by op. A handler returns its reply's
body (None for requests that have none) and the descriptors to donate, or
raises `WasiErrno`; `dispatch` turns that, and the host's errors, into the
channel's one error reply.

Read-only handles refuse every mutating operation here, whatever the child
claims its rights are: the child is not trusted to enforce them. Rights belong
to the handle, never to the path: a directory opened beneath a read-only
preopen is read-only, even if a writable preopen also reaches it. Whatever
gives an existing inode a new name or moves it (path_link, path_rename) needs a
writable handle on both sides, so nothing a read-only grant shows can be
carried into a writable one and changed there (wasmtime: PATH_LINK_SOURCE,
which a read-only preopen lacks).
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field

from typing import NamedTuple

from ..fds import close_quietly
from ..protocol import broker as wire
from ..protocol.transport import ProtocolError
from ..wasi import (
    filestat_of,
    filetype_of_mode,
    fstflags_conflict,
    times_for,
    READ_INTENT,
    WRITE_INTENT,
    Errno,
    Fdflags,
    Filetype,
    Lookupflags,
    Oflags,
    WasiErrno,
    errno_from_host,
)
from .readdir import DirCursor
from . import symlinks as links
from .resolve import EscapeError, Resolver

# The most directory handles the parent holds for one child whose policy sets
# no `open_files`: a hostile child could otherwise make it hold fds without bound.
DEFAULT_MAX_HANDLES = 1024
# Requests that create one directory entry each when they succeed (the `files` limit).
_CREATES_ONE = frozenset({wire.BrokerOp.PATH_CREATE_DIRECTORY, wire.BrokerOp.PATH_SYMLINK, wire.BrokerOp.PATH_LINK})
# Inodes remembered as re-timable through a held descriptor: bounded, so a
# child opening millions of files cannot grow the supervisor; past it the
# oldest are forgotten (re-timing those through a descriptor is ENOTCAPABLE).
MAX_RETIMABLE = 1 << 16
HANDLE_MAX = (1 << 32) - 1  # the largest handle number OpenReply carries

# The flags as plain ints for the hot paths: IntFlag arithmetic costs ~30x more.
_FOLLOW = int(Lookupflags.SYMLINK_FOLLOW)
_DIRECTORY = int(Oflags.DIRECTORY)
_TRUNC = int(Oflags.TRUNC)
_CREAT_OR_TRUNC = int(Oflags.CREAT | Oflags.TRUNC)
_NONBLOCK = int(Fdflags.NONBLOCK)
_HOST_OFLAGS = tuple((int(w), h) for w, h in ((Oflags.CREAT, os.O_CREAT), (Oflags.EXCL, os.O_EXCL),
                                                (Oflags.TRUNC, os.O_TRUNC), (Oflags.DIRECTORY, os.O_DIRECTORY)))
_HOST_FDFLAGS = tuple((int(w), h) for w, h in ((Fdflags.APPEND, os.O_APPEND), (Fdflags.DSYNC, os.O_DSYNC),
                                                 (Fdflags.SYNC, os.O_SYNC), (Fdflags.RSYNC, os.O_SYNC)))


class Answer(NamedTuple):
    """What the session sends back: `wire.encode_reply(op, errno, body)` and the descriptors."""

    errno: int  # 0: success
    body: wire.Reply | None  # the reply's body (None on an error, or for a request that has none)
    fds: tuple[int, ...] | list[int]  # donated with the reply, closed by the caller after sending


_DONE = (None, ())  # what a handler with nothing to return returns


@dataclass(slots=True)
class Handle:
    fd: int
    readonly: bool
    root: tuple[int, int]  # (st_dev, st_ino) of the preopen it lies beneath
    is_preopen: bool = False
    cursor: DirCursor | None = field(default=None)  # where fd_readdir is in the directory


class Broker:
    """Serves one child: its handle table and the handlers for its requests."""

    def __init__(self, preopens: list[tuple[int, bool]], *, resolver: Resolver | None = None,
                 max_handles: int = DEFAULT_MAX_HANDLES, files: int | None = None,
                 symlinks: str = "confined") -> None:
        self.resolver = resolver or Resolver()
        self.confined = symlinks == "confined"  # the policy's [fs] symlinks (see symlinks.py)
        # The policy's open_files, enforced here in the parent, which a
        # compromised child cannot bypass: the most directory fds held for it.
        self.max_handles = max_handles
        self.files_left = files  # directory entries the child may still create (None: unlimited)
        self.handles: dict[int, Handle] = {}
        # Files donated from writable handles (dev, ino): the only ones a child may have re-timed.
        self._retimable = _BoundedSet(MAX_RETIMABLE)
        self._stdio_files: frozenset[tuple[int, int]] = frozenset()
        for fd, readonly in preopens:
            self.handles[len(self.handles)] = Handle(fd, readonly, links.identity(fd), is_preopen=True)
        self._next = len(self.handles)
        self.calls = 0  # requests served (the run's usage reports it)
        op = wire.BrokerOp
        self._table = {
            op.PATH_OPEN: self.path_open,
            op.PATH_FILESTAT_GET: self.path_filestat_get,
            op.PATH_FILESTAT_SET_TIMES: self.path_filestat_set_times,
            op.PATH_CREATE_DIRECTORY: self.path_create_directory,
            op.PATH_REMOVE_DIRECTORY: self.path_remove_directory,
            op.PATH_UNLINK_FILE: self.path_unlink_file,
            op.PATH_RENAME: self.path_rename,
            op.PATH_LINK: self.path_link,
            op.PATH_SYMLINK: self.path_symlink,
            op.PATH_READLINK: self.path_readlink,
            op.FD_READDIR: self.fd_readdir,
            op.DIR_FILESTAT_GET: self.dir_filestat_get,
            op.DIR_FILESTAT_SET_TIMES: self.dir_filestat_set_times,
            op.DIR_CLOSE: self.dir_close,
            op.DIR_SYNC: self.dir_sync,
            op.FD_FILESTAT_SET_TIMES: self.fd_filestat_set_times,
        }

    # -- dispatch ------------------------------------------------------------------

    def dispatch(self, request: wire.Message, fds: tuple[int, ...] = ()) -> Answer:
        """Run one request (decoded and validated already): its answer.

        `fds` are the descriptors that came with it, exactly `type(request).FDS`
        of them (the session checked); they stay the caller's to close.
        """
        op = request.OP
        handler = self._table.get(op)
        if handler is None:
            raise ProtocolError(f"{type(request).__name__} is not a broker request")
        self.calls += 1
        try:
            if op in _CREATES_ONE and self.files_left is not None:
                if self.files_left <= 0:
                    raise WasiErrno(Errno.DQUOT)  # as a full quota would
                body, out = handler(request, *fds)
                self.files_left -= 1
            else:
                body, out = handler(request, *fds)
            return Answer(0, body, out)
        except WasiErrno as exc:
            code = exc.errno
        except EscapeError:
            code = Errno.NOTCAPABLE
        except OSError as exc:
            code = errno_from_host(exc.errno)
        except OverflowError:  # a guest number too large for the host call
            code = Errno.OVERFLOW
        return Answer(int(code), None, ())

    def close(self) -> None:
        for handle in self.handles.values():
            close_quietly(handle.fd)
        self.handles.clear()

    # -- helpers -------------------------------------------------------------------

    def _handle(self, number: int, *, mutating: bool = False) -> Handle:
        handle = self.handles.get(number)
        if handle is None:
            raise WasiErrno(Errno.BADF)
        if mutating and handle.readonly:
            raise WasiErrno(Errno.PERM)
        return handle

    def _add(self, fd: int, parent: Handle) -> int:
        if len(self.handles) >= self.max_handles:
            close_quietly(fd)
            raise WasiErrno(Errno.MFILE)
        # Numbers travel as u32 (OpenReply.handle): past the last one, wrap to a free one.
        number = self._next
        while number in self.handles:
            number = (number + 1) & HANDLE_MAX
        self._next = (number + 1) & HANDLE_MAX
        self.handles[number] = Handle(fd, parent.readonly, parent.root)
        return number

    def _parent(self, handle: Handle, path: bytes) -> tuple[int, bytes]:
        if not path:
            raise WasiErrno(Errno.NOENT)
        return self.resolver.parent(handle.fd, path)

    def _parent_or_dir(self, handle: Handle, path: bytes) -> tuple[int, bytes]:
        """`_parent`, except that a trailing slash names a directory to act in.

        As in wasmtime (cap-std): "x/" makes x itself (followed, and required
        to be a directory) the parent and "." the name, so unlink says EISDIR,
        rmdir EINVAL, readlink EINVAL, symlink and link EEXIST; a missing x is
        ENOENT and a file ENOTDIR.
        """
        if path.endswith(b"/"):
            return self.resolver.open(handle.fd, path, os.O_PATH | os.O_DIRECTORY), b"."
        return self._parent(handle, path)

    def _is_symlink(self, handle: Handle, path: bytes) -> bool:
        """Whether `path` names a symlink (not followed); False when it cannot be looked up."""
        try:
            dirfd, name = self._parent(handle, path)
        except OSError:
            return False
        try:
            return stat.S_ISLNK(os.stat(name, dir_fd=dirfd, follow_symlinks=False).st_mode)
        except OSError:
            return False
        finally:
            close_quietly(dirfd)

    def _resolve_fd(self, handle: Handle, path: bytes, follow: bool) -> int:
        """An O_PATH fd for the object `path` names (following a final symlink or not)."""
        if not path:
            raise WasiErrno(Errno.NOENT)
        flags = os.O_PATH
        if path.endswith(b"/"):
            flags |= os.O_DIRECTORY
            follow = True
        return self.resolver.open(handle.fd, path, flags, follow=follow)

    # -- handlers ----------------------------------------------------------------------

    def path_open(self, req: wire.PathOpen):
        handle = self._handle(req.dir)
        if not req.path:
            raise WasiErrno(Errno.NOENT)
        read = bool(req.rights_base & READ_INTENT)
        write = bool(req.rights_base & WRITE_INTENT)
        mutating = write or req.oflags & _CREAT_OR_TRUNC
        if mutating and handle.readonly:
            raise WasiErrno(Errno.PERM)
        if req.oflags & _DIRECTORY and (write or req.oflags & _TRUNC):
            raise WasiErrno(Errno.ISDIR)
        flags = os.O_RDWR if (read and write) else os.O_WRONLY if write else os.O_RDONLY
        # O_NONBLOCK during the open: a FIFO must never stall the broker.
        flags |= os.O_NOCTTY | os.O_NONBLOCK
        for wasi_flag, host_flag in _HOST_OFLAGS:
            if req.oflags & wasi_flag:
                flags |= host_flag
        for wasi_flag, host_flag in _HOST_FDFLAGS:
            if req.fdflags & wasi_flag:
                flags |= host_flag
        follow = bool(req.lookupflags & _FOLLOW)
        try:
            if flags & os.O_CREAT and self.files_left is not None:
                fd = self._open_counted(handle, req.path, flags, follow)
            else:
                fd = self.resolver.open(handle.fd, req.path, flags, 0o666, follow=follow)
        except OSError as exc:
            # O_DIRECTORY|O_NOFOLLOW on a symlink is ENOTDIR in Linux; WASI
            # programs expect ELOOP for any unfollowed symlink, as wasmtime says.
            if (exc.errno == errno.ENOTDIR and req.oflags & _DIRECTORY and not follow
                    and not req.path.endswith(b"/") and self._is_symlink(handle, req.path)):
                raise WasiErrno(Errno.LOOP) from None
            raise
        try:
            st = os.fstat(fd)
            if not req.fdflags & _NONBLOCK:
                os.set_blocking(fd, True)
        except OSError:
            close_quietly(fd)
            raise
        if stat.S_ISDIR(st.st_mode):
            number = self._add(fd, handle)
            return wire.OpenReply(wire.FileKind.DIRECTORY, number, Filetype.DIRECTORY), ()
        if not handle.readonly:
            self._retimable.add((st.st_dev, st.st_ino))
        return wire.OpenReply(wire.FileKind.DONATED, 0, filetype_of_mode(st.st_mode)), (fd,)

    def _open_counted(self, handle: Handle, path: bytes, flags: int, follow: bool) -> int:
        """Open with O_CREAT under the `files` limit: a new entry is counted, none made past it."""
        opened = self.resolver.open
        without_create = flags & ~(os.O_CREAT | os.O_EXCL)
        if self.files_left <= 0:
            try:
                fd = opened(handle.fd, path, without_create, follow=follow)
            except FileNotFoundError:
                close_quietly(self._parent(handle, path)[0])  # a missing parent stays ENOENT
                raise WasiErrno(Errno.DQUOT) from None  # a new entry: as a full quota says
            if flags & os.O_EXCL:
                close_quietly(fd)
                raise WasiErrno(Errno.EXIST)
            return fd
        try:
            fd = opened(handle.fd, path, flags | os.O_EXCL, 0o666, follow=follow)
        except FileExistsError:
            if flags & os.O_EXCL:
                raise
            try:  # it exists (or is a symlink): open what is there
                return opened(handle.fd, path, without_create, follow=follow)
            except FileNotFoundError:  # a dangling symlink, followed: the open creates its target
                fd = opened(handle.fd, path, flags, 0o666, follow=follow)
        self.files_left -= 1
        return fd

    def path_filestat_get(self, req: wire.PathFilestatGet):
        handle = self._handle(req.dir)
        follow = bool(req.lookupflags & _FOLLOW)
        st = self.resolver.lstat_name(handle.fd, req.path)  # a plain name: one syscall, not three
        if st is None or (follow and stat.S_ISLNK(st.st_mode)):
            fd = self._resolve_fd(handle, req.path, follow)
            try:
                st = os.fstat(fd)
            finally:
                close_quietly(fd)
        return _stat_reply(st), ()

    def path_filestat_set_times(self, req: wire.PathFilestatSetTimes):
        handle = self._handle(req.dir, mutating=True)
        fd = self._resolve_fd(handle, req.path, bool(req.lookupflags & _FOLLOW))
        try:
            st = os.fstat(fd)
            if not stat.S_ISLNK(st.st_mode):
                _set_times(fd, req.atim, req.mtim, req.fstflags)
                return _DONE
        finally:
            close_quietly(fd)
        # The symlink itself: an O_PATH fd of a link cannot be re-timed, so
        # act on its name in its (resolved, confined) parent, never following it.
        with _InDir(self._parent(handle, req.path)) as (dirfd, name):
            st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
            os.utime(name, ns=_new_times(st, req.atim, req.mtim, req.fstflags), dir_fd=dirfd,
                     follow_symlinks=False)
        return _DONE

    def path_create_directory(self, req: wire.PathCreateDirectory):
        return self._at_name(req, self._parent, os.mkdir)  # mode 0o777, less the umask

    def path_remove_directory(self, req: wire.PathRemoveDirectory):
        return self._at_name(req, self._parent_or_dir, os.rmdir)

    def path_unlink_file(self, req: wire.PathUnlinkFile):
        return self._at_name(req, self._parent_or_dir, os.unlink)

    def _at_name(self, req: wire.PathCreateDirectory | wire.PathRemoveDirectory | wire.PathUnlinkFile,
                 locate, act):
        """`act(name, dir_fd=...)` on the last component of a path under a writable handle,
        in its parent as `locate` resolves it (confined, never following the name itself)."""
        with _InDir(locate(self._handle(req.dir, mutating=True), req.path)) as (dirfd, name):
            act(name, dir_fd=dirfd)
        return _DONE

    def path_rename(self, req: wire.PathRename):
        old = self._handle(req.old_dir, mutating=True)
        new = self._handle(req.new_dir, mutating=True)
        with (_InDir(self._parent(old, req.old_path)) as (old_dirfd, old_name),
              _InDir(self._parent(new, req.new_path)) as (new_dirfd, new_name)):
            if req.old_path.endswith(b"/") or req.new_path.endswith(b"/"):
                st = os.stat(old_name, dir_fd=old_dirfd, follow_symlinks=False)
                if not stat.S_ISDIR(st.st_mode):
                    raise WasiErrno(Errno.NOTDIR)
            if self.confined:
                self._check_move(old, old_dirfd, old_name, new, new_dirfd)
            os.rename(old_name, new_name, src_dir_fd=old_dirfd, dst_dir_fd=new_dirfd)
        return _DONE

    def path_link(self, req: wire.PathLink):
        # The source too: a new name in a writable tree is a writable route to the inode.
        old = self._handle(req.old_dir, mutating=True)
        new = self._handle(req.new_dir, mutating=True)
        if req.lookupflags & _FOLLOW:
            # Following the source means linking what it resolves to, which must stay inside.
            source = self._resolve_fd(old, req.old_path, True)
            try:
                with _InDir(self._parent_or_dir(new, req.new_path)) as (new_dirfd, new_name):
                    os.link(f"/proc/self/fd/{source}", new_name, dst_dir_fd=new_dirfd)
            finally:
                close_quietly(source)
            return _DONE
        with (_InDir(self._parent_or_dir(old, req.old_path)) as (old_dirfd, old_name),
              _InDir(self._parent_or_dir(new, req.new_path)) as (new_dirfd, new_name)):
            if self.confined and links.is_symlink(old_dirfd, old_name):
                # The link itself gets a name elsewhere: checked as if made there.
                self._check_target(new, new_dirfd, os.readlink(old_name, dir_fd=old_dirfd))
            os.link(old_name, new_name, src_dir_fd=old_dirfd, dst_dir_fd=new_dirfd, follow_symlinks=False)
        return _DONE

    def path_symlink(self, req: wire.PathSymlink):
        handle = self._handle(req.dir, mutating=True)
        if req.target.startswith(b"/"):
            # Resolution would confine it, but host tools that later follow it
            # would not: an absolute link is never created.
            raise WasiErrno(Errno.PERM)
        if not req.target:
            raise WasiErrno(Errno.NOENT)
        with _InDir(self._parent_or_dir(handle, req.path)) as (dirfd, name):
            if self.confined:
                self._check_target(handle, dirfd, req.target)
            os.symlink(req.target, name, dir_fd=dirfd)
        return _DONE

    def _check_target(self, handle: Handle, dirfd: int, target: bytes) -> None:
        """EPERM unless a link saying `target`, in `dirfd`, stays inside the
        preopen of `handle` for whoever follows it (the policy's "confined")."""
        climbs = links.ascent(target)
        if target.startswith(b"/") or climbs is None:
            raise WasiErrno(Errno.PERM)
        if climbs and not links.fits(target, self._depth(handle, dirfd)):
            raise WasiErrno(Errno.PERM)

    def _depth(self, handle: Handle, dirfd: int) -> int:
        try:
            return links.depth_below(dirfd, handle.root)
        except links.NotBeneath:
            raise WasiErrno(Errno.NOTCAPABLE) from None

    def _check_move(self, old: Handle, old_dirfd: int, name: bytes, new: Handle, new_dirfd: int) -> None:
        """A rename carries the links it moves: each must still stay inside.

        A symlink moved elsewhere is checked as if made there (EPERM). A
        directory moved to a shallower place, or into another preopen, is
        scanned for links that would then climb out: EXDEV if one would or if
        it is too large to scan, so `mv` copies instead and every link it
        makes again is checked.
        """
        st = os.stat(name, dir_fd=old_dirfd, follow_symlinks=False)
        if stat.S_ISLNK(st.st_mode):
            self._check_target(new, new_dirfd, os.readlink(name, dir_fd=old_dirfd))
            return
        if not stat.S_ISDIR(st.st_mode):
            return
        depth = self._depth(new, new_dirfd)
        if old.root == new.root and depth >= self._depth(old, old_dirfd):
            return  # as deep or deeper: every link inside climbs no further out
        try:
            if links.subtree_fits(old_dirfd, name, depth + 1):
                return
        except links.TooLarge:
            pass
        raise WasiErrno(Errno.XDEV)

    def path_readlink(self, req: wire.PathReadlink):
        with _InDir(self._parent_or_dir(self._handle(req.dir), req.path)) as (dirfd, name):
            return wire.BytesReply(os.fsencode(os.readlink(name, dir_fd=dirfd))), ()

    def fd_readdir(self, req: wire.FdReaddir):
        handle = self._handle(req.dir)
        if handle.cursor is None:
            handle.cursor = DirCursor()
        dots = _dot_inodes(handle) if req.cookie < 2 else (0, 0)
        return wire.BytesReply(handle.cursor.read(handle.fd, req.cookie, req.max_bytes, dots)), ()

    def dir_filestat_get(self, req: wire.DirFilestatGet):
        handle = self._handle(req.dir)
        return _stat_reply(os.fstat(handle.fd)), ()

    def dir_filestat_set_times(self, req: wire.DirFilestatSetTimes):
        handle = self._handle(req.dir, mutating=True)
        _set_times(handle.fd, req.atim, req.mtim, req.fstflags)
        return _DONE

    def fd_filestat_set_times(self, req: wire.FdFilestatSetTimes, fd: int):
        """Re-time a file the child holds, if a writable grant gave it to the child."""
        st = os.fstat(fd)
        identity = (st.st_dev, st.st_ino)
        if identity in self._stdio_files or identity not in self._retimable:
            # Stdio is the caller's, anything else came through a read-only grant
            # (an honest child asks only for files it holds FD_FILESTAT_SET_TIMES on).
            raise WasiErrno(Errno.NOTCAPABLE)
        os.utime(fd, ns=_new_times(st, req.atim, req.mtim, req.fstflags))
        return _DONE

    def protect_stdio(self, fds) -> None:
        """Never re-time the files behind these descriptors (the run's stdio, the caller's)."""
        identities = set()
        for fd in fds:
            try:
                st = os.fstat(fd)
            except OSError:
                continue
            identities.add((st.st_dev, st.st_ino))
        self._stdio_files = frozenset(identities)

    def dir_close(self, req: wire.DirClose):
        handle = self.handles.pop(req.dir, None)
        if handle is None:
            raise WasiErrno(Errno.BADF)
        close_quietly(handle.fd)
        return _DONE

    def dir_sync(self, req: wire.DirSync):
        os.fsync(self._handle(req.dir).fd)
        return _DONE


class _InDir:
    """`with _InDir(located) as (dirfd, name)`: a name and the resolved directory
    fd it lies in (from `_parent`, `_parent_or_dir`), the fd closed on exit."""

    __slots__ = ("located",)

    def __init__(self, located: tuple[int, bytes]) -> None:
        self.located = located

    def __enter__(self) -> tuple[int, bytes]:
        return self.located

    def __exit__(self, *exc) -> None:
        close_quietly(self.located[0])


class _BoundedSet:
    """A set that forgets its oldest members past `cap` (insertion order)."""

    def __init__(self, cap: int) -> None:
        self._items: dict = {}
        self._cap = cap

    def add(self, item) -> None:
        self._items.pop(item, None)
        self._items[item] = None
        if len(self._items) > self._cap:
            del self._items[next(iter(self._items))]

    def __contains__(self, item) -> bool:
        return item in self._items


def _dot_inodes(handle: Handle) -> tuple[int, int]:
    """The inode numbers fd_readdir gives `.` and `..`."""
    own = os.fstat(handle.fd).st_ino
    if handle.is_preopen:
        return own, own  # never look above a preopen, not even at an inode number
    try:
        return own, os.stat("..", dir_fd=handle.fd).st_ino
    except OSError:
        return own, own


def _stat_reply(st: os.stat_result) -> wire.StatReply:
    # Clamped to WASI's fields: a file dated before 1970 is ordinary on real disks.
    return wire.StatReply(*filestat_of(st))


def _new_times(st: os.stat_result, atim: int, mtim: int, fstflags: int) -> tuple[int, int]:
    if fstflags_conflict(fstflags):
        raise WasiErrno(Errno.INVAL)
    return times_for(st.st_atime_ns, st.st_mtime_ns, atim, mtim, fstflags)


def _set_times(fd: int, atim: int, mtim: int, fstflags: int) -> None:
    """Re-time what fd (resolved already, never a symlink) names."""
    times = _new_times(os.fstat(fd), atim, mtim, fstflags)
    # An O_PATH fd cannot be futimens'd; its /proc magic link names exactly it.
    os.utime(f"/proc/self/fd/{fd}", ns=times)
