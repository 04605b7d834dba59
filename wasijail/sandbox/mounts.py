"""The mount namespace: the child pivots into an empty, read-only tmpfs root.

The lockdown enters the namespace together with the others (lockdown.py)
and calls `apply()`; the old root is detached, so no host path is left to
open even before Landlock and seccomp. The one file the root may hold is a
compiled artifact from the supervisor's cache, bind-mounted read-only at
ARTIFACT_PATH for wasmtime to map. `probe()` pivots the same way in a
throw-away child.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat

from . import Layer, probing, userns
from .kernel import (
    CLONE_NEWNS, MNT_DETACH, MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_PRIVATE, MS_RDONLY, MS_REC,
    MS_REMOUNT, SYS_PIVOT_ROOT, check, errname, libc,
)

__all__ = ["apply", "probe", "ARTIFACT_PATH"]

# Where a compiled artifact from the supervisor's cache appears in the empty root
# (LockdownConfig.artifact_fd), for wasmtime to map it (Module.deserialize_file).
ARTIFACT_PATH = "/artifact"

# Directories an empty tmpfs may be mounted on before pivoting into it; the
# choice does not matter (the old tree is detached right after).
_PIVOT_CANDIDATES = ("/tmp", "/mnt", "/var/tmp", "/dev", "/proc", "/sys")


def apply(artifact_fd: int | None = None) -> tuple[str, str]:
    """Pivot into an empty read-only root, holding the artifact open at `artifact_fd` if given.

    Returns (where the tmpfs was mounted first, "; artifact mounted ..." or why
    not, "" without one).
    """
    check(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "make / private")
    where = next((d for d in _PIVOT_CANDIDATES if os.path.isdir(d)), None)
    if where is None:
        raise OSError(errno.ENOENT, "no directory to mount the empty root on")
    artifact, found = "", -1
    if artifact_fd is not None:
        try:  # before the empty root hides its folder (the cache may live under `where`)
            found = _find_artifact(artifact_fd)
        except OSError as exc:  # the child copies it from its descriptor instead
            artifact = f"; artifact not mounted ({exc.strerror})"
    try:
        check(libc.mount(b"wasijail", where.encode(), b"tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                         b"size=4k,nr_inodes=3,mode=0555"),
              f"mount tmpfs on {where}")
        if found >= 0:
            try:
                _mount_artifact(found, where + ARTIFACT_PATH)
                artifact = f"; artifact mounted read-only at {ARTIFACT_PATH}"
            except OSError as exc:
                artifact = f"; artifact not mounted ({exc.strerror})"
    finally:
        if found >= 0:
            os.close(found)
    os.chdir(where)
    # pivot_root(".", "."): the old root ends up stacked on the new one and
    # is detached right away (pivot_root(2), "NOTES").
    check(libc.syscall(ctypes.c_long(SYS_PIVOT_ROOT), b".", b"."), "pivot_root")
    check(libc.umount2(b".", MNT_DETACH), "detach the old root")
    os.chdir("/")
    check(libc.mount(None, b"/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                     None),
          "remount the new root read-only")
    return where, artifact


def _find_artifact(fd: int) -> int:
    """An O_PATH descriptor of the file open at `fd`, in this mount namespace.

    The descriptor's mount belongs to the namespace it was opened in, which a bind
    may not take from: the same file is found again by its path in this namespace's
    copy of the tree, and must be the same inode (a file put in its place is not)."""
    same = os.open(os.readlink(f"/proc/self/fd/{fd}"), os.O_PATH | os.O_CLOEXEC | os.O_NOFOLLOW)
    given, found = os.fstat(fd), os.fstat(same)
    if (given.st_dev, given.st_ino) != (found.st_dev, found.st_ino) or not stat.S_ISREG(found.st_mode):
        os.close(same)
        raise OSError(errno.ESTALE, "its path names another file now")
    return same


def _mount_artifact(found: int, target: str) -> None:
    """Bind the file `found` (_find_artifact) onto `target` (made in the new root): read-only,
    no devices or set-id. Not noexec: wasmtime maps the compiled code in it executable (as it
    maps any code; the child may map anonymous memory executable all the same)."""
    os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o400))
    check(libc.mount(f"/proc/self/fd/{found}".encode(), target.encode(), None, MS_BIND, None),
          "bind the artifact")
    check(libc.mount(None, target.encode(), None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV,
                     None),
          "remount the artifact read-only")


def _try() -> tuple[bool, str]:
    if not userns.try_enter()[0]:
        return False, userns.NEEDS_USERNS
    if libc.unshare(CLONE_NEWNS) != 0:
        return False, f"unshare(CLONE_NEWNS): {errname(ctypes.get_errno())}"
    try:
        apply()
    except OSError as exc:
        return False, f"mount namespace created, but {exc.strerror}"
    return True, "mount namespace; tmpfs mount and pivot into an empty root work"


def probe() -> Layer:
    return Layer("mountns", *probing.in_child(_try))
