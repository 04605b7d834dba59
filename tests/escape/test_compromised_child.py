"""A module that escaped wasmtime, acted out by Python code in a fully locked-down child.

Each test runs its attempt through the real supervisor, the real fork server
and the real lockdown (tests/escape/compromised_forkserver.py swaps only what
the child does once locked down), and checks that the attempt is stopped and
that the supervisor's result names what happened.
"""

from __future__ import annotations

import os
import struct

import pytest
import trio

from wasijail import OutcomeKind, Policy
from wasijail.results import STATUS_VIOLATION


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
    # reported before any module compiled, so the supervisor names the "module" (the attempt's script) first
    assert result.outcome.detail.endswith(": PermissionError: [Errno 1] Operation not permitted: '/etc/passwd'")


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
        transport.send(sock, wire.PathOpen(0, 1, 0, 0, int(Rights.FD_READ), 0, b"keep.txt"))
        data, fds = transport.receive(sock)
        os.write(fds[0], b"overwritten")
    """, policy)
    assert result.outcome.detail.endswith(".py: OSError: [Errno 9] Bad file descriptor")
    assert (data / "keep.txt").read_text() == "original"


async def test_asking_the_broker_to_open_for_write_on_read_only_preopen(attempt, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "keep.txt").write_text("original")
    policy = Policy().with_preopen(data, "/data", mode="ro")
    result = await attempt("""
        from wasijail.wasi import Rights
        transport.send(sock, wire.PathOpen(0, 1, 8, 0, int(Rights.FD_WRITE), 0, b"keep.txt"))
        data, fds = transport.receive(sock)
        RESULT = (wire.reply_errno(data), fds)
    """, policy)
    assert result.stdout == b"(63, [])"  # EPERM, and no descriptor handed over
    assert (data / "keep.txt").read_text() == "original"


async def test_malformed_broker_request_is_a_violation(attempt):
    result = await attempt("sock.send(b'\\xff\\xff garbage')\nimport time\ntime.sleep(5)")
    assert result.outcome.kind is OutcomeKind.VIOLATION
    assert result.outcome.detail == "malformed broker request: unknown op 65535"


async def test_the_cli_labels_each_violation_once(attempt, capsys):
    """The CLI's line for a filter kill and for a broken protocol: "sandbox violation:" once."""
    from wasijail.cli import _report

    for source, line in (("import os\nos.execv('/bin/sh', ['sh'])", "wasijail: sandbox violation: execve\n"),
                         ("sock.send(b'\\xff\\xff garbage')\nimport time\ntime.sleep(5)",
                          "wasijail: sandbox violation: malformed broker request: unknown op 65535\n")):
        _report(await attempt(source), "attempt.py")
        assert capsys.readouterr().err == line


# -- re-timing: a read-only grant keeps its times ---------------------------------

_OPEN_FOR_READING = """
        import os
        from wasijail.wasi import Rights
        transport.send(sock, wire.PathOpen(0, 1, 0, 0, int(Rights.FD_READ), 0, b"keep.txt"))
        data, fds = transport.receive(sock)
        fd = fds[0]
"""


def _read_only_data(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "keep.txt").write_text("original")
    os.utime(data / "keep.txt", ns=(10**18, 10**18))
    return data, Policy().with_preopen(data, "/data", mode="ro")


async def test_futimens_on_a_donated_read_only_file_is_killed(attempt, tmp_path):
    data, policy = _read_only_data(tmp_path)
    result = await attempt(_OPEN_FOR_READING + "        os.utime(fd, (1, 1))\n", policy)
    assert_violation(result, "utimensat")
    assert (data / "keep.txt").stat().st_mtime_ns == 10**18


async def test_futimens_now_on_a_donated_read_only_file_is_killed(attempt, tmp_path):
    data, policy = _read_only_data(tmp_path)
    result = await attempt(_OPEN_FOR_READING + "        os.utime(fd)\n", policy)  # utimensat(fd, NULL, NULL)
    assert_violation(result, "utimensat")
    assert (data / "keep.txt").stat().st_mtime_ns == 10**18


async def test_broker_refuses_to_retime_a_read_only_grant(attempt, tmp_path):
    data, policy = _read_only_data(tmp_path)
    result = await attempt(_OPEN_FOR_READING + """
        transport.send(sock, wire.FdFilestatSetTimes(1, 1, 0b0101), (fd,))
        data, _ = transport.receive(sock)
        RESULT = wire.reply_errno(data)
    """, policy)
    assert result.stdout == b"76"  # ENOTCAPABLE
    assert (data / "keep.txt").stat().st_mtime_ns == 10**18


