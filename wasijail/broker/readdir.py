"""fd_readdir streamed from the kernel by cookie, never a whole listing in memory.

WASI cookies are entry indexes (`.` is 0, `..` is 1, the directory's own
entries follow in the kernel's order), and a program may resume from any
cookie it was given. Caching a full listing per handle would let a child make
the supervisor hold every name of every directory it opens (2000 long names
through 200 handles was 150 MiB). Instead each handle keeps a `DirCursor`: the
kernel's position (getdents64's `d_off`, which `lseek` accepts back) of the
entries of its last reply, plus sparse checkpoints. Resuming where the last
reply ended, or anywhere in it, costs what the reply returns; another cookie
is reached from the nearest checkpoint (every CHECKPOINT_EVERY-th entry; when
MAX_CHECKPOINTS are held, every other one is dropped and the spacing doubles),
and a cookie past the end, once the end is known, costs nothing. A cursor
holds at most MAX_CHECKPOINTS + the entries of one reply, whatever the
directory's size. Cookie 0 starts afresh (as rewinddir does).
"""

from __future__ import annotations

import ctypes
import os
import struct

from ..sandbox.kernel import SYS_GETDENTS64, libc
from ..wasi import DIRENT, Filetype, filetype_of_mode

# Every CHECKPOINT_EVERY-th entry's position is kept, up to MAX_CHECKPOINTS of
# them: a cookie anywhere in the first CHECKPOINT_EVERY * MAX_CHECKPOINTS
# entries is reached by reading at most CHECKPOINT_EVERY entries first.
CHECKPOINT_EVERY = 256
MAX_CHECKPOINTS = 1024
_GETDENTS_BUFFER = 32 * 1024
_DIRENT64 = struct.Struct("<QqHB")  # d_ino, d_off, d_reclen, d_type; d_name follows
_DOTS = (b".", b"..")


# One buffer for every broker: each reads it to the end before it returns.
_BUFFER = ctypes.create_string_buffer(_GETDENTS_BUFFER)
# The kernel's record for the longest name (NAME_MAX) and its header: any smaller buffer may fit none.
_SMALLEST_READ = 512


def _getdents(fd: int, size: int) -> memoryview:
    n = libc.syscall(ctypes.c_long(SYS_GETDENTS64), ctypes.c_int(fd), _BUFFER, ctypes.c_size_t(size))
    if n < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return memoryview(_BUFFER)[:n]


def _entries(fd: int, start: int, wanted_bytes: int):
    """(position of the entry, name, inode, d_type) from kernel position `start` on, `.` and `..` left
    out; the kernel is asked for about `wanted_bytes` at a time (a reply needs no more)."""
    os.lseek(fd, start, os.SEEK_SET)
    size = max(_SMALLEST_READ, min(_GETDENTS_BUFFER, wanted_bytes + _SMALLEST_READ))
    position = start
    while True:
        data = bytes(_getdents(fd, size))
        if not data:
            return
        offset = 0
        while offset < len(data):
            ino, next_position, reclen, d_type = _DIRENT64.unpack_from(data, offset)
            raw = bytes(data[offset + _DIRENT64.size:offset + reclen])
            name = raw[:raw.index(b"\0")]
            if name not in _DOTS:
                yield position, name, ino, d_type
            position = next_position
            offset += reclen


class DirCursor:
    """Where one handle's entries sit in the kernel's stream (see the module docstring)."""

    __slots__ = ("_recent", "_checkpoints", "_every", "_end")

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._recent: dict[int, int] = {}  # entry index (from 0, dots excluded) -> kernel position
        self._checkpoints: dict[int, int] = {0: 0}
        self._every = CHECKPOINT_EVERY
        self._end: int | None = None  # the number of entries, once a read reached the end

    def _checkpoint(self, index: int, position: int) -> None:
        if index % self._every or index in self._checkpoints:
            return
        self._checkpoints[index] = position
        if len(self._checkpoints) > MAX_CHECKPOINTS:
            self._every *= 2
            self._checkpoints = {i: p for i, p in self._checkpoints.items() if i % self._every == 0}

    def _start(self, index: int) -> tuple[int, int]:
        """The known entry at or before `index`: (its index, its kernel position)."""
        if index in self._recent:
            return index, self._recent[index]
        best = max(i for i in self._checkpoints if i <= index)
        recent = [i for i in self._recent if best < i <= index]
        if recent:
            best = max(recent)
            return best, self._recent[best]
        return best, self._checkpoints[best]

    def read(self, dirfd: int, cookie: int, max_bytes: int, dots: tuple[int, int]) -> bytes:
        """Dirents from `cookie` on, up to `max_bytes` (the last one may be cut, as WASI allows).

        `dots` are the inode numbers of `.` and `..`.
        """
        if cookie == 0:
            self._reset()  # a fresh look at the directory
        out = bytearray()
        index = cookie
        while index < 2 and len(out) < max_bytes:
            name = _DOTS[index]
            out += DIRENT.pack(index + 1, dots[index], len(name), Filetype.DIRECTORY) + name
            index += 1
        if len(out) >= max_bytes:
            return bytes(out[:max_bytes])
        wanted = index - 2
        if self._end is not None and wanted >= self._end:
            return bytes(out)
        at, position = self._start(wanted)
        recent: dict[int, int] = {}
        # Skipping to `wanted` reads whole buffers; the reply itself about max_bytes.
        for position, name, ino, d_type in _entries(dirfd, position, max_bytes if at == wanted else _GETDENTS_BUFFER):
            self._checkpoint(at, position)
            if at >= wanted:
                if len(out) >= max_bytes:
                    recent[at] = position  # where the next reply starts
                    break
                recent[at] = position
                out += DIRENT.pack(at + 3, ino, len(name), _filetype(dirfd, name, d_type)) + name
            at += 1
        else:
            self._end = at
        self._recent = recent
        return bytes(out[:max_bytes])


def _filetype(dirfd: int, name: bytes, d_type: int) -> int:
    if d_type:  # DT_* is the S_IFMT nibble: DTTOIF
        return filetype_of_mode(d_type << 12)
    try:  # DT_UNKNOWN: this file system does not say, ask it
        return filetype_of_mode(os.stat(name, dir_fd=dirfd, follow_symlinks=False).st_mode)
    except OSError:
        return Filetype.UNKNOWN
