"""The lockdown's "runtime" step: settle now what would read files later.

After lockdown an open() kills the child, so whatever glibc, Rust and
CPython would read from /proc, /sys, /etc or source files on their own,
at a moment nobody chose, is settled beforehand (see `apply`).
"""

from __future__ import annotations

import linecache
import os
import sys
import threading
import time
import traceback

from . import LayerStatus
from .kernel import libc

__all__ = ["apply"]

# mallopt parameters (glibc malloc.h) and glibc's HEAP_MAX_SIZE on 64-bit
_M_TRIM_THRESHOLD = -1
_M_ARENA_MAX = -8
_ARENA_HEAP_MAX = 64 * 1024 * 1024


def apply() -> LayerStatus:
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
    # Each note says what is in place, whether set now or inherited set: the fork server
    # applies all this once before it serves (each child then makes none of the
    # copy-on-write faults of setting it, ~0.2 ms of its CPU) and the report reads the same.
    cpus = max(1, len(os.sched_getaffinity(0)))
    if not os.environ.get("RAYON_NUM_THREADS"):
        os.environ["RAYON_NUM_THREADS"] = str(cpus)
    if not os.environ.get("TZ"):
        os.environ["TZ"] = "UTC"
    notes = [f"RAYON_NUM_THREADS={os.environ['RAYON_NUM_THREADS']}", f"TZ={os.environ['TZ']}"]
    time.tzset()  # with TZ as the last tzset() saw it, glibc reads no file again
    os.cpu_count = lambda: cpus  # glibc's sysconf reads /sys/devices/system/cpu/online
    notes.append(f"os.cpu_count()={cpus}")
    arenas = 8 * cpus
    if (libc.mallopt(_M_TRIM_THRESHOLD, _ARENA_HEAP_MAX) == 1
            and libc.mallopt(_M_ARENA_MAX, arenas) == 1):
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
    if threading.excepthook is threading.__excepthook__:
        threading.excepthook = _thread_excepthook
    if sys.unraisablehook is sys.__unraisablehook__:
        sys.unraisablehook = _unraisablehook
    notes.extend(name for name, ours in (("sys.excepthook", sys.excepthook is _excepthook),
                                         ("threading.excepthook", threading.excepthook is _thread_excepthook),
                                         ("sys.unraisablehook", sys.unraisablehook is _unraisablehook)) if ours)
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
