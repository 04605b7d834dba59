"""What a symlink target may say in the policy's "confined" mode.

Resolution through the runtime never leaves a preopen, whatever a link says;
host tools that follow links later do not have that guard. So, by default,
every link the guest makes must stay inside its preopen for anyone who
follows it: its target is relative and climbs (`..`) at most as many levels
as its directory lies below the preopen's root.

Only leading `..` are accepted (`../../a/b`, `./..`): a `..` after a name
(`a/../x`) means what the path says only if `a` is a real directory, and a
host tool following it through a symlink `a` would climb from wherever `a`
leads. With leading `..` alone, each step of a host tool's walk stays inside
when every link inside does, so links chained through links stay inside too.

A link's climb depends on where it lies, so moving one is checked as making
it: renaming or hard-linking a symlink, and renaming a directory to a
shallower place (every link beneath it climbs from a shallower place then).
"""

from __future__ import annotations

import os
import stat

__all__ = ["ascent", "depth_below", "fits", "identity", "is_symlink", "subtree_fits", "NotBeneath",
           "TooLarge", "SCAN_LIMIT"]

# Depth below a preopen is counted by walking `..`: no real path is deeper.
_MAX_DEPTH = 4096 // 2
# A directory moved to a shallower place is scanned for links that would then
# climb out; past this many entries the move is refused (EXDEV: `mv` copies
# instead, and every copied link is checked as it is made).
SCAN_LIMIT = 10_000
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class NotBeneath(Exception):
    """The directory no longer lies beneath its preopen (moved out by the host)."""


class TooLarge(Exception):
    """A subtree with more than SCAN_LIMIT entries."""


def ascent(target: bytes) -> int | None:
    """How many levels `target` climbs from the link's directory: its leading
    `..` (`.` and empty names skipped); None when a `..` follows a name."""
    climbs, named = 0, False
    for name in target.split(b"/"):
        if name in (b"", b"."):
            continue
        if name == b"..":
            if named:
                return None
            climbs += 1
        else:
            named = True
    return climbs


def identity(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


def depth_below(dirfd: int, root: tuple[int, int]) -> int:
    """How many levels directory `dirfd` lies below the directory whose
    (st_dev, st_ino) is `root`, walking `..` as the kernel sees it now."""
    fd, depth = dirfd, 0
    try:
        while depth <= _MAX_DEPTH:
            here = identity(fd)
            if here == root:
                return depth
            parent = os.open("..", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)
            if fd != dirfd:
                os.close(fd)
            fd = parent
            if identity(fd) == here:  # the file system's root: never met the preopen
                break
            depth += 1
    finally:
        if fd != dirfd:
            os.close(fd)
    raise NotBeneath()


def fits(target: bytes, depth: int) -> bool:
    """Whether a link saying `target`, in a directory `depth` below its preopen, stays inside."""
    if target.startswith(b"/"):
        return False
    climbs = ascent(target)
    return climbs is not None and climbs <= depth


def subtree_fits(parent_fd: int, name: str | bytes, depth: int) -> bool:
    """Whether every symlink beneath directory `name` (in `parent_fd`) fits
    once that directory lies `depth` levels below its preopen."""
    seen = 0
    top = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    todo = [(top, depth)]
    try:
        while todo:
            fd, level = todo.pop()
            try:
                with os.scandir(fd) as entries:
                    for entry in entries:
                        seen += 1
                        if seen > SCAN_LIMIT:
                            raise TooLarge()
                        if entry.is_symlink():
                            if not fits(os.fsencode(os.readlink(entry.name, dir_fd=fd)), level):
                                return False
                        elif entry.is_dir(follow_symlinks=False):
                            todo.append((os.open(entry.name, _DIR_FLAGS, dir_fd=fd), level + 1))
            finally:
                os.close(fd)
    finally:
        for fd, _ in todo:
            os.close(fd)
    return True


def is_symlink(dirfd: int, name: str | bytes) -> bool:
    return stat.S_ISLNK(os.stat(name, dir_fd=dirfd, follow_symlinks=False).st_mode)
