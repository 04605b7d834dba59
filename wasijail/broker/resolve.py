"""Resolve guest paths beneath a preopened directory fd, never above it.

The broker holds each preopen as a directory fd and hands every guest path to
`Resolver`, which opens it relative to that fd with two guarantees: no `..`,
symlink or absolute path ever reaches a file outside the preopen, and magic
links (/proc/PID/fd/N and friends) are never followed.

Two implementations sit behind the one API and give the same answers:

* openat2(2) with RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS (Linux 5.6+): the
  kernel does the whole walk and refuses to leave the root with EXDEV.
* a fallback walk for kernels without openat2: one component at a time, every
  open with O_NOFOLLOW, symlinks read and spliced in by us, and `..` answered
  from our own stack of directory fds, so the kernel never follows a link or a
  `..` on our behalf. A directory swapped for a symlink between two steps is
  therefore met by O_NOFOLLOW and checked like any other link; a name that
  changes between its open and a second look is judged by the object that
  second look opened (O_PATH|O_NOFOLLOW), never by the name again, so renames
  racing a lookup never fail a legitimate path.

openat2 answers EAGAIN while a rename anywhere on the system races a `..`;
after a few retries the walk answers instead, never a refusal.

Both report an escape as EscapeError (errno EXDEV, as RESOLVE_BENEATH does);
the broker answers it with WASI's ENOTCAPABLE. Linux only; stdlib + ctypes.
"""

from __future__ import annotations

import collections
import ctypes
import errno
import os
import stat

from ..sandbox.kernel import libc as _libc
from ..sandbox.openat2 import available as openat2_available, openat2 as _openat2

__all__ = ["EscapeError", "Resolver", "openat2_available"]

_MAXSYMLINKS = 40  # the kernel's limit on symlinks followed in one lookup
_PATH_MAX = 4096
_EAGAIN_RETRIES = 16
_PROC_SUPER_MAGIC = 0x9FA0

# Flags open(2) knows; it silently drops the rest, openat2 rejects them.
_VALID_FLAGS = (
    os.O_ACCMODE | os.O_CREAT | os.O_EXCL | os.O_NOCTTY | os.O_TRUNC | os.O_APPEND
    | os.O_NONBLOCK | os.O_DSYNC | os.O_SYNC | os.O_ASYNC | os.O_DIRECT
    | os.O_LARGEFILE | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NOATIME
    | os.O_CLOEXEC | os.O_PATH | os.O_TMPFILE
)
# With O_PATH open(2) ignores every flag but these; openat2 rejects the others.
_O_PATH_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_O_TMPFILE_BIT = os.O_TMPFILE & ~os.O_DIRECTORY  # the kernel's __O_TMPFILE
# How the fallback steps into an intermediate directory.
_STEP_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# How it looks at a name whatever it is (a symlink itself, never followed).
_OBJECT_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
# How often the walk opens a final name again that changed between two looks.
_RACE_RETRIES = 16


class EscapeError(OSError):
    """A guest path would resolve outside its preopen (WASI: ENOTCAPABLE).

    errno is EXDEV, what openat2's RESOLVE_BENEATH reports. Callers must test
    isinstance(e, EscapeError), not e.errno == EXDEV: a cross-device rename
    is a genuine EXDEV.
    """

    def __init__(self, filename=None):
        super().__init__(errno.EXDEV, "path escapes its preopen", filename)

    def __reduce__(self):  # OSError's own would pass (errno, strerror) to __init__
        return (type(self), (self.filename,))


