"""Per-child cgroups, where the host delegates them: a memory cap and a thread cap.

The Store's limits cap a module's linear memory and tables; the child's
process also holds Python, wasmtime and the module's machine code. Where the
host allows, the supervisor creates `wasijail-<pid>/` under its own cgroup and
one leaf per child, and the child joins its leaf (through the fds it is
handed: `cgroup.procs`, or `tasks` on v1, see Leaf) before lockdown:

* cgroup v2 with the memory controller: `memory.max` = the policy's `memory`
  plus PROCESS_OVERHEAD plus the compiler's share (COMPILE_OVERHEAD_PER_BYTE
  times the module's size); a child the kernel kills for passing it is
  reported as a `memory` limit.
* the pids controller, on cgroup v2 or, on a hybrid host, on the v1 `pids`
  hierarchy: `pids.max` = CHILD_THREADS, so a child (even one whose native
  code escaped wasmtime) cannot start more threads than that.

Where the host does not allow it, `probe()` (`wasijail doctor`) says why;
memory then rests on the Store's limits and threads on RLIMIT_NPROC inside
the child's user namespace (rlimits.py).
"""

from __future__ import annotations

import itertools
import os
import re
from pathlib import Path

from . import Layer, userns

# What a child needs beyond linear memory: the interpreter, wasmtime, compiled code.
PROCESS_OVERHEAD = 256 << 20
# The host uid a child runs as when the supervisor is root and no pids cgroup
# caps its threads: RLIMIT_NPROC binds any uid but 0 ("nobody").
UNPRIVILEGED_UID = 65534

# The compiler's peak memory per byte of wasm, with room to spare: Cranelift peaked at 19x
# the module's size for yosys (69 MB -> 1.3 GiB), 30x for GCC's cc1 (24 MB -> 0.7 GiB) and
# 12x for CPython (26 MB -> 0.3 GiB) on wasijail's engine settings. The cap stays this
# high for the run: linear memory is capped by the Store either way.
COMPILE_OVERHEAD_PER_BYTE = 40


def memory_cap(memory: int, module_size: int) -> int:
    """memory.max for a child whose linear memory may reach `memory`, running a module of
    `module_size` bytes (compiled in the child, or loaded from the cache)."""
    return memory + PROCESS_OVERHEAD + COMPILE_OVERHEAD_PER_BYTE * module_size


def child_threads() -> int:
    """The most threads (tasks) one child may have: wasmtime compiles on one
    thread per core, plus the interpreter's own and room to spare."""
    return 32 + 2 * (os.cpu_count() or 1)


def cgroup2_mount() -> str | None:
    """Where the cgroup v2 hierarchy is mounted, if it is."""
    return _mountpoint(lambda fields: fields[:1] == ["cgroup2"])


def own_cgroup_dir() -> Path | None:
    """This process's cgroup v2 directory, if it is in one."""
    mount = cgroup2_mount()
    if mount is None:
        return None
    return _own_dir(mount, _is_v2)


def own_v1_dir(controller: str) -> Path | None:
    """This process's cgroup in the v1 hierarchy of `controller`, if one is mounted."""
    mount = _v1_mount(controller)
    if mount is None:
        return None
    return _own_dir(mount, lambda controllers: controller in controllers.split(","))


def _is_v2(controllers: str) -> bool:
    return controllers == ""  # the v2 line of /proc/self/cgroup is "0::/path"


def _own_path(matches) -> str | None:
    """This process's cgroup path in the hierarchy whose /proc/self/cgroup line `matches`."""
    for line in _read(Path("/proc/self/cgroup")).splitlines():
        _, controllers, path = line.split(":", 2)
        if matches(controllers):
            return path
    return None


def _own_dir(mount: str, matches) -> Path | None:
    path = _own_path(matches)
    return None if path is None else Path(os.path.normpath(mount + "/" + path))


def _v1_mount(controller: str) -> str | None:
    return _mountpoint(lambda fields: len(fields) >= 3 and fields[0] == "cgroup"
                       and controller in fields[2].split(","))


