"""`wasijail doctor`: which sandbox layers this host can provide.

`probe_layers()` tries each layer for real (in a throw-away forked child where
trying changes the process) and says why a missing one is missing;
`format_report()` renders the result, one line per layer.  The names are the
policy's (`policy.SANDBOX_LAYERS`), so `[sandbox] require = [...]` and this
report speak the same language.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import platform
import select
import signal
import time
from typing import NamedTuple

__all__ = ["Layer", "LAYER_NAMES", "probe_layers", "format_report", "Limit", "probe_limits",
           "format_limits"]

LAYER_NAMES = ("seccomp", "landlock", "userns", "mountns", "netns", "openat2", "cgroup")


class Layer(NamedTuple):
    name: str
    available: bool
    detail: str


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_IS_X86_64 = platform.machine() == "x86_64"

# x86_64 syscall numbers
_SYS_SECCOMP = 317
_SYS_OPENAT2 = 437

PR_GET_SECCOMP = 21
SECCOMP_SET_MODE_FILTER = 1
SECCOMP_GET_ACTION_AVAIL = 2
SECCOMP_FILTER_FLAG_TSYNC = 1
_SECCOMP_ACTIONS = {
    "kill_process": 0x80000000,
    "trap": 0x00030000,
    "errno": 0x00050000,
    "allow": 0x7FFF0000,
}

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
MNT_DETACH = 2

RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_BENEATH = 0x08

_LANDLOCK_FEATURES = {
    1: "filesystem",
    2: "file reparenting",
    3: "truncate",
    4: "TCP bind/connect",
    5: "device ioctl",
    6: "scoping (abstract unix sockets, signals)",
    7: "audit logging",
}


def _errname(err: int) -> str:
    return errno.errorcode.get(err, str(err))


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


# -- seccomp -------------------------------------------------------------------


def _probe_seccomp() -> Layer:
    if not _IS_X86_64:
        return Layer("seccomp", False, f"probe only written for x86_64, not {platform.machine()}")
    mode = _libc.prctl(PR_GET_SECCOMP, 0, 0, 0, 0)
    if mode < 0:
        return Layer("seccomp", False,
                     f"prctl(PR_GET_SECCOMP): {_errname(ctypes.get_errno())} "
                     "(kernel built without CONFIG_SECCOMP)")
    missing = []
    for name, action in _SECCOMP_ACTIONS.items():
        value = ctypes.c_uint32(action)
        if _libc.syscall(ctypes.c_long(_SYS_SECCOMP), ctypes.c_uint(SECCOMP_GET_ACTION_AVAIL),
                         ctypes.c_uint(0), ctypes.byref(value)) != 0:
            err = ctypes.get_errno()
            if err == errno.ENOSYS:
                return Layer("seccomp", False, "no seccomp(2) syscall (kernel < 3.17)")
            missing.append(name)
    if missing:
        return Layer("seccomp", False, f"filter actions unavailable: {', '.join(missing)}")
    # A NULL program with a known flag fails with EFAULT; an unknown flag
    # with EINVAL.  Nothing is installed either way.
    rc = _libc.syscall(ctypes.c_long(_SYS_SECCOMP), ctypes.c_uint(SECCOMP_SET_MODE_FILTER),
                       ctypes.c_uint(SECCOMP_FILTER_FLAG_TSYNC), None)
    tsync = rc != 0 and ctypes.get_errno() == errno.EFAULT
    if not tsync:
        return Layer("seccomp", False, "SECCOMP_FILTER_FLAG_TSYNC unsupported")
    try:
        import pyseccomp
    except (ImportError, RuntimeError) as exc:
        return Layer("seccomp", False,
                     f"kernel has filter mode and TSYNC, but pyseccomp/libseccomp "
                     f"is unusable: {exc}")
    detail = f"filter mode, TSYNC, kill_process/trap/errno; {_libseccomp_version(pyseccomp)}"
    if mode == 2:
        detail += "; this process is already filtered (filters stack)"
    return Layer("seccomp", True, detail)


def _libseccomp_version(pyseccomp) -> str:
    class _Version(ctypes.Structure):
        _fields_ = [("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("micro", ctypes.c_uint)]

    lib = getattr(pyseccomp, "_libseccomp", None)
    try:
        fn = lib.seccomp_version
        fn.restype = ctypes.POINTER(_Version)
        fn.argtypes = ()
        v = fn().contents
        return f"libseccomp {v.major}.{v.minor}.{v.micro}"
    except (AttributeError, ValueError):
        return "libseccomp (version unknown)"


# -- landlock ----------------------------------------------------------------------


def _probe_landlock() -> Layer:
    from .child.sandbox import landlock_abi  # the very probe lockdown uses

    abi, why = landlock_abi()
    if abi < 1:
        return Layer("landlock", False, why)
    features = [f for v, f in _LANDLOCK_FEATURES.items() if v <= abi]
    return Layer("landlock", True, f"ABI {abi}: {', '.join(features)}")


# -- namespaces (probed in a forked child) -----------------------------------------


def _userns_hints() -> str:
    hints = []
    for path in ("/proc/sys/kernel/unprivileged_userns_clone",
                 "/proc/sys/user/max_user_namespaces",
                 "/proc/sys/kernel/apparmor_restrict_unprivileged_userns"):
        value = _read(path)
        if value is not None:
            hints.append(f"{os.path.basename(path)}={value}")
    return f" [{', '.join(hints)}]" if hints else ""


def _namespace_child(write_fd: int) -> None:
    """Runs in the forked child: try what lockdown does, report as JSON."""
    out: dict[str, list] = {}
    uid, gid = os.getuid(), os.getgid()
    if _libc.unshare(CLONE_NEWUSER) != 0:
        out["userns"] = [False, f"unshare(CLONE_NEWUSER): {_errname(ctypes.get_errno())}"]
    else:
        try:
            for path, text in (("/proc/self/setgroups", "deny"),
                               ("/proc/self/uid_map", f"0 {uid} 1\n"),
                               ("/proc/self/gid_map", f"0 {gid} 1\n")):
                fd = os.open(path, os.O_WRONLY)
                try:
                    os.write(fd, text.encode())
                finally:
                    os.close(fd)
            who = "as root; unprivileged users may differ" if uid == 0 else "unprivileged"
            out["userns"] = [True, f"user namespaces ({who}; uid {uid} mapped to 0)"]
        except OSError as exc:
            out["userns"] = [False, f"user namespace created but the uid/gid map was refused: {exc}"]
    if not out["userns"][0]:
        why = "needs a user namespace (lockdown creates them together)"
        out["mountns"] = [False, why]
        out["netns"] = [False, why]
    else:
        out["mountns"] = _try_mount_namespace()
        if _libc.unshare(CLONE_NEWNET) != 0:
            out["netns"] = [False, f"unshare(CLONE_NEWNET): {_errname(ctypes.get_errno())}"]
        else:
            out["netns"] = [True, "network namespace (no interfaces but a down loopback)"]
    os.write(write_fd, json.dumps(out).encode())


def _try_mount_namespace() -> list:
    if _libc.unshare(CLONE_NEWNS) != 0:
        return [False, f"unshare(CLONE_NEWNS): {_errname(ctypes.get_errno())}"]
    where = next((d for d in ("/tmp", "/mnt", "/dev") if os.path.isdir(d)), "/tmp")
    steps = [
        ("make / private", lambda: _libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None)),
        ("mount tmpfs", lambda: _libc.mount(b"wasijail", where.encode(), b"tmpfs", 0, b"size=4k")),
        ("chdir", lambda: os.chdir(where) or 0),
        ("pivot_root", lambda: _libc.syscall(ctypes.c_long(155), b".", b".")),
        ("detach old root", lambda: _libc.umount2(b".", MNT_DETACH)),
    ]
    for what, step in steps:
        try:
            if step() != 0:
                return [False, f"mount namespace created, but {what} failed: "
                               f"{_errname(ctypes.get_errno())}"]
        except OSError as exc:
            return [False, f"mount namespace created, but {what} failed: {exc}"]
    return [True, "mount namespace; tmpfs mount and pivot into an empty root work"]


def _probe_namespaces(timeout: float = 5.0) -> dict[str, Layer]:
    if not _IS_X86_64:
        why = f"probe only written for x86_64, not {platform.machine()}"
        return {n: Layer(n, False, why) for n in ("userns", "mountns", "netns")}
    read_fd, write_fd = os.pipe()
    try:
        pid = os.fork()
    except OSError as exc:
        os.close(read_fd)
        os.close(write_fd)
        why = f"could not fork a probe child: {exc}"
        return {n: Layer(n, False, why) for n in ("userns", "mountns", "netns")}
    if pid == 0:  # child: no return from here
        try:
            os.close(read_fd)
            _namespace_child(write_fd)
        finally:
            os._exit(0)
    os.close(write_fd)
    data = b""
    deadline = time.monotonic() + timeout
    # poll, not select: a supervisor past 1024 descriptors (its raised limit) may probe too.
    poller = select.poll()
    poller.register(read_fd, select.POLLIN)
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not poller.poll(left * 1000):
                os.kill(pid, signal.SIGKILL)
                break
            chunk = os.read(read_fd, 65536)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(read_fd)
        os.waitpid(pid, 0)
    try:
        found = json.loads(data)
    except ValueError:
        found = {}
    hints = _userns_hints()
    layers = {}
    for name in ("userns", "mountns", "netns"):
        ok, detail = found.get(name, [False, "the probe child died or hung"])
        if name == "userns" and (not ok or os.getuid() == 0):
            detail += hints
        layers[name] = Layer(name, bool(ok), str(detail))
    return layers


def unprivileged_userns(uid: int) -> tuple[bool, str]:
    """Whether a process running as host `uid` can create a user namespace here (probed in a child)."""
    try:
        pid = os.fork()
    except OSError as exc:
        return False, f"could not fork a probe child: {exc}"
    if pid == 0:  # child: no return from here
        status = 1
        try:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            status = 0 if _libc.unshare(CLONE_NEWUSER) == 0 else 2
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code == 0:
        return True, f"host uid {uid} may create user namespaces"
    return False, (f"host uid {uid} may not create user namespaces{_userns_hints()}" if code == 2
                   else f"could not become host uid {uid}")


# -- openat2 ---------------------------------------------------------------------------


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


def _probe_openat2() -> Layer:
    if not _IS_X86_64:
        return Layer("openat2", False, f"probe only written for x86_64, not {platform.machine()}")
    base = os.open(os.path.dirname(os.path.abspath(__file__)),
                   os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        how = _OpenHow(os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, 0,
                       RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)

        def openat2(path: bytes) -> tuple[int, int]:
            fd = _libc.syscall(ctypes.c_long(_SYS_OPENAT2), ctypes.c_int(base), path,
                               ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how)))
            return int(fd), ctypes.get_errno()

        fd, err = openat2(b".")
        if fd < 0:
            if err == errno.ENOSYS:
                return Layer("openat2", False, "no openat2(2) (kernel < 5.6): the broker "
                                               "falls back to its O_NOFOLLOW walk")
            return Layer("openat2", False, f"openat2(RESOLVE_BENEATH): {_errname(err)}")
        os.close(fd)
        fd, err = openat2(b"..")
        if fd >= 0:
            os.close(fd)
            return Layer("openat2", False, "openat2 exists but RESOLVE_BENEATH let '..' out")
        if err != errno.EXDEV:
            return Layer("openat2", False, f"openat2(RESOLVE_BENEATH, '..'): {_errname(err)}, expected EXDEV")
        return Layer("openat2", True, "RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS ('..' refused with EXDEV)")
    finally:
        os.close(base)


# -- cgroup v2 -----------------------------------------------------------------------------


def _probe_cgroup() -> Layer:
    from .cgroup import cgroup2_mount

    mount = cgroup2_mount()
    if mount is None:
        return Layer("cgroup", False, "no cgroup v2 hierarchy mounted (cgroup v1 only); "
                                      "memory is capped by the Store's limits alone")
    own = None
    for line in (_read("/proc/self/cgroup") or "").splitlines():
        if line.startswith("0::"):
            own = line[3:]
    if own is None:
        return Layer("cgroup", False, f"cgroup2 mounted at {mount} but this process is in no v2 cgroup")
    directory = os.path.normpath(mount + "/" + own)
    layout = "unified" if mount == "/sys/fs/cgroup" else f"hybrid, v2 at {mount}"
    controllers = (_read(os.path.join(directory, "cgroup.controllers")) or "").split()
    where = f"cgroup {own} ({layout})"
    if "memory" not in controllers:
        v1 = " (memory is on the v1 hierarchy)" if os.path.isdir("/sys/fs/cgroup/memory") else ""
        return Layer("cgroup", False,
                     f"{where}: memory controller not available in v2{v1}; "
                     f"controllers: {' '.join(controllers) or 'none'}")
    if not os.access(directory, os.W_OK):
        return Layer("cgroup", False, f"{where}: memory controller present but the cgroup "
                                      "is not writable (no delegation)")
    subtree = (_read(os.path.join(directory, "cgroup.subtree_control")) or "").split()
    if "memory" not in subtree and not os.access(
            os.path.join(directory, "cgroup.subtree_control"), os.W_OK):
        return Layer("cgroup", False, f"{where}: memory not enabled for child cgroups and "
                                      "cgroup.subtree_control is not writable")
    return Layer("cgroup", True, f"{where}: memory controller, writable for child cgroups")


# -- all together ----------------------------------------------------------------------------


def probe_layers() -> list[Layer]:
    """Every layer in LAYER_NAMES order, each with why it is (not) there."""
    namespaces = _probe_namespaces()
    return [
        _probe_seccomp(),
        _probe_landlock(),
        namespaces["userns"],
        namespaces["mountns"],
        namespaces["netns"],
        _probe_openat2(),
        _probe_cgroup(),
    ]


def format_report(layers: list[Layer]) -> str:
    """One line per layer: 'seccomp      available  (filter mode, TSYNC, ...)'."""
    return "\n".join(
        f"{layer.name:<12} {'available' if layer.available else 'missing':<9}  ({layer.detail})"
        for layer in layers
    )


# -- limits: what enforces each, on this host ------------------------------------------------


class Limit(NamedTuple):
    name: str
    layer: str  # what enforces it
    detail: str


def _probe_threads() -> Limit:
    """Which mechanism caps a child's threads here (the supervisor makes the same choice)."""
    from .cgroup import child_threads, own_cgroup_dir, own_v1_dir

    cap = child_threads()
    v2 = own_cgroup_dir()
    if v2 is not None and "pids" in (_read(os.path.join(v2, "cgroup.controllers")) or "").split() \
            and os.access(v2, os.W_OK):
        return Limit("threads", "pids cgroup", f"pids.max={cap} per child, cgroup v2 under {v2}")
    v1 = own_v1_dir("pids")
    if v1 is not None and os.access(v1, os.W_OK):
        return Limit("threads", "pids cgroup", f"pids.max={cap} per child, cgroup v1 pids hierarchy under {v1}")
    from .cgroup import UNPRIVILEGED_UID

    where = ("set inside its user namespace, where the kernel counts this child's tasks alone;"
             " needs the userns layer")
    if os.getuid() != 0:
        return Limit("threads", "RLIMIT_NPROC", f"{cap} per child, {where}")
    works, why = unprivileged_userns(UNPRIVILEGED_UID)
    if works:
        return Limit("threads", "RLIMIT_NPROC", f"{cap} per child, {where}; the supervisor runs as root,"
                     f" so each child runs as host uid {UNPRIVILEGED_UID} (root is exempt from RLIMIT_NPROC)")
    return Limit("threads", "none", f"no writable pids cgroup, RLIMIT_NPROC does not bind host uid 0, and {why}")