class Resolver:
    """Opens guest paths beneath a root directory fd; see the module docstring."""

    def __init__(self, *, use_openat2: bool | None = None):
        if use_openat2 is None:
            use_openat2 = openat2_available()
        elif use_openat2 and not openat2_available():
            raise OSError(errno.ENOSYS, "openat2 is not available on this kernel")
        self.use_openat2 = use_openat2

    def open(self, root_fd: int, path: bytes, flags: int, mode: int = 0o666,
             *, follow: bool = True) -> int:
        """Open `path` beneath `root_fd` like openat(2); return a new fd.

        O_CLOEXEC is always added (and O_NOCTTY, unless O_PATH). follow=False,
        or O_NOFOLLOW in flags, leaves a final symlink unfollowed, as
        O_NOFOLLOW does; a trailing slash still follows it, as in Linux.
        Raises EscapeError for an escape, OSError with the errno otherwise.
        """
        flags, mode, follow = _normalize(flags, mode, follow)
        _check_path(path)
        if self.use_openat2:
            return self._open_openat2(root_fd, path, flags, mode, follow)
        return _Walk(root_fd, path).open(flags, mode, follow)

    def parent(self, root_fd: int, path: bytes) -> tuple[int, bytes]:
        """Resolve all of `path` but its last name, for the *at() calls.

        Returns (a new O_PATH|O_DIRECTORY fd the caller closes, name). The
        name is never followed here; trailing slashes are stripped from it
        (callers that care check path.endswith(b"/")). A final "." or ".."
        is resolved too, since ".." may escape, and the name becomes b".".
        """
        _check_path(path)
        stripped = path.rstrip(b"/")  # never empty: all slashes is absolute
        head, _, name = stripped.rpartition(b"/")
        if name in (b".", b".."):
            head, name = stripped, b"."
        if not head:  # a name right under the root: the root is its parent, nothing to resolve
            return os.dup(root_fd), name  # (a dup, not an openat2 of "."; the caller closes it)
        fd = self.open(root_fd, head, os.O_PATH | os.O_DIRECTORY)
        return fd, name

    def lstat_name(self, root_fd: int, path: bytes) -> os.stat_result | None:
        """lstat of a plain name right under the root (no '/', not '.' or '..'): one
        syscall that resolves nothing and follows nothing, so it cannot leave the root;
        None for any other path, which the caller resolves with open()."""
        if not path or b"/" in path or path in (b".", b".."):
            return None
        _check_path(path)
        return os.stat(path, dir_fd=root_fd, follow_symlinks=False)

    def _open_openat2(self, root_fd, path, flags, mode, follow):
        if not follow:
            flags |= os.O_NOFOLLOW
        for _ in range(_EAGAIN_RETRIES):
            try:
                return _openat2(root_fd, path, flags, mode)
            except OSError as e:
                if e.errno == errno.EXDEV:
                    raise EscapeError(path) from None
                # EAGAIN: a rename raced a ".."; the kernel could not prove it
                # stayed beneath the root and asks us to try again.
                if e.errno != errno.EAGAIN:
                    raise
        # Still racing (or an O_NONBLOCK open hit a lease, which is a real
        # EAGAIN): the walk is immune to the first and reports the second.
        return _Walk(root_fd, path).open(flags & ~os.O_NOFOLLOW, mode, follow)


def _normalize(flags: int, mode: int, follow: bool) -> tuple[int, int, bool]:
    """Apply open(2)'s flag rules up front, so both implementations see the
    same flags and reject bad ones before any lookup, as the kernel does."""
    flags &= _VALID_FLAGS
    if flags & os.O_NOFOLLOW:
        follow = False
    flags &= ~os.O_NOFOLLOW  # each implementation adds it where it belongs
    if flags & os.O_PATH:
        flags &= _O_PATH_FLAGS
    else:
        flags |= os.O_NOCTTY  # a tty must never become the broker's terminal
    flags |= os.O_CLOEXEC
    if flags & os.O_CREAT and flags & os.O_DIRECTORY:  # Linux 6.4+: EINVAL
        raise OSError(errno.EINVAL, "O_CREAT with O_DIRECTORY")
    if flags & _O_TMPFILE_BIT and (
        not flags & os.O_DIRECTORY or flags & os.O_ACCMODE == os.O_RDONLY
    ):
        raise OSError(errno.EINVAL, "O_TMPFILE needs O_DIRECTORY and write access")
    creating = flags & (os.O_CREAT | _O_TMPFILE_BIT)
    # openat2 rejects a mode it would not use, and bits beyond 07777.
    return flags, (mode & 0o7777) if creating else 0, follow


def _check_path(path: bytes) -> None:
    if not isinstance(path, bytes):
        raise TypeError(f"path must be bytes, not {type(path).__name__}")
    if b"\0" in path:  # C would see a shorter path than the one we checked
        raise OSError(errno.EINVAL, "path contains a NUL byte", path)
    if not path:
        raise OSError(errno.ENOENT, os.strerror(errno.ENOENT), path)
    if len(path) >= _PATH_MAX:
        raise OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG), path)
    if path.startswith(b"/"):
        raise EscapeError(path)


def _split(path: bytes) -> tuple[collections.deque, bool]:
    """b"a//b/" -> (deque([b"a", b"b"]), True): the names, and whether a slash
    ends the path (which makes the last name a directory that is followed)."""
    return collections.deque(c for c in path.split(b"/") if c), path.endswith(b"/")


def _on_procfs(fd: int) -> bool:
    buf = ctypes.create_string_buffer(256)  # struct statfs; f_type comes first
    if _libc.fstatfs(fd, buf) != 0:
        return False
    return ctypes.c_long.from_buffer(buf).value == _PROC_SUPER_MAGIC


