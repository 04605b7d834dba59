"""The one WASI path rule (wasi/paths.py), as the child and the broker apply it."""

from __future__ import annotations

import pytest

from wasijail.wasi import PATH_MAX, Errno, path_errno


@pytest.mark.parametrize("path,expected", [
    (b"", None),  # resolving it is ENOENT, not this rule's business
    (b"dir/file.txt", None),
    ("dé/ü".encode(), None),
    (b"a" * PATH_MAX, None),
    (b"a\0b", Errno.INVAL),
    (b"\xff", Errno.ILSEQ),
    (b"\xff\0", Errno.ILSEQ),  # EILSEQ before EINVAL, as wasmtime
    (b"a" * (PATH_MAX + 1), Errno.NAMETOOLONG),
    (b"\0" + b"a" * PATH_MAX, Errno.INVAL),  # too long, but the NUL is said first
    (b"a" * (1 << 17) + b"\xff", Errno.ILSEQ),  # found in a later piece
    (b"a" * ((1 << 16) - 1) + "é".encode() + b"a" * (1 << 16), Errno.NAMETOOLONG),  # a character across pieces
])
def test_path_errno(path, expected):
    assert path_errno(path) == expected
    assert path_errno(memoryview(path)) == expected  # the child checks a long path in guest memory
