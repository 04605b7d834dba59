"""Files the supervisor writes on a job's behalf, created without following links.

A job with a writable preopen can plant symlinks wherever that preopen
reaches; another process can plant them in an output folder. Every file
wasijail writes for a job (the results file, `--output-dir` outputs, the
checker's copies, compiled-module cache entries) therefore goes through
here: a new file is made under a fresh name with O_CREAT|O_EXCL|O_NOFOLLOW
beneath a directory fd and renamed over its final name (rename replaces a
planted link itself, never what it points to), and an existing file is
opened with O_NOFOLLOW and must be a regular file.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
#: Flags for a file that must be new: never an existing entry, never through a link.
NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def open_dir(path: str | os.PathLike, *, dir_fd: int | None = None, create: bool = False) -> int:
    """An fd for the directory `path` (made first, mode 0700, when `create`)."""
    if create:
        try:
            os.mkdir(path, 0o700, dir_fd=dir_fd)
        except FileExistsError:
            pass
    return os.open(path, _DIR_FLAGS | (os.O_NOFOLLOW if dir_fd is not None else 0), dir_fd=dir_fd)


def write_beneath(dir_fd: int, name: str, data: bytes, mode: int = 0o644) -> None:
    """Make `name` in the directory `dir_fd` hold exactly `data`, replacing whatever entry was there.

    Written under a fresh name and renamed into place: a symlink (or
    hard link) planted at `name` is replaced, and its target never touched;
    readers see the old file or the whole new one.
    """
    if "/" in name or name in ("", ".", ".."):
        raise ValueError(f"not a file name: {name!r}")
    tmp = f".{name}.{secrets.token_hex(6)}.tmp"
    fd = os.open(tmp, NEW_FILE, mode, dir_fd=dir_fd)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        try:
            os.unlink(tmp, dir_fd=dir_fd)
        except OSError:
            pass
        raise


def open_regular(path: str | os.PathLike, flags: int, mode: int = 0o644, *, dir_fd: int | None = None) -> int:
    """open(2) with O_NOFOLLOW on the last name, refusing anything but a regular file.

    O_NONBLOCK during the open keeps a planted FIFO from blocking us; it is
    cleared again before the fd is returned.
    """
    fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, mode, dir_fd=dir_fd)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", os.fspath(path))
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_regular(path: str | os.PathLike, *, dir_fd: int | None = None, limit: int | None = None) -> bytes:
    """The bytes of a regular file (at most `limit`), never through a link at its last name."""
    fd = open_regular(path, os.O_RDONLY, dir_fd=dir_fd)
    with os.fdopen(fd, "rb") as f:
        return f.read() if limit is None else f.read(limit)