class _Walk:
    """The fallback: one lookup of `path` beneath `root_fd`, walked by hand."""

    def __init__(self, root_fd: int, path: bytes):
        self.root_fd = root_fd
        self.path = path
        self.stack: list[int] = []  # O_PATH fds below the root; root not owned
        self.links = 0
        self.todo, self.trailing = _split(path)

    @property
    def cur(self) -> int:
        return self.stack[-1] if self.stack else self.root_fd

    def open(self, flags: int, mode: int, follow: bool) -> int:
        try:
            return self._walk(flags, mode, follow)
        except EscapeError:
            raise
        except OSError as e:  # name the whole guest path, not one component
            raise OSError(e.errno, e.strerror, self.path) from None
        finally:
            for fd in self.stack:
                os.close(fd)

    def _walk(self, flags: int, mode: int, follow: bool) -> int:
        while self.todo:
            name = self.todo.popleft()
            if name == b".":
                continue
            if name == b"..":
                # The parent we came from, never openat(cur, ".."): at depth
                # 0 that would leave the root, and a moved directory would
                # take us wherever it now lives.
                if not self.stack:
                    raise EscapeError(self.path)
                os.close(self.stack.pop())
            elif self.todo or self.trailing:
                if not self.todo and flags & os.O_CREAT:
                    # open(2) refuses "name/" with O_CREAT before looking up.
                    raise OSError(errno.EISDIR, os.strerror(errno.EISDIR))
                self._step(name)
            else:
                fd = self._open_last(name, flags, mode, follow)
                if fd is not None:
                    return fd
        # The path ended in ".", ".." or a slash: open where we stand.
        return os.open(b".", flags, mode, dir_fd=self.cur)

    def _step(self, name: bytes) -> None:
        """Enter directory `name`, or splice it in if it is a symlink."""
        try:
            self.stack.append(os.open(name, _STEP_FLAGS, dir_fd=self.cur))
            return
        except OSError as e:
            # A symlink opened with O_DIRECTORY|O_NOFOLLOW gives ENOTDIR.
            if e.errno not in (errno.ENOTDIR, errno.ELOOP):
                raise
            err = e
        # A symlink, not a directory, or swapped since that open: decide from
        # the object itself, opened once, so a rename between two looks at the
        # name can never make a legitimate path fail.
        fd = os.open(name, _OBJECT_FLAGS, dir_fd=self.cur)
        try:
            kind = stat.S_IFMT(os.fstat(fd).st_mode)
            if kind == stat.S_IFDIR:  # a directory now: enter the one we hold
                self.stack.append(fd)
                fd = -1
                return
            if kind != stat.S_IFLNK:
                raise err
            target = os.readlink(b"", dir_fd=fd)
        finally:
            if fd >= 0:
                os.close(fd)
        self._splice(target)

    def _open_last(self, name, flags, mode, follow) -> int | None:
        """Open the final name; None if it was a symlink, now spliced in."""
        for _ in range(_RACE_RETRIES):
            try:
                fd = os.open(name, flags | os.O_NOFOLLOW, mode, dir_fd=self.cur)
            except OSError as e:
                # O_NOFOLLOW on a symlink: ELOOP, or ENOTDIR with O_DIRECTORY.
                # EEXIST (O_CREAT|O_EXCL) is final: O_EXCL never follows.
                if not follow or e.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                target = self._link_target(name, e)
                if target is None:
                    continue  # swapped between the open and the look: open again
                self._splice(target)
                return None
            # O_PATH|O_NOFOLLOW opens a symlink itself instead of failing.
            if follow and flags & os.O_PATH and stat.S_ISLNK(os.fstat(fd).st_mode):
                try:
                    target = os.readlink(b"", dir_fd=fd)
                finally:
                    os.close(fd)
                self._splice(target)
                return None
            return fd
        raise OSError(errno.EAGAIN, "the name kept changing while it was opened")

    def _link_target(self, name: bytes, err: OSError) -> bytes | None:
        """The target of symlink `name`, read from the object itself; None if
        `name` changed since `err` (ask again); `err` if it is what it says."""
        try:
            fd = os.open(name, _OBJECT_FLAGS, dir_fd=self.cur)
        except FileNotFoundError:
            return None  # gone since: the next open says what is there now
        try:
            mode = os.fstat(fd).st_mode
            if stat.S_ISLNK(mode):
                return os.readlink(b"", dir_fd=fd)
        finally:
            os.close(fd)
        if err.errno == errno.ENOTDIR and not stat.S_ISDIR(mode):
            raise err  # O_DIRECTORY on a file: the genuine answer
        return None

    def _splice(self, target: bytes) -> None:
        """Replace the symlink just met by its target in the names still to walk."""
        # The kernel's order: count, magic-link check, then absolute targets.
        self.links += 1
        if self.links > _MAXSYMLINKS:
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP))
        # RESOLVE_NO_MAGICLINKS: we cannot tell procfs's magic links from its
        # plain ones (/proc/self), so follow none; never reached unless a
        # preopen contains procfs.
        if _on_procfs(self.cur):
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP))
        if not target:
            raise OSError(errno.ENOENT, os.strerror(errno.ENOENT))
        if target.startswith(b"/"):
            raise EscapeError(self.path)
        names, trailing = _split(target)
        if not self.todo:  # the link was the last name: its slash now ends
            self.trailing = self.trailing or trailing
        self.todo.extendleft(reversed(names))