def _mountpoint(matches) -> str | None:
    """The mount point of the first mount whose fields after " - " (type, source, options) match."""
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                if matches(right.split()):
                    return left.split(" ")[4].replace("\\040", " ")
    except OSError:
        pass
    return None


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


class Leaf:
    """One child's cgroup in one hierarchy: hand `procs_fd` to the child, ask afterwards whether it ran out.

    On v1 the child joins through `tasks`, not `cgroup.procs`: the kernel moves a
    whole thread group under a global lock whose write side waits for an RCU grace
    period (7-25 ms measured here, on the path to every child's first instruction),
    while a thread that moves itself ("0" to `tasks`) takes no such lock (0.04 ms).
    The writer is a fresh fork, so that one thread is the whole process, and every
    thread it starts later (wasmtime's) is born in the leaf. v2 refuses thread moves
    between domain cgroups, so there `cgroup.procs` it is.
    """

    def __init__(self, path: Path, memory_max: int | None, pool: "CgroupPool | None" = None) -> None:
        self.path = path
        self.memory_max = memory_max  # None: this leaf caps no memory
        join = "tasks" if pool is not None and pool.v1 else "cgroup.procs"
        self.procs_fd = os.open(path / join, os.O_WRONLY | os.O_CLOEXEC)
        self._pool = pool  # where remove() returns a leaf the next child may use

    def oom_killed(self) -> bool:
        if self.memory_max is None:
            return False
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
        """Done with (its child reaped): back to the pool for the next child when it holds
        only a thread cap and no process, else removed."""
        self.close_fd()
        if self._pool is not None and self.memory_max is None and _read(self.path / "cgroup.procs") == "":
            self._pool.spare.append(self.path)
            return
        try:
            os.rmdir(self.path)
        except OSError:
            pass  # still busy (a process lingers): the pool's close tries again


class CgroupPool:
    """The supervisor's own subtree in one hierarchy, one leaf per running child.

    `controllers` are those this pool sets on its leaves ("memory", "pids").
    """

    def __init__(self, base: Path, controllers: frozenset[str] = frozenset({"memory"}),
                 v1: bool = False) -> None:
        self.base = base
        self.controllers = controllers
        self.v1 = v1
        self.path = base / f"wasijail-{os.getpid()}"
        self._numbers = itertools.count(1)
        # Empty leaves with the thread cap alone, left by children that have ended. Making and
        # removing a cgroup costs ~1.5 ms on the event loop (rmdir waits for the kernel to take
        # it offline); a leaf that caps no memory has no state to reset but its pids.max.
        self.spare: list[Path] = []

    @property
    def has_memory(self) -> bool:
        return "memory" in self.controllers

    @property
    def has_pids(self) -> bool:
        return "pids" in self.controllers

    @classmethod
    def open(cls, base: Path | None = None) -> "CgroupPool | None":
        """A cgroup v2 pool under `base` (default: this process's cgroup) with the memory
        and pids controllers it offers, or None where the host offers neither."""
        base = base if base is not None else own_cgroup_dir()
        if base is None:
            return None
        wanted = frozenset(_read(base / "cgroup.controllers").split()) & {"memory", "pids"}
        if not wanted:
            return None
        pool = cls(base, wanted)
        enable = " ".join(f"+{name}" for name in sorted(wanted))
        try:
            if not wanted <= set(_read(base / "cgroup.subtree_control").split()):
                (base / "cgroup.subtree_control").write_text(enable)
            pool._mkdir(pool.path)
            (pool.path / "cgroup.subtree_control").write_text(enable)
        except OSError:
            pool.close()
            return None
        return pool

    @classmethod
    def open_v1_pids(cls, base: Path | None = None) -> "CgroupPool | None":
        """A pool in the v1 `pids` hierarchy (hybrid hosts), or None where there is none to write."""
        base = base if base is not None else own_v1_dir("pids")
        if base is None:
            return None
        pool = cls(base, frozenset({"pids"}), v1=True)
        try:
            pool._mkdir(pool.path)
        except OSError:
            return None
        return pool

    def _mkdir(self, path: Path) -> None:
        if path == self.path:
            _sweep_stale(self.base)
        os.mkdir(path)  # the kernel fills it with control files

    def leaf(self, memory_max: int | None, pids_max: int | None) -> Leaf:
        if memory_max is None or not self.has_memory:
            while self.spare:
                path = self.spare.pop()
                try:
                    if pids_max is not None and self.has_pids:
                        (path / "pids.max").write_text(str(pids_max))
                    return Leaf(path, None, self)
                except OSError:  # gone (a sweep, an administrator): make another
                    pass
        path = self.path / f"child-{next(self._numbers)}"
        self._mkdir(path)
        try:
            if memory_max is not None and self.has_memory:
                (path / "memory.max").write_text(str(memory_max))
                if (path / "memory.swap.max").exists():
                    (path / "memory.swap.max").write_text("0")  # no escaping the cap into swap
            else:
                memory_max = None
            if pids_max is not None and self.has_pids:
                (path / "pids.max").write_text(str(pids_max))
            return Leaf(path, memory_max, self)
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


