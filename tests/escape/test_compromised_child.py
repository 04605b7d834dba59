"""A module that escaped wasmtime, acted out by Python code in a fully locked-down child.

Each test runs its attempt through the real supervisor, the real fork server
and the real lockdown (tests/escape/compromised_forkserver.py swaps only what
the child does once locked down), and checks that the attempt is stopped and
that the supervisor's result names what happened.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
import trio

from wasijail import OutcomeKind, Policy
from wasijail.launcher import Launcher
from wasijail.results import STATUS_VIOLATION
from wasijail.supervisor import RunSpec, Supervisor

SERVER = Path(__file__).with_name("compromised_forkserver.py")


@pytest.fixture
async def attempt(tmp_path):
    """Run Python source as the compromised child; return the supervisor's RunResult."""
    async with trio.open_nursery() as nursery:
        launcher = Launcher([sys.executable, str(SERVER)])
        await launcher.start(nursery)
        supervisor = Supervisor(launcher)

        async def run(source: str, policy: Policy = Policy()):
            script = tmp_path / "attempt.py"
            script.write_text(textwrap.dedent(source))
            return await supervisor.run_spec(RunSpec(script, (), policy), capture_stdout=True,
                                             capture_stderr=True)

        yield run
        await launcher.aclose()
        nursery.cancel_scope.cancel()


def assert_violation(result, syscall: str) -> None:
    assert result.outcome.kind is OutcomeKind.VIOLATION, result
    assert result.outcome.detail == f"sandbox violation: {syscall}"
    assert result.returncode == STATUS_VIOLATION


async def test_the_harness_runs_code_in_the_child(attempt):
    result = await attempt("import os\nRESULT = os.getpid() != os.getppid()")
    assert (result.outcome.kind, result.returncode, result.stdout) == (OutcomeKind.EXIT, 0, b"True")
    assert result.sandbox_missing == ()  # every layer applied on this host


async def test_open_a_host_file(attempt):
    assert_violation(await attempt("open('/etc/passwd').read()"), "openat")


async def test_stat_a_host_path_is_refused(attempt):
    result = await attempt("import os\nos.stat('/etc/passwd')")
    assert result.outcome.detail == "PermissionError: [Errno 1] Operation not permitted: '/etc/passwd'"


async def test_list_the_root(attempt):
    assert_violation(await attempt("import os\nos.listdir('/')"), "openat")


async def test_list_own_fds(attempt):
    assert_violation(await attempt("import os\nos.listdir('/proc/self/fd')"), "openat")


async def test_only_the_socket_stdio_and_violation_pipe_are_open(attempt):
    result = await attempt("""
        import fcntl
        RESULT = []
        for fd in range(4096):
            try:
                fcntl.fcntl(fd, fcntl.F_GETFD)
                RESULT.append(fd)
            except OSError:
                pass
        RESULT = (RESULT[:3], len(RESULT), sock.fileno() in RESULT)
    """)
    # stdin, stdout, stderr, the broker socket and the pipe a violation is named on
    assert result.stdout == b"([0, 1, 2], 5, True)"


@pytest.mark.parametrize("source,syscall", [
    ("import socket\nsocket.socket()", "socket"),
    ("import os\nos.execv('/bin/sh', ['sh'])", "execve"),
    ("import os\nos.fork()", "clone"),
    ("import ctypes\nctypes.CDLL(None).ptrace(16, __import__('os').getppid(), 0, 0)", "ptrace"),
    ("import os, signal\nos.kill(os.getppid(), signal.SIGTERM)", "kill"),
    ("import ctypes\nctypes.CDLL(None).unshare(0x00020000)", "unshare"),
    ("import ctypes\nctypes.CDLL(None).mount(b'none', b'/', b'tmpfs', 0, None)", "mount"),
], ids=["socket", "execve", "fork", "ptrace-parent", "kill-parent", "unshare", "mount"])
async def test_forbidden_syscalls_are_killed_and_named(attempt, source, syscall):
    assert_violation(await attempt(source), syscall)


async def test_supervisor_survives_and_keeps_serving(attempt):
    assert_violation(await attempt("import os\nos.execv('/bin/sh', ['sh'])"), "execve")
    result = await attempt("RESULT = 42")
    assert (result.outcome.kind, result.returncode) == (OutcomeKind.EXIT, 0)


async def test_write_to_a_donated_read_only_file(attempt, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "keep.txt").write_text("original")
    policy = Policy().with_preopen(data, "/data", mode="ro")
    result = await attempt("""
        import os
        from wasijail.wasi import Rights
        # Ask the broker for the file with every right, as a compromised child would.
        protocol.send(sock, protocol.PathOpen(0, 1, 0, 0, int(Rights.FD_READ), 0, b"keep.txt"))
        data, fds = protocol.receive(sock)
        os.write(fds[0], b"overwritten")
    """, policy)
    assert result.outcome.detail == "OSError: [Errno 9] Bad file descriptor"
    assert (data / "keep.txt").read_text() == "original"


async def test_asking_the_broker_to_open_for_write_on_read_only_preopen(attempt, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "keep.txt").write_text("original")
    policy = Policy().with_preopen(data, "/data", mode="ro")
    result = await attempt("""
        from wasijail.wasi import Rights
        protocol.send(sock, protocol.PathOpen(0, 1, 8, 0, int(Rights.FD_WRITE), 0, b"keep.txt"))
        data, fds = protocol.receive(sock)
        RESULT = (protocol.decode_reply(protocol.OpenReply, data).errno, fds)
    """, policy)
    assert result.stdout == b"(63, [])"  # EPERM, and no descriptor handed over
    assert (data / "keep.txt").read_text() == "original"


async def test_malformed_broker_request_is_a_violation(attempt):
    result = await attempt("sock.send(b'\\xff\\xff garbage')\nimport time\ntime.sleep(5)")
    assert result.outcome.kind is OutcomeKind.VIOLATION
    assert result.outcome.detail == "malformed broker request: unknown op 65535"
