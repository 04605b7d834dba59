"""scripts/bench --floors: the costs no implementation of wasijail's shape can avoid, measured.

Issue 14 accepts, for a target not met, "the profile that shows where the
remaining time is and why it cannot go lower on this machine". These are the
pieces of that argument, each measured here rather than assumed:

  start      a Python interpreter's start, then `import trio` (the supervisor
             must have it before it can supervise anything) and `import
             wasmtime` (the fork server's, overlapped with the CLI's): CPU
             time of a fresh `python -I -c ...`, median of --floor-runs.
  round trip a request and its reply between two Python processes over
             AF_UNIX SOCK_SEQPACKET, both on one CPU (as placement.py pins a
             child and its broker thread) and on two: the least a brokered
             call can cost, with no decoding, no validation and no handler.
  host call  a wasm loop calling an imported host function that does
             nothing, through the child's fastcall path (child/fastcall.py)
             and through wasmtime-py's Linker.define_func: the least a WASI
             call handled in the child can cost.
  read+write one 1 KiB os.readv from a tmpfs file into a bytearray and one
             os.writev of it to another, from Python: the system calls a
             copy makes per buffer, with the least Python around them.

The README's performance section sets each unmet target against these.
"""

from __future__ import annotations

import os
import resource
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

ROUND_TRIPS = 20_000
HOST_CALLS = 262_144  # as many as the copy workload makes (131,072 fd_read + 131,072 fd_write)
IO_PAIRS = 100_000


def _child_cpu(argv: list[str]) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(argv, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def start_costs(runs: int) -> dict[str, float]:
    """Median CPU seconds of a fresh interpreter doing each of these, and nothing else."""
    programs = {
        "python (no site)": ["-I", "-S", "-c", "pass"],
        "python": ["-I", "-c", "pass"],
        "python + import trio": ["-I", "-c", "import trio"],
        "python + import wasmtime": ["-I", "-c", "import wasmtime"],
    }
    samples: dict[str, list[float]] = {name: [] for name in programs}
    for _ in range(runs):
        for name, args in programs.items():  # interleaved, so drift hits all alike
            samples[name].append(_child_cpu([sys.executable, *args]))
    return {name: statistics.median(values) for name, values in samples.items()}


def round_trip(pinned: bool) -> float:
    """Seconds of wall time per 64-byte request and reply between two Python processes."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    mask = os.sched_getaffinity(0)
    cpu = min(mask)
    pid = os.fork()
    if pid == 0:
        try:
            ours.close()
            if pinned:
                os.sched_setaffinity(0, {cpu})
            while data := theirs.recv(65536):
                theirs.send(data)
        finally:
            os._exit(0)
    theirs.close()
    try:
        if pinned:
            os.sched_setaffinity(0, {cpu})
        message = b"x" * 64
        for _ in range(1000):  # warm up
            ours.send(message)
            ours.recv(65536)
        start = time.perf_counter()
        for _ in range(ROUND_TRIPS):
            ours.send(message)
            ours.recv(65536)
        return (time.perf_counter() - start) / ROUND_TRIPS
    finally:
        os.sched_setaffinity(0, mask)
        ours.close()
        os.waitpid(pid, 0)


_LOOP = """(module (import "env" "f" (func $f (param i32 i32 i32 i32) (result i32)))
  (func (export "run") (param $n i32) (local $i i32)
    (loop $l (drop (call $f (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (local.get $n))))))"""


def host_call(define: Callable) -> float:
    """Seconds per call of a wasm loop into a host function that does nothing."""
    import wasmtime

    engine = wasmtime.Engine()
    store = wasmtime.Store(engine)
    linker = wasmtime.Linker(engine)
    ty = wasmtime.FuncType([wasmtime.ValType.i32()] * 4, [wasmtime.ValType.i32()])
    define(linker, ty)
    run = linker.instantiate(store, wasmtime.Module(engine, _LOOP)).exports(store)["run"]
    run(store, 1000)
    start = time.perf_counter()
    run(store, HOST_CALLS)
    return (time.perf_counter() - start) / HOST_CALLS


def _fastcall(linker, ty) -> None:
    from wasijail.child import fastcall

    fastcall.define(linker, "env", "f", ty, lambda a, b, c, d: 0, ("i32",) * 4, ("i32",))


def _define_func(linker, ty) -> None:
    linker.define_func("env", "f", ty, lambda a, b, c, d: 0)


def read_write(folder: Path) -> float:
    """Seconds per 1 KiB os.readv + os.writev pair between two files in `folder`."""
    source, target = folder / "floor-in", folder / "floor-out"
    source.write_bytes(os.urandom(1024) * 64)
    buffer = bytearray(1024)
    view = [memoryview(buffer)]
    fd_in = os.open(source, os.O_RDONLY)
    fd_out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        start = time.perf_counter()
        for i in range(IO_PAIRS):
            if i % 64 == 0:
                os.lseek(fd_in, 0, os.SEEK_SET)
            n = os.readv(fd_in, view)
            os.writev(fd_out, [view[0][:n]])
        return (time.perf_counter() - start) / IO_PAIRS
    finally:
        os.close(fd_in)
        os.close(fd_out)
        source.unlink()
        target.unlink()


def measure(folder: Path, runs: int, log: Callable[[str], None]) -> dict[str, float]:
    """Every floor, in seconds, by name."""
    floors: dict[str, float] = {}
    log("floors: interpreter start and imports ...")
    floors.update({f"start: {name}": value for name, value in start_costs(runs).items()})
    log("floors: socket round trips ...")
    floors["round trip, one CPU"] = round_trip(pinned=True)
    floors["round trip, two CPUs"] = round_trip(pinned=False)
    log("floors: host calls ...")
    floors["host call, fastcall"] = host_call(_fastcall)
    floors["host call, define_func"] = host_call(_define_func)
    log("floors: 1 KiB read + write ...")
    floors["1 KiB readv + writev"] = read_write(folder)
    return floors


def report(floors: dict[str, float], out) -> None:
    width = max(map(len, floors))
    print("floors (medians; start: CPU of a fresh interpreter; the rest: wall time per operation;"
          f" load average {os.getloadavg()[0]:.1f}: a busy machine hides the cost of waking an idle CPU)",
          file=out)
    for name, value in floors.items():
        shown = f"{value * 1e3:8.1f} ms" if name.startswith("start") else f"{value * 1e6:8.2f} us"
        print(f"  {name:<{width}}  {shown}", file=out)

