"""Shared libraries found by soname, without `ldconfig -p`.

`ctypes.util.find_library` starts `/sbin/ldconfig -p` on every call (a
process, ~10-25 ms). Two imports on the cold-start path call it: trio's
thread cache (for `pthread_setname_np`, in the CLI) and pyseccomp (libc and
libseccomp, in the fork server, which must not start processes later either:
lockdown forbids it). Inside `sonames_first()` the known sonames are tried
first, by loading them; find_library remains the fallback for any other name
and for a soname this host lacks.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
from typing import Iterator

#: find_library's name -> the soname glibc hosts provide it under.
SONAMES = {"c": "libc.so.6", "pthread": "libpthread.so.0", "seccomp": "libseccomp.so.2"}


@contextlib.contextmanager
def sonames_first() -> Iterator[None]:
    """While active, find_library answers SONAMES' names by loading the soname (not thread-safe:
    for imports at start-up, before any thread runs)."""
    original = ctypes.util.find_library

    def find_library(name: str) -> str | None:
        soname = SONAMES.get(name)
        if soname is not None:
            try:
                ctypes.CDLL(soname)
                return soname
            except OSError:
                pass
        return original(name)

    ctypes.util.find_library = find_library
    try:
        yield
    finally:
        ctypes.util.find_library = original
