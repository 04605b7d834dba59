"""The guest's WASI descriptor table, owned by the child.

An entry is either local (a host fd: stdio or a file the broker donated; data
calls run here) or remote (a directory the broker holds; the child knows only
its handle and asks the broker for every path operation under it).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..wasi import Errno, Filetype, WasiErrno


@dataclass(slots=True)
class Descriptor:
    filetype: Filetype
    rights_base: int
    rights_inheriting: int
    fdflags: int = 0
    host_fd: int = -1  # local: the host fd
    handle: int = -1  # remote: the broker's handle for this directory
    preopen: bytes | None = None  # the name fd_prestat_dir_name reports
    readonly: bool = False  # opened under a read-only preopen
    stdio: bool = False  # one of the three streams the guest started with
    dropped: int = 0  # rights given up with fd_fdstat_set_rights: always ENOTCAPABLE

    @property
    def is_remote(self) -> bool:
        return self.handle >= 0


class FdTable:
    """Descriptor numbers are given out exactly as wasmtime's preview1 does.

    Real programs depend on the numbers they get (a tool that moves stdout
    aside with fd_renumber(1, fd) and then opens files expects to know which
    number each open returns). wasmtime keeps every number ever freed (by
    fd_close, or as the source of fd_renumber) and hands out the highest of
    them first; only when none is free does it take one past the highest in
    use. tests/test_differential.py checks this against wasmtime-py.
    """

    __slots__ = ("entries", "free", "limit")

    def __init__(self, limit: int | None) -> None:
        self.entries: dict[int, Descriptor] = {}
        self.free: set[int] = set()  # numbers freed and not yet reused
        self.limit = limit  # the most WASI fds open at once (None: unlimited)

    def get(self, fd: int, rights: int = 0) -> Descriptor:
        entry = self.entries.get(fd)
        if entry is None:
            raise WasiErrno(Errno.BADF)
        if rights and (entry.rights_base & rights) != rights:
            raise WasiErrno(Errno.NOTCAPABLE)
        return entry

    def add(self, entry: Descriptor) -> int:
        self.check_room()
        if self.free:
            fd = max(self.free)
            self.free.remove(fd)
        else:
            fd = max(self.entries) + 1 if self.entries else 0
        self.entries[fd] = entry
        return fd

    def check_room(self) -> None:
        if self.limit is not None and len(self.entries) >= self.limit:
            raise WasiErrno(Errno.MFILE)

    def pop(self, fd: int) -> Descriptor:
        entry = self.entries.pop(fd, None)
        if entry is None:
            raise WasiErrno(Errno.BADF)
        self.free.add(fd)
        return entry

    def renumber(self, fd: int, to: int) -> Descriptor | None:
        """Move `fd` onto `to`; the descriptor `to` held before, for the caller to close
        (None when fd == to: nothing moves)."""
        source, target = self.get(fd), self.get(to)
        if fd == to:
            return None
        self.entries[to] = self.pop(fd)
        return target
