"""The child's lockdown: one linear function, layers in the order they happen.

    close fds -> single-thread check -> rlimits -> runtime preparation
    -> namespaces + empty read-only root (+ the cached artifact, read-only) -> drop capabilities
    -> no_new_privs -> Landlock -> violation reporter -> seccomp

Each step is one call into the module of its concern (rlimits.py,
runtime.py, userns.py, mounts.py, privileges.py, landlock.py, seccomp.py);
this file is only their order, like nsjail's contain.cc.

Call `lockdown()` in a freshly forked, single-threaded child, before any
wasmtime Module is compiled (the first compile starts worker threads, and
unshare() and Landlock only act on a single-threaded process; creating an
Engine first is harmless but pointless) and before any untrusted byte is
parsed.  Everything the child will need afterwards must already be
imported: an import after lockdown fails (PermissionError from getcwd) or
dies by SIGSYS ("sandbox violation: openat"), as does anything else that
opens a file.  The "runtime" step settles the known incidental file reads
of glibc, Rust and CPython beforehand (see runtime.py).

A layer the host cannot provide is reported in the `LockdownReport` with
the reason, never silently skipped; `LockdownConfig.required` turns a
missing layer into a `LockdownError`.
"""

from __future__ import annotations

import ctypes
import errno
import os
import time
from dataclasses import dataclass, field
from typing import final

from . import LAYERS, LAYER_NAMES, LayerStatus, landlock, mounts, privileges, rlimits, runtime, seccomp, userns
from .kernel import CLONE_NEWIPC, CLONE_NEWNET, CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWUTS, libc
from .mounts import ARTIFACT_PATH

__all__ = ["LockdownConfig", "LockdownError", "LayerStatus", "LockdownReport", "lockdown", "STEPS", "ARTIFACT_PATH"]

# The lockdown's steps, in order (the keys of LockdownReport).
STEPS = (
    "fds", "rlimits", "runtime", "namespaces", "capabilities",
    "no_new_privs", "landlock", "seccomp",
)
# A policy layer -> the step that applies it (the supervisor's layers have none).
_STEP_OF = {layer.name: layer.step for layer in LAYERS}


class LockdownError(RuntimeError):
    """lockdown() was called wrongly, or a required layer is missing."""

    def __init__(self, message: str, report: "LockdownReport | None" = None):
        super().__init__(message)
        self.report = report


@final
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
        all steps ran: names from STEPS, or the policy's layer names (the
        registry in wasijail.sandbox says which step applies each: "userns",
        "mountns", "netns" mean "namespaces"; "openat2" and "cgroup" are the
        supervisor's and not checked here).
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
        unknown = self.required - set(STEPS) - set(LAYER_NAMES)
        if unknown:
            raise ValueError(f"unknown layers in required: {sorted(unknown)}")


@final
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
    layers.append(rlimits.apply(config.file_size, config.open_files, config.cpu_time))
    layers.append(runtime.apply())
    namespaces, artifact = (_enter_namespaces(config.threads, config.artifact_fd) if config.namespaces
                            else (_disabled("namespaces"), False))
    layers.append(namespaces)
    if config.artifact_fd is not None:
        os.close(config.artifact_fd)  # the mount holds the file now
    layers.append(privileges.drop_capabilities())
    layers.append(privileges.set_no_new_privs())
    layers.append(landlock.apply(artifact) if config.landlock else _disabled("landlock"))
    layers.append(seccomp.apply(config.violation_fd, artifact) if config.seccomp else _disabled("seccomp"))

    report = LockdownReport(tuple(layers), time.perf_counter() - started, ARTIFACT_PATH if artifact else "")
    required = {_STEP_OF.get(name, name) for name in config.required} - {None}
    missing = sorted(required - set(report.applied))
    if missing:
        reasons = "; ".join(f"{n}: {report.not_applied[n]}" for n in missing)
        raise LockdownError(f"required sandbox layers missing: {reasons}", report)
    return report


def _disabled(step: str) -> LayerStatus:
    return LayerStatus(step, False, "disabled by config")


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


def _enter_namespaces(threads: int | None, artifact_fd: int | None) -> tuple[LayerStatus, bool]:
    """One unshare for all namespaces (as nsjail's clone), then each one's set-up; and
    whether the artifact (`artifact_fd`) is mounted."""
    uid, gid = os.getuid(), os.getgid()
    if libc.unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS) != 0:
        err = ctypes.get_errno()
        return LayerStatus(
            "namespaces", False,
            f"unshare(CLONE_NEWUSER|NEWNS|NEWNET|NEWIPC|NEWUTS) failed: "
            f"{errno.errorcode.get(err, err)} ({os.strerror(err)}){userns.hints()}; "
            "continuing with Landlock + seccomp only",
        ), False
    try:
        userns.apply(uid, gid)
    except OSError as exc:
        return LayerStatus(
            "namespaces", False,
            f"entered new namespaces but writing uid/gid maps failed: {exc}; "
            "host filesystem still visible (Landlock + seccomp still apply)",
        ), False
    try:
        where, artifact = mounts.apply(artifact_fd)
    except OSError as exc:
        return LayerStatus(
            "namespaces", False,
            f"entered new namespaces but could not pivot into an empty root: "
            f"{exc}; host filesystem still visible (Landlock + seccomp still apply)",
        ), False
    # The network, ipc and uts namespaces need no set-up: they start empty.
    return LayerStatus(
        "namespaces", True,
        f"user (0 -> host uid {uid}), mount, net, ipc, uts; empty read-only "
        f"tmpfs root (pivoted at {where}, old root detached){artifact}; pid ns not "
        "used: it only affects children and seccomp forbids creating any"
        + rlimits.cap_threads(threads, uid),
    ), artifact.startswith("; artifact mounted")
