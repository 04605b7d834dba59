"""The child's lockdown: one linear function, layers in the order they happen.

    close fds -> single-thread check -> rlimits -> runtime preparation
    -> namespaces + empty read-only root (+ the cached artifact, read-only) -> drop capabilities
    -> no_new_privs -> Landlock -> violation reporter -> seccomp

Call `lockdown()` in a freshly forked, single-threaded child, before any
wasmtime Module is compiled (the first compile starts worker threads, and
unshare() and Landlock only act on a single-threaded process; creating an
Engine first is harmless but pointless) and before any untrusted byte is
parsed.  Everything the child will need afterwards must already be
imported: an import after lockdown fails (PermissionError from getcwd) or
dies by SIGSYS ("sandbox violation: openat"), as does anything else that
opens a file.  The "runtime" step settles the known incidental file reads
of glibc, Rust and CPython beforehand (see `_prepare_runtime`).

A layer the host cannot provide is reported in the `LockdownReport` with
the reason, never silently skipped; `LockdownConfig.required` turns a
missing layer into a `LockdownError`.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import linecache
import math
import os
import platform
import resource
import signal
import stat
import struct
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field

from ..sonames import sonames_first


# Imported here, at module import time, on purpose: lockdown forbids starting processes
# (find_library's `ldconfig -p`) and opening files.
with sonames_first():
    import pyseccomp

from . import seccomp_policy as policy

__all__ = [
    "LockdownConfig",
    "LockdownError",
    "LayerStatus",
    "LockdownReport",
    "lockdown",
    "describe_violation",
    "parse_violations",
    "syscall_name",
    "build_filter",
    "landlock_abi",
    "VIOLATION_EXIT_STATUS",
    "LAYERS",
]

# 128 + SIGSYS: what the supervisor reports for a seccomp violation.
VIOLATION_EXIT_STATUS = 128 + signal.SIGSYS

# Layer names, in lockdown order (the keys of LockdownReport).
LAYERS = (
    "fds", "rlimits", "runtime", "namespaces", "capabilities",
    "no_new_privs", "landlock", "seccomp",
)
# Policy layer names (policy.SANDBOX_LAYERS, `wasijail doctor`) that the
# lockdown's "namespaces" layer provides.
NAMESPACE_ALIASES = frozenset({"userns", "mountns", "netns"})
# Policy layers provided by the parent, not the child: accepted in
# `required` and left to the supervisor / broker to check.
PARENT_SIDE_LAYERS = frozenset({"openat2", "cgroup"})

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
                        ctypes.c_ulong, ctypes.c_char_p)
_libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)
_libc.unshare.argtypes = (ctypes.c_int,)
_libc.prctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong,
                        ctypes.c_ulong, ctypes.c_ulong)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int,
                       ctypes.c_int, ctypes.c_int, ctypes.c_long)
_libc.mprotect.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
_libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)

_IS_X86_64 = platform.machine() == "x86_64"

# x86_64 syscall numbers used directly
_SYS_PIVOT_ROOT = 155
_SYS_CAPSET = 126
_SYS_LANDLOCK_CREATE_RULESET = 444
_SYS_LANDLOCK_ADD_RULE = 445
_SYS_LANDLOCK_RESTRICT_SELF = 446

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
MNT_DETACH = 0x2

PR_SET_DUMPABLE = 4
PR_SET_NO_NEW_PRIVS = 38
# mallopt parameters (glibc malloc.h) and glibc's HEAP_MAX_SIZE on 64-bit
_M_TRIM_THRESHOLD = -1
_M_ARENA_MAX = -8
_ARENA_HEAP_MAX = 64 * 1024 * 1024
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4

# Landlock (include/uapi/linux/landlock.h)
LANDLOCK_CREATE_RULESET_VERSION = 1
# filesystem rights by the ABI version that introduced them
_LANDLOCK_FS_BY_ABI = {
    1: (1 << 13) - 1,   # EXECUTE .. MAKE_SYM
    2: 1 << 13,         # REFER
    3: 1 << 14,         # TRUNCATE
    5: 1 << 15,         # IOCTL_DEV
}
_LANDLOCK_ACCESS_FS_READ_FILE = 1 << 2
_LANDLOCK_RULE_PATH_BENEATH = 1
_LANDLOCK_NET_BIND_TCP = 1 << 0
_LANDLOCK_NET_CONNECT_TCP = 1 << 1
_LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0
_LANDLOCK_SCOPE_SIGNAL = 1 << 1

# Where a compiled artifact from the supervisor's cache appears in the empty root
# (LockdownConfig.artifact_fd), for wasmtime to map it (Module.deserialize_file).
ARTIFACT_PATH = "/artifact"

# Directories an empty tmpfs may be mounted on before pivoting into it; the
# choice does not matter (the old tree is detached right after).
_PIVOT_CANDIDATES = ("/tmp", "/mnt", "/var/tmp", "/dev", "/proc", "/sys")


class LockdownError(RuntimeError):
    """lockdown() was called wrongly, or a required layer is missing."""

    def __init__(self, message: str, report: "LockdownReport | None" = None):
        super().__init__(message)
        self.report = report


@dataclass(frozen=True)
class LockdownConfig:
    """What to keep and how hard to clamp.

    keep_fds: every fd that survives (broker socket, 0/1/2 if wanted,
        donated files); all others are closed.  `violation_fd` is kept
        implicitly.
    file_size: RLIMIT_FSIZE in bytes (None: leave as is).  CPython ignores
        SIGXFSZ, so an oversized write fails with EFBIG.
    open_files: RLIMIT_NOFILE (None: leave).
    cpu_time: RLIMIT_CPU in seconds, rounded up; SIGXCPU at the soft
        limit, SIGKILL one second later (None: leave).
    threads: RLIMIT_NPROC, set inside the new user namespace, where the
        kernel counts this child's tasks alone (None: leave).  It binds
        only if the host uid is not 0: the kernel exempts root's tasks.
    namespaces / landlock / seccomp: switch a layer off (reported as such).
    artifact_fd: a compiled artifact from the supervisor's cache (its
        sealed, read-only file), bind-mounted read-only at ARTIFACT_PATH
        in the empty root; Landlock then grants reading that one file, the
        seccomp filter allows the one open wasmtime's deserialize_file
        makes (openat O_RDONLY|O_CLOEXEC, see seccomp_policy.ARTIFACT_OPEN),
        and the fd is closed.  Without the namespaces layer nothing is
        mounted and nothing allowed (`LockdownReport.artifact_path` "").
    violation_fd: a pipe/socket the parent reads; a forbidden syscall
        writes b"violation:<nr>\\n" to it before the process dies by
        SIGSYS.  None: forbidden syscalls kill without naming.
    required: layer names that must be applied, else LockdownError after
        all steps ran: names from LAYERS, or the policy's names ("userns",
        "mountns", "netns" mean "namespaces"; "openat2" and "cgroup" are
        parent-side and not checked here).
    """

    keep_fds: tuple[int, ...]
    file_size: int | None
    open_files: int | None
    cpu_time: float | None
    threads: int | None = None
    namespaces: bool = True
    landlock: bool = True
    seccomp: bool = True
    violation_fd: int | None = None
    required: frozenset[str] = field(default_factory=frozenset)
    artifact_fd: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "keep_fds", tuple(int(fd) for fd in self.keep_fds))
        object.__setattr__(self, "required", frozenset(self.required))
        if any(fd < 0 for fd in self.keep_fds):
            raise ValueError(f"keep_fds must be >= 0: {self.keep_fds}")
        for name in ("file_size", "open_files", "threads"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 0):
                raise ValueError(f"{name} must be a non-negative int or None")
        if self.cpu_time is not None and not self.cpu_time > 0:
            raise ValueError("cpu_time must be > 0 or None")
        if self.violation_fd is not None and self.violation_fd < 0:
            raise ValueError("violation_fd must be >= 0 or None")
        if self.artifact_fd is not None and self.artifact_fd < 0:
            raise ValueError("artifact_fd must be >= 0 or None")
        unknown = self.required - set(LAYERS) - NAMESPACE_ALIASES - PARENT_SIDE_LAYERS
        if unknown:
            raise ValueError(f"unknown layers in required: {sorted(unknown)}")


@dataclass(frozen=True)
class LayerStatus:
    name: str
    applied: bool
    detail: str


@dataclass(frozen=True)
class LockdownReport:
    layers: tuple[LayerStatus, ...]
    seconds: float
    artifact_path: str = ""  # where the artifact was mounted (ARTIFACT_PATH), "" if it was not

    @property
    def applied(self) -> tuple[str, ...]:
        return tuple(l.name for l in self.layers if l.applied)

    @property
    def not_applied(self) -> dict[str, str]:
        """Layer name -> why it was not applied."""
        return {l.name: l.detail for l in self.layers if not l.applied}

    def layer(self, name: str) -> LayerStatus:
        for l in self.layers:
            if l.name == name:
                return l
        raise KeyError(name)

    def to_dict(self) -> dict:
        return {
            "seconds": self.seconds,
            "artifact_path": self.artifact_path,
            "layers": [
                {"name": l.name, "applied": l.applied, "detail": l.detail}
                for l in self.layers
            ],
        }

    @classmethod
    def from_dict(cls, data: dict) -> "LockdownReport":
        return cls(
            layers=tuple(
                LayerStatus(str(l["name"]), bool(l["applied"]), str(l["detail"]))
                for l in data["layers"]
            ),
            seconds=float(data["seconds"]),
            artifact_path=str(data.get("artifact_path", "")),
        )

    def summary(self) -> str:
        return "\n".join(
            f"{l.name:<13} {'applied' if l.applied else 'NOT APPLIED':<12} {l.detail}"
            for l in self.layers
        )


# ---------------------------------------------------------------------------
# The lockdown, top to bottom.
# ---------------------------------------------------------------------------


def lockdown(config: LockdownConfig) -> LockdownReport:
    """Lock the calling process down for good.  See the module docstring."""
    started = time.perf_counter()
    keep = set(config.keep_fds)
    if config.violation_fd is not None:
        keep.add(config.violation_fd)
    if config.artifact_fd is not None:
        keep.add(config.artifact_fd)

    layers = [_close_fds(keep)]
    _require_single_thread(config)
    layers.append(_set_rlimits(config))
    layers.append(_prepare_runtime())
    namespaces, artifact = _enter_namespaces(config)
    layers.append(namespaces)
    if config.artifact_fd is not None:
        os.close(config.artifact_fd)  # the mount holds the file now
    layers.append(_drop_capabilities())
    layers.append(_set_no_new_privs())
    layers.append(_restrict_landlock(config, artifact))
    reporter = _install_violation_reporter(config)
    layers.append(_load_seccomp(config, reporter, artifact))

    report = LockdownReport(tuple(layers), time.perf_counter() - started,
                            ARTIFACT_PATH if artifact else "")
    required = {("namespaces" if name in NAMESPACE_ALIASES else name)
                for name in config.required - PARENT_SIDE_LAYERS}
    missing = sorted(required - set(report.applied))
    if missing:
        reasons = "; ".join(f"{n}: {report.not_applied[n]}" for n in missing)
        raise LockdownError(f"required sandbox layers missing: {reasons}", report)
    return report


# -- (a) file descriptors ----------------------------------------------------


def _close_fds(keep: set[int]) -> LayerStatus:
    """Close every fd not in `keep` (close_range(2) between the kept ones)."""
    low = 0
    for fd in sorted(keep):
        if fd > low:
            os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 0x7FFFFFFF)
    return LayerStatus("fds", True, f"kept {sorted(keep)}")


def _require_single_thread(config: LockdownConfig) -> None:
    """unshare(CLONE_NEWUSER) and Landlock act on one thread only."""
    try:
        threads = len(os.listdir("/proc/self/task"))
    except OSError:
        return  # no /proc: cannot tell; unshare() would fail loudly anyway
    if threads > 1 and (config.namespaces or config.landlock):
        raise LockdownError(
            f"lockdown() needs a single-threaded process, found {threads} "
            "threads (was a wasmtime Engine created before lockdown?)"
        )


# -- (b) resource limits -----------------------------------------------------


def _set_rlimits(config: LockdownConfig) -> LayerStatus:
    done: list[str] = []
    notes: list[str] = []

    def clamp(res: int, label: str, soft: int, hard: int) -> None:
        _, cur_hard = resource.getrlimit(res)
        if cur_hard != resource.RLIM_INFINITY and hard > cur_hard:
            notes.append(f"{label} clamped to the existing hard limit {cur_hard}")
            hard = cur_hard
            soft = min(soft, hard)
        resource.setrlimit(res, (soft, hard))
        done.append(f"{label}={soft}" if soft == hard else f"{label}={soft}/{hard}")

    try:
        clamp(resource.RLIMIT_CORE, "core", 0, 0)
        if config.file_size is not None:
            clamp(resource.RLIMIT_FSIZE, "fsize", config.file_size, config.file_size)
        if config.open_files is not None:
            clamp(resource.RLIMIT_NOFILE, "nofile", config.open_files, config.open_files)
        if config.cpu_time is not None:
            seconds = max(1, math.ceil(config.cpu_time))
            clamp(resource.RLIMIT_CPU, "cpu", seconds, seconds + 1)
    except (OSError, ValueError) as exc:
        return LayerStatus("rlimits", False, f"setrlimit failed after {done}: {exc}")
    return LayerStatus("rlimits", True, ", ".join(done + notes))


# -- runtime preparation: things that would otherwise open files later -------


def _prepare_runtime() -> LayerStatus:
    """Settle now what glibc, Rust and CPython would otherwise read from files
    later (an open() after lockdown kills the child):

    * Rust's std::thread::available_parallelism (rayon sizing wasmtime's
      compile pool) opens /proc/self/cgroup and cgroup files unless
      RAYON_NUM_THREADS is set;
    * glibc localtime() re-reads /etc/localtime on every call unless TZ is
      set and tzset() already ran with that value;
    * glibc malloc reads /proc/sys/vm/overcommit_memory the first time a
      thread's (non-main) arena heap shrinks -- at a random moment, once
      wasmtime's compile threads free memory -- and /sys/devices/system/
      cpu/online when a ninth arena is created.  M_TRIM_THRESHOLD at the
      64 MiB size of an arena heap makes that shrink unreachable (freed
      memory stays with the process for reuse), and an explicit
      M_ARENA_MAX (glibc's own default, 8 per CPU) skips the CPU count.
      (M_ARENA_MAX=1 would also do, but halves compile speed.)
    * os.cpu_count() (ThreadPoolExecutor's default size) asks glibc, which
      reads /sys/devices/system/cpu/online: it returns the affinity count
      taken now;
    * CPython prints source lines in tracebacks by opening the .py files
      (the C printer behind the default sys.excepthook, and linecache's
      lazy loaders behind the traceback module): linecache answers from
      what it already cached, and the default hooks are replaced by
      equivalents built on the traceback module.
    """
    notes = []
    cpus = max(1, len(os.sched_getaffinity(0)))
    if not os.environ.get("RAYON_NUM_THREADS"):
        os.environ["RAYON_NUM_THREADS"] = str(cpus)
        notes.append(f"RAYON_NUM_THREADS={os.environ['RAYON_NUM_THREADS']}")
    if not os.environ.get("TZ"):
        os.environ["TZ"] = "UTC"
        notes.append("TZ=UTC")
    time.tzset()
    os.cpu_count = lambda: cpus  # glibc's sysconf reads /sys/devices/system/cpu/online
    notes.append(f"os.cpu_count()={cpus}")
    arenas = 8 * cpus
    if (_libc.mallopt(_M_TRIM_THRESHOLD, _ARENA_HEAP_MAX) == 1
            and _libc.mallopt(_M_ARENA_MAX, arenas) == 1):
        notes.append(f"malloc trim_threshold=64MiB arena_max={arenas}")
    else:
        notes.append("mallopt failed: glibc malloc may read /proc or /sys "
                     "later and die on openat")
    linecache.updatecache = _updatecache_without_files
    linecache.lazycache = _no_lazycache
    linecache.checkcache = _no_checkcache
    notes.append("linecache without file reads")
    if sys.excepthook is sys.__excepthook__:
        sys.excepthook = _excepthook
        notes.append("sys.excepthook")
    if threading.excepthook is threading.__excepthook__:
        threading.excepthook = _thread_excepthook
        notes.append("threading.excepthook")
    if sys.unraisablehook is sys.__unraisablehook__:
        sys.unraisablehook = _unraisablehook
        notes.append("sys.unraisablehook")
    return LayerStatus("runtime", True, ", ".join(notes))


def _updatecache_without_files(filename, module_globals=None):
    return []


def _no_lazycache(filename, module_globals):
    return False


def _no_checkcache(filename=None):
    return None


def _print_stderr(text: str) -> None:
    stream = sys.stderr
    try:
        if stream is not None:
            stream.write(text)
            stream.flush()
            return
    except Exception:
        pass
    try:
        os.write(2, text.encode(errors="replace"))
    except OSError:
        pass


def _format(exc_type, exc, tb) -> str:
    try:
        return "".join(traceback.format_exception(exc_type, exc, tb))
    except BaseException:
        return f"{getattr(exc_type, '__name__', exc_type)}: {exc}\n"


def _excepthook(exc_type, exc, tb) -> None:
    _print_stderr(_format(exc_type, exc, tb))


def _thread_excepthook(args) -> None:
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else threading.get_ident()
    _print_stderr(f"Exception in thread {name}:\n"
                  + _format(args.exc_type, args.exc_value, args.exc_traceback))


def _unraisablehook(unraisable) -> None:
    message = unraisable.err_msg or "Exception ignored in"
    _print_stderr(f"{message}: {unraisable.object!r}\n"
                  + _format(unraisable.exc_type, unraisable.exc_value,
                            unraisable.exc_traceback))


# -- (c) namespaces and the empty root --------------------------------------


def _enter_namespaces(config: LockdownConfig) -> tuple[LayerStatus, bool]:
    """The namespaces layer, and whether the artifact (config.artifact_fd) is mounted."""
    if not config.namespaces:
        return LayerStatus("namespaces", False, "disabled by config"), False
    uid, gid = os.getuid(), os.getgid()
    flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS
    if _libc.unshare(flags) != 0:
        err = ctypes.get_errno()
        return LayerStatus(
            "namespaces", False,
            f"unshare(CLONE_NEWUSER|NEWNS|NEWNET|NEWIPC|NEWUTS) failed: "
            f"{errno.errorcode.get(err, err)} ({os.strerror(err)}){_userns_hint()}; "
            "continuing with Landlock + seccomp only",
        ), False
    try:
        # /proc/self/* must be written now: no /proc (and no open()) later.
        _write_proc("/proc/self/setgroups", "deny")
        _write_proc("/proc/self/uid_map", f"0 {uid} 1\n")
        _write_proc("/proc/self/gid_map", f"0 {gid} 1\n")
    except OSError as exc:
        return LayerStatus(
            "namespaces", False,
            f"entered new namespaces but writing uid/gid maps failed: {exc}; "
            "host filesystem still visible (Landlock + seccomp still apply)",
        ), False
    try:
        where, artifact = _pivot_to_empty_root(config.artifact_fd)
    except OSError as exc:
        return LayerStatus(
            "namespaces", False,
            f"entered new namespaces but could not pivot into an empty root: "
            f"{exc}; host filesystem still visible (Landlock + seccomp still apply)",
        ), False
    return LayerStatus(
        "namespaces", True,
        f"user (0 -> host uid {uid}), mount, net, ipc, uts; empty read-only "
        f"tmpfs root (pivoted at {where}, old root detached){artifact}; pid ns not "
        "used: it only affects children and seccomp forbids creating any"
        + _cap_threads(config.threads, uid),
    ), artifact.startswith("; artifact mounted")


def _cap_threads(threads: int | None, host_uid: int) -> str:
    """RLIMIT_NPROC inside the fresh user namespace: the kernel (5.14+) counts
    tasks per user namespace, so this counts this child's threads alone."""
    if threads is None:
        return ""
    try:
        resource.setrlimit(resource.RLIMIT_NPROC, (threads, threads))
    except (OSError, ValueError) as exc:
        return f"; RLIMIT_NPROC not set: {exc}"
    if host_uid == 0:
        return f"; nproc={threads} (does not bind host uid 0: a pids cgroup caps threads, where delegated)"
    return f"; nproc={threads} in the namespace (host uid {host_uid})"


def _userns_hint() -> str:
    hints = []
    for path in ("/proc/sys/kernel/unprivileged_userns_clone",
                 "/proc/sys/user/max_user_namespaces",
                 "/proc/sys/kernel/apparmor_restrict_unprivileged_userns"):
        try:
            with open(path) as f:
                hints.append(f"{path}={f.read().strip()}")
        except OSError:
            pass
    return f" [{', '.join(hints)}]" if hints else ""


def _write_proc(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _pivot_to_empty_root(artifact_fd: int | None) -> tuple[str, str]:
    """(where the new root was mounted, "; artifact mounted ..." or why not, "" without one)."""
    _check(_libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None),
           "make / private")
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
        _check(_libc.mount(b"wasijail", where.encode(), b"tmpfs",
                           MS_NOSUID | MS_NODEV | MS_NOEXEC,
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
    _check(_libc.syscall(ctypes.c_long(_SYS_PIVOT_ROOT), b".", b"."), "pivot_root")
    _check(_libc.umount2(b".", MNT_DETACH), "detach the old root")
    os.chdir("/")
    _check(_libc.mount(None, b"/", None,
                       MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
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
    _check(_libc.mount(f"/proc/self/fd/{found}".encode(), target.encode(), None, MS_BIND, None),
           "bind the artifact")
    _check(_libc.mount(None, target.encode(), None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV,
                       None),
           "remount the artifact read-only")
    _check(_libc.mount(None, target.encode(), None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV,
                       None),
           "remount the artifact read-only")


# -- capabilities ------------------------------------------------------------


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def _drop_capabilities() -> LayerStatus:
    """Drop every capability (those of the new user namespace, or of a root
    parent when namespaces are unavailable)."""
    _libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    header = _CapHeader(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
    data = (_CapData * 2)()
    if _libc.syscall(ctypes.c_long(_SYS_CAPSET), ctypes.byref(header),
                     ctypes.byref(data)) != 0:
        err = ctypes.get_errno()
        return LayerStatus("capabilities", False, f"capset failed: {os.strerror(err)}")
    return LayerStatus("capabilities", True, "effective, permitted, inheritable, ambient cleared")


# -- (d) no_new_privs ----------------------------------------------------------


def _set_no_new_privs() -> LayerStatus:
    if _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        return LayerStatus("no_new_privs", False, f"prctl failed: {os.strerror(err)}")
    # Not dumpable: no core dump even through a core_pattern pipe (which
    # ignores RLIMIT_CORE 0), no ptrace or /proc/<pid>/mem by same-uid
    # processes.  After the namespace step: it makes /proc/self root-owned.
    detail = "PR_SET_NO_NEW_PRIVS"
    if _libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == 0:
        detail += ", PR_SET_DUMPABLE 0"
    else:
        detail += f"; PR_SET_DUMPABLE 0 failed: {os.strerror(ctypes.get_errno())}"
    return LayerStatus("no_new_privs", True, detail)


# -- (e) Landlock ----------------------------------------------------------------


class _LandlockRulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64),
                ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


def landlock_abi() -> tuple[int, str]:
    """(ABI version, "") or (0, why Landlock is unusable)."""
    if not _IS_X86_64:
        return 0, f"syscall numbers only known for x86_64, not {platform.machine()}"
    abi = _libc.syscall(ctypes.c_long(_SYS_LANDLOCK_CREATE_RULESET), None,
                        ctypes.c_size_t(0), ctypes.c_uint32(LANDLOCK_CREATE_RULESET_VERSION))
    if abi >= 1:
        return int(abi), ""
    err = ctypes.get_errno()
    if err == errno.ENOSYS:
        return 0, ("kernel without Landlock (landlock_create_ruleset: ENOSYS;"
                   " needs 5.13+ with CONFIG_SECURITY_LANDLOCK)")
    if err == errno.EOPNOTSUPP:
        return 0, "Landlock disabled at boot (add 'landlock' to the lsm= kernel parameter)"
    return 0, f"landlock_create_ruleset: {os.strerror(err)}"


def _landlock_ruleset(abi: int) -> tuple[_LandlockRulesetAttr, int, list[str]]:
    """Every right the ABI knows, and the struct size that ABI expects."""
    fs = 0
    for version, bits in _LANDLOCK_FS_BY_ABI.items():
        if abi >= version:
            fs |= bits
    attr = _LandlockRulesetAttr(fs, 0, 0)
    size = 8
    handled = [f"fs=0x{fs:x}"]
    if abi >= 4:
        attr.handled_access_net = _LANDLOCK_NET_BIND_TCP | _LANDLOCK_NET_CONNECT_TCP
        size = 16
        handled.append("net=bind,connect TCP")
    if abi >= 6:
        attr.scoped = _LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET | _LANDLOCK_SCOPE_SIGNAL
        size = 24
        handled.append("scoped=abstract unix sockets,signals")
    return attr, size, handled


class _LandlockPathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _allow_reading_artifact(ruleset_fd: int) -> None:
    """The one rule: read the mounted artifact (ARTIFACT_PATH), nothing beside or beneath it."""
    fd = os.open(ARTIFACT_PATH, os.O_PATH | os.O_CLOEXEC)
    try:
        rule = _LandlockPathBeneathAttr(_LANDLOCK_ACCESS_FS_READ_FILE, fd)
        _check(_libc.syscall(ctypes.c_long(_SYS_LANDLOCK_ADD_RULE), ctypes.c_int(ruleset_fd),
                             ctypes.c_int(_LANDLOCK_RULE_PATH_BENEATH), ctypes.byref(rule), ctypes.c_uint32(0)),
               "landlock_add_rule")
    finally:
        os.close(fd)


def _restrict_landlock(config: LockdownConfig, artifact: bool = False) -> LayerStatus:
    if not config.landlock:
        return LayerStatus("landlock", False, "disabled by config")
    abi, why = landlock_abi()
    if not abi:
        return LayerStatus("landlock", False, why)
    attr, size, handled = _landlock_ruleset(abi)
    fd = _libc.syscall(ctypes.c_long(_SYS_LANDLOCK_CREATE_RULESET), ctypes.byref(attr),
                       ctypes.c_size_t(size), ctypes.c_uint32(0))
    if fd < 0:
        err = ctypes.get_errno()
        return LayerStatus("landlock", False,
                           f"landlock_create_ruleset(ABI {abi}): {os.strerror(err)}")
    rules = "no rules"
    try:
        if artifact:  # else no landlock_add_rule at all: nothing is granted
            try:
                _allow_reading_artifact(fd)
                rules = f"one rule: read {ARTIFACT_PATH}"
            except OSError as exc:  # no rule: the artifact stays unreadable, the child copies it
                rules = f"no rules ({ARTIFACT_PATH} not granted: {exc.strerror})"
        if _libc.syscall(ctypes.c_long(_SYS_LANDLOCK_RESTRICT_SELF), ctypes.c_int(fd),
                         ctypes.c_uint32(0)) != 0:
            err = ctypes.get_errno()
            return LayerStatus("landlock", False,
                               f"landlock_restrict_self: {os.strerror(err)}")
    finally:
        os.close(fd)
    return LayerStatus("landlock", True, f"ABI {abi}, {rules}; handled {'; '.join(handled)}")


# -- (f) seccomp, and naming violations ---------------------------------------
#
# How a violation gets its name.  SECCOMP_RET_KILL_PROCESS leaves the parent
# nothing but "killed by SIGSYS" (the syscall number only reaches the audit
# log).  SECCOMP_RET_TRAP instead delivers SIGSYS synchronously to the
# offending thread with si_syscall set.  A Python-level signal handler runs
# later, between bytecodes, and never when the offender is a JIT/worker
# thread; a ctypes CFUNCTYPE handler would have to take the GIL from inside a
# signal handler (a possible deadlock if another thread holds it, and
# malloc in PyGILState_Ensure).  So the handler is 220 bytes of native
# x86_64 code, assembled from the listing below and mapped read+exec before
# the filter is loaded.  It takes no locks and calls no libc:
#
#     mov r8d,[rsi+24]            ; siginfo->si_syscall
#     (format "violation:<nr>\n" on the stack)
#     write(violation_fd, msg, len)
#     rt_sigaction(SIGSYS, {SIG_DFL}, NULL, 8)
#     tgkill(getpid(), gettid(), SIGSYS)       ; pending: SIGSYS is blocked
#     rt_sigprocmask(SIG_UNBLOCK, {SIGSYS})    ; -> dies by SIGSYS now
#     exit_group(159)                          ; not reached
#
# The process therefore still dies by SIGSYS (exit status 159 = 128+SIGSYS)
# and the parent reads the number from the pipe.  The forbidden syscall is
# never executed either way; the only thing TRAP gives up compared with
# KILL_PROCESS is that code which already controls the process could install
# its own SIGSYS handler and keep running after a refused call, which gains
# it nothing the EPERM default would not.  The violation message comes from
# the (possibly compromised) child: it names the syscall, it does not prove
# anything.

_HANDLER_X86_64 = bytes.fromhex(
    "448b46184883e4f04883ec40488d7c243fc6070a4489c0b90a00000048ffcf31d2f7"
    "f180c230881785c075f04883ef0a48b876696f6c6174696f48890766c747086e3a48"
    "8d5424404829fa4889fe8b3d84000000b8010000000f0531c0488904244889442408"
    "48894424104889442418bf1f0000004889e631d241ba08000000b80d0000000f05b8"
    "270000000f054189c1b8ba0000000f0589c64489cfba1f000000b8ea0000000f0548"
    "c7042400000040bf010000004889e631d241ba08000000b80e0000000f05bf9f0000"
    "00b8e70000000f050f0b6690ffffffff"
)
_HANDLER_FD_OFFSET = 0xD8  # the int32 slot read by "mov edi,[rip+...]"

_SA_SIGINFO = 0x4
_SA_ONSTACK = 0x08000000


class _Sigaction(ctypes.Structure):  # glibc's struct sigaction, x86_64
    _fields_ = [("sa_handler", ctypes.c_void_p),
                ("sa_mask", ctypes.c_uint8 * 128),
                ("sa_flags", ctypes.c_int),
                ("sa_restorer", ctypes.c_void_p)]


_handler_page: int | None = None  # kept mapped for the life of the process


def _install_violation_reporter(config: LockdownConfig) -> str | None:
    """Install the native SIGSYS handler; returns None when installed, else
    why violations will not be named."""
    global _handler_page
    if not config.seccomp:
        return "seccomp disabled"
    if config.violation_fd is None:
        return "no violation_fd configured"
    if not _IS_X86_64:
        return f"no native SIGSYS handler for {platform.machine()}"
    code = bytearray(_HANDLER_X86_64)
    code[_HANDLER_FD_OFFSET:_HANDLER_FD_OFFSET + 4] = config.violation_fd.to_bytes(4, "little")
    page = _libc.mmap(None, 4096, 0x1 | 0x2, 0x02 | 0x20, -1, 0)  # RW, PRIVATE|ANON
    if page in (None, ctypes.c_void_p(-1).value):
        return f"mmap for the SIGSYS handler failed: {os.strerror(ctypes.get_errno())}"
    ctypes.memmove(page, bytes(code), len(code))
    if _libc.mprotect(page, 4096, 0x1 | 0x4) != 0:  # R+X, never W+X
        return f"mprotect for the SIGSYS handler failed: {os.strerror(ctypes.get_errno())}"
    _handler_page = page
    # never block the dying child on a full pipe (stdio is left alone: the
    # flag belongs to the shared file description)
    flags = _fcntl_getfl(config.violation_fd) if config.violation_fd > 2 else None
    if flags is not None:
        _fcntl_setfl(config.violation_fd, flags | os.O_NONBLOCK)
    action = _Sigaction()
    action.sa_handler = page
    ctypes.memset(action.sa_mask, 0xFF, 128)  # every signal blocked inside
    action.sa_flags = _SA_SIGINFO | _SA_ONSTACK
    if _libc.sigaction(signal.SIGSYS, ctypes.byref(action), None) != 0:
        return f"sigaction(SIGSYS) failed: {os.strerror(ctypes.get_errno())}"
    return None


def _fcntl_getfl(fd: int) -> int | None:
    try:
        return fcntl.fcntl(fd, fcntl.F_GETFL)
    except OSError:
        return None


def _fcntl_setfl(fd: int, flags: int) -> None:
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, flags)
    except OSError:
        pass


_OPS = {
    "eq": pyseccomp.EQ,
    "ne": pyseccomp.NE,
    "masked_eq": pyseccomp.MASKED_EQ,
}


def _syscall_number(name: str) -> int | None:
    nr = pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, name)
    if nr >= 0:
        return nr
    if _IS_X86_64:
        return policy.X86_64_EXTRA_SYSCALLS.get(name)
    return None


def _args(conds, pid: int) -> list:
    out = []
    for cond in conds:
        arg, op = cond[0], cond[1]
        values = [pid if v == policy.SELF_PID else v for v in cond[2:]]
        out.append(pyseccomp.Arg(arg, _OPS[op], *values))
    return out


def build_filter(pid: int, forbidden_action: int, open_artifact: bool = False) -> pyseccomp.SyscallFilter:
    """The allow-list as a pyseccomp filter (not loaded); `open_artifact`: with the one open
    of the mounted artifact allowed (policy.ARTIFACT_OPEN), every other open still forbidden."""
    f = pyseccomp.SyscallFilter(pyseccomp.ERRNO(errno.EPERM))
    f.set_attr(pyseccomp.Attr.ACT_BADARCH, pyseccomp.KILL_PROCESS)
    f.set_attr(pyseccomp.Attr.CTL_TSYNC, 1)
    try:
        f.set_attr(pyseccomp.Attr.CTL_OPTIMIZE, 2)  # binary tree (libseccomp >= 2.5)
    except OSError:
        pass

    def add(action: int, name: str, conds=()) -> None:
        nr = _syscall_number(name)
        if nr is not None:
            f.add_rule(action, nr, *_args(conds, pid))

    for name in policy.ALLOW:
        add(pyseccomp.ALLOW, name)
    for name, conds in policy.ALLOW_IF:
        add(pyseccomp.ALLOW, name, conds)
    for name, err in policy.ERRNO:
        add(pyseccomp.ERRNO(err), name)
    opened = policy.ARTIFACT_OPEN[0] if open_artifact else None
    if opened is not None:
        (arg, _, flags), = policy.ARTIFACT_OPEN[1]
        add(pyseccomp.ALLOW, opened, policy.ARTIFACT_OPEN[1])
        add(forbidden_action, opened, ((arg, "ne", flags),))
    for name in policy.FORBID + policy.FORBID_NEW:
        if name != opened:
            add(forbidden_action, name)
    for name, conds in policy.FORBID_IF:
        add(forbidden_action, name, conds)
    return f


# Stands for the child's pid in a filter compiled before the child exists;
# patched in the BPF program after fork (it occurs nowhere else in the policy).
_PID_PLACEHOLDER = 0x3ABCDEF1
_BPF_INSN = struct.Struct("<HBBI")  # struct sock_filter: code, jt, jf, k
_BPF_JMP = 0x05
_SECCOMP_SET_MODE_FILTER = 1
_SECCOMP_FILTER_FLAG_TSYNC = 1


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


@dataclass(frozen=True)
class _Prebuilt:
    program: bytes  # the BPF program, with _PID_PLACEHOLDER where the pid goes
    pid_offsets: tuple[int, ...]  # byte offsets of those `k` fields


_PREBUILT: dict[tuple[int, bool], _Prebuilt] = {}  # by forbidden action, open_artifact


def export_program(pid: int, forbidden_action: int, open_artifact: bool = False) -> bytes:
    """The filter as the BPF program libseccomp would load (for prebuilding and for tests)."""
    # A memory file, not a pipe: a program larger than a pipe's buffer would block the export.
    with os.fdopen(os.memfd_create("wasijail-seccomp", os.MFD_CLOEXEC), "w+b") as sink:
        build_filter(pid, forbidden_action, open_artifact).export_bpf(sink)
        sink.seek(0)
        return sink.read()


def prebuild_seccomp() -> None:
    """Compile the filter once, before any child is forked (the fork server calls this).

    libseccomp spends milliseconds building and optimising the program; each
    child then only patches its own pid in and loads it.
    """
    for action in (pyseccomp.TRAP, pyseccomp.KILL_PROCESS):
        for open_artifact in (False, True):
            program = export_program(_PID_PLACEHOLDER, action, open_artifact)
            offsets = tuple(
                i * _BPF_INSN.size for i, (code, _, _, k) in enumerate(_BPF_INSN.iter_unpack(program))
                if k == _PID_PLACEHOLDER and code & 0x07 == _BPF_JMP)
            _PREBUILT[action, open_artifact] = _Prebuilt(program, offsets)


def program_for(pid: int, forbidden_action: int, open_artifact: bool = False) -> bytes | None:
    """The prebuilt program with `pid` patched in, or None when none was prebuilt."""
    prebuilt = _PREBUILT.get((forbidden_action, open_artifact))
    if prebuilt is None:
        return None
    program = bytearray(prebuilt.program)
    for offset in prebuilt.pid_offsets:
        struct.pack_into("<I", program, offset + 4, pid)
    return bytes(program)


def _load_program(program: bytes) -> None:
    """seccomp(SECCOMP_SET_MODE_FILTER, TSYNC, program), as libseccomp's load() does."""
    nr = pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, "seccomp")
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // _BPF_INSN.size, ctypes.addressof(buffer))
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")
    if _libc.syscall(nr, _SECCOMP_SET_MODE_FILTER, _SECCOMP_FILTER_FLAG_TSYNC, ctypes.byref(fprog)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _load_seccomp(config: LockdownConfig, reporter_problem: str | None, open_artifact: bool = False) -> LayerStatus:
    if not config.seccomp:
        return LayerStatus("seccomp", False, "disabled by config")
    if reporter_problem is None:
        action = pyseccomp.TRAP
        naming = f"forbidden syscalls: SIGSYS, named on fd {config.violation_fd}"
    else:
        action = pyseccomp.KILL_PROCESS
        naming = f"forbidden syscalls: SIGSYS, not named ({reporter_problem})"
    try:
        program = program_for(os.getpid(), action, open_artifact)
        if program is not None:
            _load_program(program)
        else:
            build_filter(os.getpid(), action, open_artifact).load()
    except OSError as exc:
        return LayerStatus("seccomp", False, f"loading the filter failed: {exc}")
    return LayerStatus("seccomp", True,
                       f"allow-list (default EPERM), TSYNC; {naming}"
                       + (f"; openat O_RDONLY|O_CLOEXEC allowed (for {ARTIFACT_PATH})" if open_artifact else "")
                       + ("; compiled once in the fork server" if program is not None else ""))


# ---------------------------------------------------------------------------
# Naming violations (used by the supervisor).
# ---------------------------------------------------------------------------


def syscall_name(nr: int) -> str:
    """Syscall number -> name on this architecture ("syscall 999" if unknown)."""
    try:
        return pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, int(nr)).decode()
    except (ValueError, OSError):
        pass
    if _IS_X86_64:
        for name, number in policy.X86_64_EXTRA_SYSCALLS.items():
            if number == nr:
                return name
    return f"syscall {nr}"


def parse_violations(data: bytes) -> list[int]:
    """Syscall numbers from what the child wrote to its violation fd.

    Malformed lines are ignored (the child may be compromised)."""
    numbers = []
    for line in data.split(b"\n"):
        if line.startswith(b"violation:"):
            digits = line[len(b"violation:"):]
            if digits.isdigit() and len(digits) <= 10:
                numbers.append(int(digits))
    return numbers


def describe_violation(violation: int | bytes | str | None) -> str:
    """"sandbox violation: execve" from a syscall number, a siginfo-like
    object (``si_syscall``), or the bytes read from the violation fd;
    "sandbox violation (SIGSYS)" when nothing names it."""
    nr: int | None
    if violation is None:
        nr = None
    elif isinstance(violation, int):
        nr = violation
    elif isinstance(violation, (bytes, bytearray, str)):
        raw = violation.encode() if isinstance(violation, str) else bytes(violation)
        found = parse_violations(raw)
        nr = found[0] if found else None
    else:
        nr = getattr(violation, "si_syscall", None)
    if nr is None:
        return "sandbox violation (SIGSYS)"
    return f"sandbox violation: {syscall_name(nr)}"
