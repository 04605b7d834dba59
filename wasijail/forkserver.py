"""The fork server: one helper process per supervisor that forks the children.

It has imported everything a child will ever need (wasmtime, the WASI host,
pyseccomp) but created no engine, so it has one thread and a fork of it is
safe and fast: a child starts in milliseconds, and after lockdown it can open
no file, so nothing may be left to import.

Control channel (SOCK_SEQPACKET, `protocol.control`: Spawn / Spawned / Exited): the
supervisor sends Spawn with the child's broker socket and stdio; the server
forks, answers with the child's pid and a pidfd (for kill), and reports the
wait status when the child ends. When the supervisor goes away, the server
exits and its children die with it (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import os
import selectors
import signal
import socket
import sys

from .protocol import control, transport
from .protocol.broker import ChildOutcome, Result, SandboxReport
from .child import runner
from .sandbox.kernel import PR_SET_DUMPABLE, PR_SET_PDEATHSIG, libc
from .sandbox.lockdown import LockdownConfig, LockdownError, lockdown
from .sandbox import runtime
from .sandbox.seccomp import prebuild_seccomp
from .stdio import fill_closed_stdio

# A child that could not be set up at all exits with this (the supervisor
# reports it as an error; a lockdown refusal is reported over the socket).
EXIT_SETUP_FAILED = 125


def _die_with_parent() -> None:
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _become_user(uid: int) -> None:
    """Run as host `uid` from here on, so RLIMIT_NPROC (set in lockdown) binds.

    The supervisor asks for it when it runs as root with no pids cgroup to
    cap threads: the kernel exempts uid 0 from RLIMIT_NPROC. Changing
    credentials clears the dumpable flag (lockdown writes its own uid map
    through /proc/self) and the parent-death signal: both are set again.
    """
    server = os.getppid()
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)
    _die_with_parent()
    if os.getppid() != server:  # the server died before the signal was armed again
        os._exit(EXIT_SETUP_FAILED)


def _become_child(spawn: control.Spawn, broker_fd: int, stdio: list[int], violation_fd: int,
                  artifact_fd: int | None, cgroup_fds: list[int]) -> None:
    """Runs in the forked child; never returns."""
    status = EXIT_SETUP_FAILED
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        _die_with_parent()
        for target, fd in zip((0, 1, 2), stdio):
            os.dup2(fd, target)
        for cgroup_fd in cgroup_fds:
            os.write(cgroup_fd, b"0")  # join this child's cgroups ("0": the writer itself)
            os.close(cgroup_fd)
        if spawn.host_uid >= 0:
            _become_user(spawn.host_uid)
        limits = spawn.child_limits
        config = LockdownConfig(
            keep_fds=(0, 1, 2, broker_fd),
            file_size=limits.file_size,
            # The guest's open_files is the WASI table's limit (and the broker's on
            # handles); the process needs descriptors of its own beyond it.
            open_files=None,
            cpu_time=limits.lockdown_cpu_time,
            threads=limits.threads,
            required=spawn.required,
            violation_fd=violation_fd,  # a refused syscall is named here before the child dies
            artifact_fd=artifact_fd,  # mounted read-only for wasmtime to map, then closed
        )
        sock = socket.socket(fileno=broker_fd)
        try:
            report = lockdown(config)
        except LockdownError as exc:
            transport.send(sock, Result(ChildOutcome.ERROR, 1, 0, 0, str(exc).encode()))
            os._exit(1)
        missing = "\n".join(f"{name}: {why}" for name, why in report.not_applied.items())
        transport.send(sock, SandboxReport(missing.encode()))
        sock.detach()
        runner.child_main(broker_fd, report.artifact_path)  # exits the process
    except BaseException:
        pass
    os._exit(status)


def serve(control_fd: int) -> None:
    fill_closed_stdio()
    _die_with_parent()
    prebuild_seccomp()  # once here, not in every child
    # The children's runtime settings (runtime.py), once here: each child's lockdown applies
    # them again and finds them in place. The server's own tracebacks then show no source
    # lines either, as a child's do.
    runtime.apply()
    # Ctrl-C is for the supervisor, which stops the children; the fork server ends with it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    channel = socket.socket(fileno=control_fd)
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    selector = selectors.DefaultSelector()
    selector.register(channel, selectors.EVENT_READ)
    selector.register(wake_r, selectors.EVENT_READ)
    while True:
        for key, _ in selector.select():
            if key.fileobj is channel:
                if not _handle_request(channel):
                    return
            else:
                while True:
                    try:
                        if not os.read(wake_r, 4096):
                            break
                    except BlockingIOError:
                        break
                _reap(channel)


def _handle_request(channel: socket.socket) -> bool:
    data, fds = transport.receive(channel)
    if not data:
        return False  # the supervisor is gone
    spawn = control.decode_to_server(data)
    if len(fds) not in spawn.fd_counts:
        transport.close_all(fds)
        raise transport.ProtocolError(f"Spawn carries {len(fds)} fds, not {spawn.fd_counts.start} to"
                                      f" {spawn.fd_counts.stop - 1}")
    broker_fd, stdio, violation_fd = fds[0], fds[1:4], fds[4]
    artifact_fd, cgroup_fds = (fds[5] if spawn.artifact else None), fds[5 + spawn.artifact:]
    try:
        pid = os.fork()
    except OSError as exc:
        transport.send(channel, control.Spawned(spawn.run_id, -1, str(exc).encode()))
        pid = -1
    if pid == 0:
        channel.close()
        _become_child(spawn, broker_fd, stdio, violation_fd, artifact_fd, cgroup_fds)
    for fd in fds:
        os.close(fd)
    if pid > 0:
        pidfd = os.pidfd_open(pid)
        try:
            transport.send(channel, control.Spawned(spawn.run_id, pid, b""), (pidfd,))
        finally:
            os.close(pidfd)
    return True


def _reap(channel: socket.socket) -> None:
    while True:
        try:
            pid, status, usage = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        transport.send(channel, control.Exited(
            pid, status, round(usage.ru_utime * 1e6), round(usage.ru_stime * 1e6), usage.ru_maxrss))


def main(control_fd: int) -> None:
    """The fork server's process (serverproc starts it), to its end."""
    serve(control_fd)
    # The supervisor has gone and every child is reaped: skip the interpreter's teardown
    # (wasmtime's and the imports' finalizers), which the supervisor would otherwise wait
    # for at the end of every CLI run.
    os._exit(0)


if __name__ == "__main__":
    main(int(sys.argv[1]))
