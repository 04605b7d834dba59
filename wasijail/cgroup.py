"""Per-child memory caps with cgroup v2, where the host delegates a cgroup with the memory controller.

The Store's limits cap a module's linear memory and tables; the child's
process also holds Python, wasmtime and the module's machine code. Where the
host allows, the supervisor creates `wasijail-<pid>/` under its own cgroup and
one leaf per child with `memory.max` = the policy's `memory` plus
PROCESS_OVERHEAD, and the child joins its leaf (through a `cgroup.procs` fd it
is handed) before lockdown. A child the kernel kills for passing its cap is
reported as a `memory` limit. Where the host does not allow it,
`wasijail doctor` says why and runs rely on the Store's limits.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

# What a child needs beyond linear memory: the interpreter, wasmtime, compiled code.
PROCESS_OVERHEAD = 256 << 20


def own_cgroup_dir() -> Path | None:
    """This process's cgroup v2 directory, if it is in one."""
    from .doctor import _cgroup2_mount

    mount = _cgroup2_mount()
    if mount is None:
        return None
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("0::"):
            return Path(os.path.normpath(mount + "/" + line[3:]))
    return None


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


class Leaf:
    """One child's cgroup: hand `procs_fd` to the child, ask afterwards whether it ran out."""

    def __init__(self, path: Path, memory_max: int) -> None:
        self.path = path
        self.memory_max = memory_max
        self.procs_fd = os.open(path / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC)

    def oom_killed(self) -> bool:
        for line in _read(self.path / "memory.events").splitlines():
            name, _, count = line.partition(" ")
            if name == "oom_kill" and count.strip().isdigit() and int(count) > 0:
                return True
        return False

    def close_fd(self) -> None:
        if self.procs_fd >= 0:
            os.close(self.procs_fd)
            self.procs_fd = -1

    def remove(self) -> None:
        self.close_fd()
        try:
            os.rmdir(self.path)
        except OSError:
            pass  # still busy (a process lingers): the pool's close tries again


class CgroupPool:
    """The supervisor's own subtree, one leaf per running child."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.path = base / f"wasijail-{os.getpid()}"
        self._numbers = itertools.count(1)

    @classmethod
    def open(cls, base: Path | None = None) -> "CgroupPool | None":
        """A pool under `base` (default: this process's cgroup), or None where the host cannot."""
        base = base if base is not None else own_cgroup_dir()
        if base is None or "memory" not in _read(base / "cgroup.controllers").split():
            return None
        pool = cls(base)
        try:
            if "memory" not in _read(base / "cgroup.subtree_control").split():
                (base / "cgroup.subtree_control").write_text("+memory")
            pool._mkdir(pool.path)
            (pool.path / "cgroup.subtree_control").write_text("+memory")
        except OSError:
            pool.close()
            return None
        return pool

    def _mkdir(self, path: Path) -> None:
        os.mkdir(path)  # the kernel fills it with control files

    def leaf(self, memory_max: int) -> Leaf:
        path = self.path / f"child-{next(self._numbers)}"
        self._mkdir(path)
        try:
            (path / "memory.max").write_text(str(memory_max))
            if (path / "memory.swap.max").exists():
                (path / "memory.swap.max").write_text("0")  # no escaping the cap into swap
            return Leaf(path, memory_max)
        except OSError:
            try:
                os.rmdir(path)
            except OSError:
                pass
            raise

    def close(self) -> None:
        if not self.path.exists():
            return
        for leaf in self.path.iterdir():
            if leaf.is_dir():
                try:
                    os.rmdir(leaf)
                except OSError:
                    pass
        try:
            os.rmdir(self.path)
        except OSError:
            pass
