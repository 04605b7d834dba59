"""Resource limits of the child: no core, file size, open files, CPU, threads.

`apply()` is the lockdown's "rlimits" step; `cap_threads()` runs inside the
fresh user namespace, where RLIMIT_NPROC counts this child's tasks alone.
Memory is not an rlimit: every linear memory reserves ~4 GiB of address
space (the Store's limits and the memory cgroup cap it instead).
"""

from __future__ import annotations

import math
import resource

from . import LayerStatus

__all__ = ["apply", "cap_threads"]


def apply(file_size: int | None, open_files: int | None, cpu_time: float | None) -> LayerStatus:
    """Set the limits (None: leave that one as is), never above an existing hard limit."""
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
        if file_size is not None:
            clamp(resource.RLIMIT_FSIZE, "fsize", file_size, file_size)
        if open_files is not None:
            clamp(resource.RLIMIT_NOFILE, "nofile", open_files, open_files)
        if cpu_time is not None:
            seconds = max(1, math.ceil(cpu_time))
            clamp(resource.RLIMIT_CPU, "cpu", seconds, seconds + 1)
    except (OSError, ValueError) as exc:
        return LayerStatus("rlimits", False, f"setrlimit failed after {done}: {exc}")
    return LayerStatus("rlimits", True, ", ".join(done + notes))


def cap_threads(threads: int | None, host_uid: int) -> str:
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