_POOL_NAME = re.compile(r"wasijail-([0-9]+)")


def _sweep_stale(base: Path) -> None:
    """Remove the subtrees of supervisors that died without closing theirs (killed, say)."""
    try:
        names = os.listdir(base)
    except OSError:
        return
    for name in names:
        match = _POOL_NAME.fullmatch(name)
        if match is None or _alive(int(match.group(1))):
            continue
        stale = base / name
        try:
            for leaf in os.scandir(stale):
                if leaf.is_dir(follow_symlinks=False):
                    os.rmdir(leaf.path)
            os.rmdir(stale)
        except OSError:
            pass  # still busy, or not ours to remove: leave it


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def thread_cap_uid(pool: CgroupPool | None, v1_pids: CgroupPool | None) -> int:
    """The host uid children should run as for RLIMIT_NPROC to cap their threads, or -1 (keep).

    Only where the supervisor is root, no pids cgroup caps threads, and that
    uid may still create the user namespace lockdown builds (else the child
    would lose a layer to gain this one).
    """
    if os.geteuid() != 0 or (pool is not None and pool.has_pids) or v1_pids is not None:
        return -1
    works, _ = userns.can_create(UNPRIVILEGED_UID)
    return UNPRIVILEGED_UID if works else -1


def thread_cgroups(pool: CgroupPool | None) -> CgroupPool | None:
    """Where threads are capped: `pool` when it has pids, else the v1 pids hierarchy, if any."""
    if pool is not None and pool.has_pids:
        return None  # the v2 pool caps threads in the same leaf
    return CgroupPool.open_v1_pids()


def probe() -> Layer:
    """Whether this process may give each child a memory cap: cgroup v2 with a writable memory controller."""
    mount = cgroup2_mount()
    if mount is None:
        return Layer("cgroup", False, "no cgroup v2 hierarchy mounted (cgroup v1 only); "
                                      "memory is capped by the Store's limits alone")
    own = _own_path(_is_v2)
    if own is None:
        return Layer("cgroup", False, f"cgroup2 mounted at {mount} but this process is in no v2 cgroup")
    directory = Path(os.path.normpath(mount + "/" + own))
    layout = "unified" if mount == "/sys/fs/cgroup" else f"hybrid, v2 at {mount}"
    controllers = _read(directory / "cgroup.controllers").split()
    where = f"cgroup {own} ({layout})"
    if "memory" not in controllers:
        v1 = " (memory is on the v1 hierarchy)" if os.path.isdir("/sys/fs/cgroup/memory") else ""
        return Layer("cgroup", False,
                     f"{where}: memory controller not available in v2{v1}; "
                     f"controllers: {' '.join(controllers) or 'none'}")
    if not os.access(directory, os.W_OK):
        return Layer("cgroup", False, f"{where}: memory controller present but the cgroup "
                                      "is not writable (no delegation)")
    subtree = directory / "cgroup.subtree_control"
    if "memory" not in _read(subtree).split() and not os.access(subtree, os.W_OK):
        return Layer("cgroup", False, f"{where}: memory not enabled for child cgroups and "
                                      "cgroup.subtree_control is not writable")
    return Layer("cgroup", True, f"{where}: memory controller, writable for child cgroups")