async def test_broker_refuses_to_retime_the_callers_stdout(attempt, tmp_path):
    out = tmp_path / "out.txt"
    with open(out, "wb") as f:
        os.utime(out, ns=(10**18, 10**18))
        result = await attempt("""
            transport.send(sock, wire.FdFilestatSetTimes(1, 1, 0b0101), (1,))
            data, _ = transport.receive(sock)
            os.write(2, b"%d" % wire.reply_errno(data))
        """.replace("os.write", "__import__('os').write"), stdout=f.fileno(), capture_stderr=True)
    assert result.stderr == b"76"
    assert out.stat().st_mtime_ns > 10**18  # written by the harness (its RESULT), never set to 1 s


async def test_broker_retimes_a_file_of_a_writable_grant(attempt, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "keep.txt").write_text("original")
    result = await attempt(_OPEN_FOR_READING + """
        transport.send(sock, wire.FdFilestatSetTimes(5, 7, 0b0101), (fd,))
        data, _ = transport.receive(sock)
        RESULT = wire.reply_errno(data)
    """, Policy().with_preopen(data, "/data", mode="rw"))
    assert result.stdout == b"0"
    assert (data / "keep.txt").stat().st_mtime_ns == 7


@pytest.mark.parametrize("fds", ["()", "(fd, fd)"], ids=["no-fd", "two-fds"])
async def test_retime_request_with_the_wrong_descriptors_is_a_violation(attempt, tmp_path, fds):
    data, policy = _read_only_data(tmp_path)
    result = await attempt(_OPEN_FOR_READING + f"""
        transport.send(sock, wire.FdFilestatSetTimes(1, 1, 0b0101), {fds})
        transport.receive(sock)
    """, policy)
    assert result.outcome.kind is OutcomeKind.VIOLATION
    assert "FdFilestatSetTimes with" in result.outcome.detail
    assert (data / "keep.txt").stat().st_mtime_ns == 10**18


# -- protocol abuse: refused at once, whatever the child queued ----------------------

_FLOOD_WITH_STDOUT_COPIES = """
        import array, socket, time
        # One request whose reply it never reads, then messages carrying copies of its
        # stdout: while the socket holds them, the captured stdout cannot end.
        transport.send(sock, wire.PathFilestatGet(0, 0, b"."))
        rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [1, 1, 2]))]
        for _ in range(40):
            try:
                sock.sendmsg([wire.DirSync(0).encode()], rights)
            except OSError:
                break
        time.sleep(3600)
"""


@pytest.mark.parametrize("timeout", [None, 30.0], ids=["no-timeout", "timeout"])
async def test_descriptors_smuggled_to_the_broker_end_the_run_at_once(attempt, tmp_path, timeout):
    policy = Policy().with_preopen(tmp_path, "/tmp", mode="ro")
    if timeout is not None:
        policy = policy.with_limits(timeout=timeout)
    with trio.fail_after(20):  # without the fix: never (no timeout) or after the timeout
        result = await attempt(_FLOOD_WITH_STDOUT_COPIES, policy)
    assert result.outcome.kind is OutcomeKind.VIOLATION, result
    assert result.returncode == STATUS_VIOLATION
    assert "descriptors" in result.outcome.detail
    assert result.usage.wall_time < 10


async def test_an_error_serving_one_child_ends_that_run_alone(attempt, tmp_path, monkeypatch):
    """A host value or a bug the broker did not foresee: that run is a crash, with a result,
    and a run beside it in the same supervisor finishes normally."""
    from wasijail.broker.handlers import Broker

    original = Broker.path_filestat_get

    def flaky(self, req):
        if req.path == b"boom":
            raise struct.error("required argument is not an integer")
        return original(self, req)

    monkeypatch.setattr(Broker, "path_filestat_get", flaky)
    policy = Policy().with_preopen(tmp_path, "/tmp", mode="ro")
    asks = """
        transport.send(sock, wire.PathFilestatGet(0, 0, b"%s"))
        data, _ = transport.receive(sock)
        RESULT = wire.reply_errno(data) if data else "hung up"
    """
    results = {}

    async def one(name):
        results[name] = await attempt(asks % name, policy)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(one, "boom")
        nursery.start_soon(one, ".")
    assert results["boom"].outcome.kind is OutcomeKind.CRASH
    assert "internal error while serving the child: error: required argument" in results["boom"].outcome.detail
    assert results["."].outcome.kind is OutcomeKind.EXIT
    assert results["."].stdout == b"0"