def probe_limits() -> list[Limit]:
    """Each resource limit and the layer that enforces it on this host."""
    import resource

    from .broker.readdir import MAX_CHECKPOINTS
    from .cgroup import PROCESS_OVERHEAD
    from .child.wasi import MAX_IOVS
    from .descriptors import RESERVED, RUN_DESCRIPTORS

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    cgroup = _probe_cgroup()
    memory_extra = (f"; process memory: cgroup memory.max = memory + {PROCESS_OVERHEAD >> 20} MiB"
                    if cgroup.available else "; process memory beyond linear memory: not capped (no memory cgroup)")
    return [
        Limit("memory", "Store limits", "total linear memory: one memory per store (multi-memory off)"
              + memory_extra),
        Limit("table_elements", "Store limits", "per table"),
        Limit("open_files", "broker + child",
              "the broker holds at most open_files directory handles per child (a compromised child"
              " included); the child's WASI table answers EMFILE"),
        Limit("descriptors", "supervisor",
              f"soft RLIMIT_NOFILE raised to the hard limit ({hard}); each run is admitted"
              f" only when {RUN_DESCRIPTORS} + its handles fit ({RESERVED} kept back)"),
        _probe_threads(),
        Limit("file_size", "RLIMIT_FSIZE", "per file, by the kernel: EFBIG"),
        Limit("disk", "child (WASI)",
              "bytes written to files: EDQUOT past it; native code out of wasmtime is held only by"
              " file_size per writable file"),
        Limit("files", "broker", "entries created (open with O_CREAT, mkdir, symlink, link): EDQUOT past it"),
        Limit("readdir memory", "broker", "listings streamed by cookie: one reply plus at most"
              f" {MAX_CHECKPOINTS} positions per handle, never a whole listing"),
        Limit("host calls", "child (WASI)", "poll_oneoff, random_get and path lengths handled a piece"
              f" at a time; at most {MAX_IOVS} iovecs a call (EINVAL past it)"),
        Limit("cpu_time", "RLIMIT_CPU + watchdog", "SIGXCPU; fractions of a second by a watchdog thread"),
        Limit("fuel", "Store (wasmtime)", "wasm instructions, counted by the engine"),
        Limit("timeout", "supervisor", "kills the child, even in a blocking host call"),
        Limit("output", "supervisor", "per captured stream"),
        Limit("module_size", "supervisor", "checked before the module is read"),
        Limit("compile_timeout", "supervisor", "kills the child still compiling"),
    ]


def format_limits(limits: list[Limit]) -> str:
    """One line per limit: 'threads      pids cgroup  (pids.max=36 per child, ...)'."""
    return "\n".join(f"{limit.name:<15} {limit.layer:<22} ({limit.detail})" for limit in limits)


if __name__ == "__main__":
    print(format_report(probe_layers()))
    print()
    print(format_limits(probe_limits()))
