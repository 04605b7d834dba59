"""The one rule for a WASI path argument, applied by the child to what the guest
passes and by the broker to what a child sends.

A path is UTF-8 (WASI's `string`), holds no NUL byte (the host would see a
shorter path than the one checked) and is at most PATH_MAX bytes. The errnos
and their order are wasmtime's: EILSEQ, then EINVAL for a NUL, then
ENAMETOOLONG. An empty path is not refused here: resolving it is ENOENT.
"""

from __future__ import annotations

import codecs

from .constants import PATH_MAX, Errno

# A path longer than PATH_MAX is checked this many bytes at a time, never copied whole:
# a guest-sized path must not cost the host a guest-sized copy.
_PIECE = 1 << 16


def path_errno(path: bytes | memoryview) -> Errno | None:
    """Why `path` is no valid WASI path (EILSEQ, EINVAL, ENAMETOOLONG), or None."""
    if len(path) <= PATH_MAX:
        raw = bytes(path)
        if not raw.isascii():  # ASCII is UTF-8 (and checking it makes no str)
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                return Errno.ILSEQ
        return Errno.INVAL if b"\0" in raw else None
    decoder = codecs.getincrementaldecoder("utf-8")()
    nul = False
    for at in range(0, len(path), _PIECE):
        piece = bytes(path[at:at + _PIECE])
        try:
            decoder.decode(piece, final=at + _PIECE >= len(path))
        except UnicodeDecodeError:
            return Errno.ILSEQ
        nul = nul or b"\0" in piece
    return Errno.INVAL if nul else Errno.NAMETOOLONG
