"""The timeline of one run, from the kernel's tracepoints: what `scripts/bench --timeline` prints.

    timeline.trace(argv, cwd, artifact_size) -> Trace

Runs a command under `perf record` with a handful of tracepoints (process
exec/fork/exit and the syscalls that mark a phase: unshare, pivot_root,
landlock_restrict_self, seccomp, mmap, recvmsg/sendmsg, epoll_wait,
write, exit_group) and turns the samples into named events per process:
the CLI (the supervisor), the fork server, the child (or the one
wasmtime-py process). Tracepoints cost the traced processes almost nothing
(no ptrace stops, unlike strace), so the phases keep their real length.
Beside it a sampler reads every process's VmHWM (peak RSS) and CPU time
from /proc every 5 ms: peak RSS per process, not only the largest.

Events are inferred from syscalls, so they mark the moment a phase's first
(or last) syscall happened: "artifact mapped" is the mmap of the artifact's
size, "module loaded" the child's next sendmsg (the Compiled notice, sent
once the module is deserialised and its imports checked), "instantiated"
the reservation of linear memory (a mapping of 4 GiB or more), "first
output" the first write to stdout or stderr.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

TRACEPOINTS = (
    "sched:sched_process_exec", "sched:sched_process_fork", "sched:sched_process_exit",
    "syscalls:sys_enter_unshare", "syscalls:sys_enter_pivot_root",
    "syscalls:sys_enter_landlock_restrict_self", "syscalls:sys_enter_seccomp",
    "syscalls:sys_enter_mmap", "syscalls:sys_enter_openat", "syscalls:sys_exit_recvmsg",
    "syscalls:sys_enter_sendmsg", "syscalls:sys_enter_sendto", "syscalls:sys_enter_epoll_wait",
    "syscalls:sys_enter_write", "syscalls:sys_enter_writev",
    "syscalls:sys_enter_exit_group",
)
_LINE = re.compile(r"^\s*(?P<comm>.+?)\s+(?P<pid>\d+)/(?P<tid>\d+)\s+\[\d+\]\s+(?P<time>[\d.]+):\s+(?P<event>[\w:]+):\s*(?P<args>.*)$")
_FIELD = re.compile(r"(\w+)[:=] ?([^,\s]+)")
_RESERVATION = 4 << 30  # a linear memory's reservation: instantiation has begun


class TimelineUnavailable(Exception):
    """perf is missing or may not trace here."""


@dataclass
class Process:
    pid: int
    role: str
    peak_rss_kib: int = 0
    cpu_seconds: float = 0.0


@dataclass
class Trace:
    events: list[tuple[float, str, str]] = field(default_factory=list)  # (seconds from start, role, what)
    processes: dict[int, Process] = field(default_factory=dict)
    by_pid: dict[int, list[tuple[float, str]]] = field(default_factory=dict)  # each process's own events
    wall: float = 0.0
    status: int = 0


def available() -> str | None:
    """None when perf can trace syscalls here, else why not."""
    if shutil.which("perf") is None:
        return "perf is not installed (Debian: linux-perf)"
    probe = subprocess.run(["perf", "list", "syscalls:sys_enter_mmap"], capture_output=True, text=True)
    if "sys_enter_mmap" not in probe.stdout:
        return "perf cannot see the syscall tracepoints (run as root, or lower kernel.perf_event_paranoid)"
    return None


class _Sampler(threading.Thread):
    """Peak RSS (VmHWM) and CPU time of every process below `root`, read from /proc."""

    def __init__(self, root: int) -> None:
        super().__init__(daemon=True)
        self.root, self.stop = root, threading.Event()
        self.seen: dict[int, tuple[int, float]] = {}
        self.tick = os.sysconf("SC_CLK_TCK")

    def _tree(self) -> list[int]:
        pids, todo = [], [self.root]
        while todo:
            pid = todo.pop()
            pids.append(pid)
            try:
                for task in os.listdir(f"/proc/{pid}/task"):
                    with open(f"/proc/{pid}/task/{task}/children") as f:
                        todo.extend(int(p) for p in f.read().split())
            except OSError:
                pass
        return pids

    def run(self) -> None:
        while not self.stop.wait(0.005):
            for pid in self._tree():
                try:
                    with open(f"/proc/{pid}/status") as f:
                        hwm = next((int(line.split()[1]) for line in f if line.startswith("VmHWM:")), 0)
                    with open(f"/proc/{pid}/stat") as f:
                        fields = f.read().rsplit(")", 1)[1].split()
                    cpu = (int(fields[11]) + int(fields[12])) / self.tick
                except (OSError, ValueError, IndexError):
                    continue
                old_hwm, old_cpu = self.seen.get(pid, (0, 0.0))
                self.seen[pid] = (max(old_hwm, hwm), max(old_cpu, cpu))


def trace(argv: list[str], cwd: Path, artifact_size: int | None, role: str = "cli") -> Trace:
    """Run `argv` in `cwd` under perf; its timeline. `artifact_size`: the size of the compiled
    artifact the run is expected to map (None: do not look for it); `role`: the command's name
    in the timeline ("cli": wasijail's command, whose fork server and child are found)."""
    why = available()
    if why:
        raise TimelineUnavailable(why)
    with tempfile.TemporaryDirectory(prefix="wasijail-timeline-") as tmp:
        data = Path(tmp) / "perf.data"
        started = time.perf_counter()
        perf = subprocess.Popen(["perf", "record", "-q", "--no-buildid", "-o", str(data), "-e", ",".join(TRACEPOINTS), "--", *argv],
                                cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        sampler = _Sampler(perf.pid)
        sampler.start()
        _, err = perf.communicate()
        wall = time.perf_counter() - started
        sampler.stop.set()
        sampler.join()
        script = subprocess.run(["perf", "script", "-i", str(data), "-F", "comm,pid,tid,cpu,time,event,trace"],
                                capture_output=True, text=True)
        if script.returncode != 0:
            raise TimelineUnavailable(f"perf script: {script.stderr.strip()[:200]}")
    result = _events(script.stdout, artifact_size, role)
    result.wall, result.status = wall, perf.returncode
    for pid, (hwm, cpu) in sampler.seen.items():
        if pid in result.processes:
            result.processes[pid].peak_rss_kib, result.processes[pid].cpu_seconds = hwm, cpu
    return result


# Steps marked by the first event of a kind in a process of a role: (event, role) -> (mark, text).
_FIRST_OF = {
    ("syscalls:sys_enter_epoll_wait", "forkserver"): ("ready", "ready (waits for a Spawn)"),
    ("syscalls:sys_exit_recvmsg", "forkserver"): ("spawn", "Spawn received"),
    ("syscalls:sys_enter_unshare", "child"): ("unshare", "lockdown: unshare (namespaces)"),
    ("syscalls:sys_enter_pivot_root", "child"): ("pivot", "lockdown: pivot_root (empty root)"),
    ("syscalls:sys_enter_landlock_restrict_self", "child"): ("landlock", "lockdown: Landlock"),
    ("syscalls:sys_enter_seccomp", "child"): ("seccomp", "lockdown: seccomp"),
}


def _events(text: str, artifact_size: int | None, first_role: str) -> Trace:
    out = Trace()
    roles: dict[int, str] = {}
    parent: dict[int, int] = {}
    marks: dict[tuple[int, str], bool] = {}
    start: float | None = None
    first_pid: int | None = None

    def once(pid: int, what: str) -> bool:
        if (pid, what) in marks:
            return False
        marks[pid, what] = True
        return True

    def add(t: float, pid: int, what: str) -> None:
        out.events.append((t - (start or t), roles.get(pid, str(pid)), what))
        out.by_pid.setdefault(pid, []).append((t - (start or t), what))

    for line in text.splitlines():
        m = _LINE.match(line)
        if m is None:
            continue
        pid, tid, t, event = int(m["pid"]), int(m["tid"]), float(m["time"]), m["event"]
        args = dict(_FIELD.findall(m["args"]))
        if event == "sched:sched_process_exec":
            name = args.get("filename", "")
            if first_pid is None:  # the command itself, exec'd by perf
                first_pid, start = pid, t
                roles[pid] = first_role
                add(t, pid, f"exec {Path(name).name}")
            elif roles.get(parent.get(pid, -1)) == "cli" and "python" in Path(name).name:
                roles[pid] = "forkserver"
                add(t, pid, "exec (fork server starts importing)")
            elif parent.get(pid) in roles:
                roles[pid] = Path(name).name
                add(t, pid, f"exec {name}")
            continue
        if start is None:
            continue
        if event == "sched:sched_process_fork":
            child = int(args.get("child_pid", "0"))
            parent[child] = pid
            if roles.get(pid) == "forkserver":
                roles[child] = "child"
                add(t, pid, f"fork child {child}")
                add(t, child, "forked")
            continue
        if pid not in roles:
            continue  # a thread or a process outside the run
        role = roles[pid]
        if event == "sched:sched_process_exit":
            if tid == pid and once(pid, "exit"):
                add(t, pid, "exited")
        elif event == "syscalls:sys_enter_exit_group":
            add(t, pid, "exit_group (interpreter done)")
        elif (event, role) in _FIRST_OF:
            mark, what = _FIRST_OF[event, role]
            if once(pid, mark):
                add(t, pid, what)
        elif event == "syscalls:sys_exit_recvmsg" and role == "child" and (pid, "seccomp") in marks \
                and once(pid, "start"):
            add(t, pid, "Start received")
        elif event == "syscalls:sys_enter_openat" and role == "child" and (pid, "seccomp") in marks \
                and once(pid, "open"):
            add(t, pid, "opens a file (the artifact)")
        elif event == "syscalls:sys_enter_mmap":
            length, fd = int(args.get("len", "0"), 16), int(args.get("fd", "0xffffffff"), 16)
            if artifact_size and fd != 0xFFFFFFFF and length == artifact_size and once(pid, "artifact"):
                add(t, pid, f"artifact mapped ({length / 2**20:.1f} MiB)")
            elif length >= _RESERVATION and once(pid, "memory"):
                add(t, pid, "instantiating (linear memory reserved)")
        elif event in ("syscalls:sys_enter_sendmsg", "syscalls:sys_enter_sendto") and role == "child" \
                and (pid, "artifact" if artifact_size else "start") in marks and once(pid, "loaded"):
            add(t, pid, "module loaded (Compiled sent)")
        elif event == "syscalls:sys_enter_sendmsg" and role == first_role == "cli" and once(pid, "spawn"):
            add(t, pid, "Spawn sent (imports, policy, supervisor ready)")
        elif event in ("syscalls:sys_enter_write", "syscalls:sys_enter_writev") and args.get("fd") in ("0x00000001", "0x00000002") \
                and role in ("child", first_role) and once(pid, "output"):
            add(t, pid, "first output")
    for pid, role in roles.items():
        if role in (first_role, "forkserver", "child"):
            out.processes[pid] = Process(pid, role)
    out.events.sort()
    return out


# A child's steps, in order: the event that ends each (the first of its name in the child).
CHILD_STEPS = (
    ("fork to namespaces (cgroup joined, fds, rlimits)", "lockdown: unshare (namespaces)"),
    ("namespaces to seccomp (rest of lockdown)", "lockdown: seccomp"),
    ("seccomp to Start received", "Start received"),
    ("module loaded (Compiled sent)", "module loaded (Compiled sent)"),
    ("instantiated, ran, reported (exit_group)", "exit_group (interpreter done)"),
    ("process gone (teardown)", "exited"),
)


def child_steps(result: Trace) -> dict[str, list[float]]:
    """Milliseconds of each CHILD_STEPS step in every child of the run (a batch has many)."""
    steps: dict[str, list[float]] = {name: [] for name, _ in CHILD_STEPS}
    steps["fork to gone, in all"] = []
    for pid, proc in result.processes.items():
        if proc.role != "child":
            continue
        seen: dict[str, float] = {}
        for t, what in result.by_pid.get(pid, []):
            seen.setdefault(what, t)
        if "forked" not in seen or "exited" not in seen:
            continue
        before = seen["forked"]
        for name, what in CHILD_STEPS:
            if what in seen:
                steps[name].append((seen[what] - before) * 1000)
                before = seen[what]
        steps["fork to gone, in all"].append((seen["exited"] - seen["forked"]) * 1000)
    return steps


def render(title: str, result: Trace) -> list[str]:
    lines = [f"{title}: {result.wall:.3f} s wall (under perf), exit status {result.status}"]
    for t, role, what in result.events:
        lines.append(f"  {t * 1000:8.1f} ms  {role:<11} {what}")
    for proc in sorted(result.processes.values(), key=lambda p: p.pid):
        lines.append(f"  {proc.role:<11} pid {proc.pid}: peak RSS {proc.peak_rss_kib / 1024:6.1f} MiB,"
                     f" CPU {proc.cpu_seconds:.3f} s")
    return lines
