"""A compromised child against the limits the parent and the kernel hold for it.

Each attempt runs through the real supervisor, fork server and lockdown
(see conftest.py), as native code that escaped wasmtime would, and each runs
beside a healthy job in the same supervisor, which must finish with its own
output while the abuse goes on.
"""

from __future__ import annotations

import os

import pytest
import trio

from wasijail import OutcomeKind, Policy
from wasijail.sandbox.cgroup import UNPRIVILEGED_UID, child_threads
from wasijail.wasi import Errno, Oflags, Rights

HEALTHY = "import time\ntime.sleep(0.2)\nRESULT = sum(range(1000))"


async def beside_a_healthy_job(attempt, source: str, policy: Policy):
    """Run the abuse and a healthy job at once; return the abuse's result after checking the other."""
    results = {}

    async def run(name, text, pol):
        results[name] = await attempt(text, pol)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run, "abuse", source, policy)
        nursery.start_soon(run, "healthy", HEALTHY, Policy())
    healthy = results["healthy"]
    assert (healthy.outcome.kind, healthy.stdout) == (OutcomeKind.EXIT, b"499500"), healthy
    assert healthy.usage.wall_time < 30  # generous: it waited for nothing the abuse held
    return results["abuse"]


# Start threads until the kernel refuses one: (started, failure).
_THREADS = """
import threading
stop = threading.Event()
started, failure = 0, None
try:
    for _ in range(1000):
        threading.Thread(target=stop.wait, daemon=True).start()
        started += 1
except RuntimeError as exc:
    failure = str(exc)
stop.set()
"""
_THREAD_FLOOD = _THREADS + "RESULT = (started, failure)\n"


async def test_threads_are_capped_in_the_kernel(attempt):
    # A pids cgroup where the host delegates one (this one does: `wasijail doctor`).
    result = await beside_a_healthy_job(attempt, _THREAD_FLOOD, Policy())
    started, failure = eval(result.stdout)
    assert failure == "can't start new thread"
    assert 0 < started < child_threads()


async def test_directory_handles_stop_at_open_files(attempt, tmp_path):
    policy = Policy().with_preopen(tmp_path, "/d").with_limits(open_files=64)
    result = await beside_a_healthy_job(attempt, """
        handles = []
        while len(handles) < 5000:
            request = wire.PathOpen(0, 1, %d, 0, %d, 0, b".")
            transport.send(sock, request)
            data = transport.receive(sock)[0]
            errno = wire.reply_errno(data)
            if errno:
                break
            handles.append(wire.decode_reply(request, wire.OpenReply, data).handle)
        RESULT = (len(handles), errno)
    """ % (Oflags.DIRECTORY, Rights.FD_READDIR), policy)
    # The broker holds at most open_files directories for the child, its preopen included.
    assert eval(result.stdout) == (63, Errno.MFILE)


async def test_files_past_the_limit_are_refused_by_the_broker(attempt, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    policy = Policy().with_preopen(out, "/out").with_limits(files=5, file_size="64KiB", disk="16KiB")
    result = await beside_a_healthy_job(attempt, """
        import os
        errnos = []
        for i in range(20):
            transport.send(sock, wire.PathOpen(0, 0, %d, 0, %d, 0, b"f%%d" %% i))
            data, fds = transport.receive(sock)
            errnos.append(wire.reply_errno(data))
            for fd in fds:
                # Native code writes straight to the donated file: no `disk` count sees it.
                try:
                    while True:
                        os.write(fd, b"x" * 4096)
                except OSError as exc:
                    errnos.append(exc.errno)
                os.close(fd)
        for request in (wire.PathCreateDirectory(0, b"d"), wire.PathSymlink(0, b"f0", b"s")):
            transport.send(sock, request)
            errnos.append(wire.reply_errno(transport.receive(sock)[0]))
        RESULT = errnos
    """ % (Oflags.CREAT, Rights.FD_WRITE), policy)
    errnos = eval(result.stdout)
    import errno as host_errno
    # Five files made, each filled to file_size (EFBIG), then EDQUOT for every other entry.
    assert errnos == [0, host_errno.EFBIG] * 5 + [Errno.DQUOT] * 15 + [Errno.DQUOT] * 2
    entries = sorted(os.listdir(out))
    assert entries == ["f0", "f1", "f2", "f3", "f4"]
    assert all((out / name).stat().st_size == 64 << 10 for name in entries)


# Where no pids cgroup is delegated, RLIMIT_NPROC set inside the child's user
# namespace caps its threads: the kernel counts tasks per user namespace. It
# binds a child whose host uid is not 0 (root's tasks are exempt), which is
# how a supervisor runs without a delegated cgroup; the test process is root
# here, so the child first becomes an unprivileged user, as such a host's would be.
_AS_NOBODY = """
import ctypes
os.setgroups([])
os.setresgid(65534, 65534, 65534)
os.setresuid(65534, 65534, 65534)
ctypes.CDLL(None).prctl(4, 1, 0, 0, 0)  # dumpable again, to write its own uid map
"""

_START_THREADS = _THREADS + 'report("failure", failure)\nreport("started", started)\n'


def test_rlimit_nproc_caps_threads_of_an_unprivileged_child():
    from harness import run_locked

    result = run_locked(_START_THREADS, setup=_AS_NOBODY, threads=8)
    assert result.done, result.explain()
    assert "nproc=8 in the namespace (host uid 65534)" in str(result.lockdown)
    assert result.value("failure") == "can't start new thread"
    assert result.value("started") == 7  # the main thread is the eighth task


def test_rlimit_nproc_does_not_bind_root():
    from harness import run_locked

    result = run_locked(_START_THREADS, threads=8)
    assert "does not bind host uid 0" in str(result.lockdown), result.explain()
    assert result.value("started") == 1000  # which is why the supervisor uses a pids cgroup


@pytest.fixture
def no_pids_cgroup(monkeypatch):
    """A host that delegates no pids cgroup: the supervisor falls back to RLIMIT_NPROC."""
    from wasijail.sandbox.cgroup import CgroupPool

    monkeypatch.setattr(CgroupPool, "open", classmethod(lambda cls, base=None: None))
    monkeypatch.setattr(CgroupPool, "open_v1_pids", classmethod(lambda cls, base=None: None))


async def test_without_a_pids_cgroup_root_children_are_capped_by_rlimit_nproc(no_pids_cgroup, attempt):
    # The supervisor runs as root here: each child becomes host uid 65534 before
    # lockdown, so the RLIMIT_NPROC set in its user namespace binds.
    assert attempt.supervisor.host_uid == (UNPRIVILEGED_UID if os.geteuid() == 0 else -1)
    result = await beside_a_healthy_job(attempt, _THREAD_FLOOD, Policy())
    started, failure = eval(result.stdout)
    assert failure == "can't start new thread"
    assert 0 < started < child_threads()


async def test_a_child_running_as_an_unprivileged_uid_still_runs_real_programs(no_pids_cgroup, tmp_path):
    from helpers import program
    from wasijail import open_supervisor

    (tmp_path / "test.txt").write_text("copied through the broker\n")
    policy = Policy.default().with_preopen(tmp_path, ".")
    async with open_supervisor() as sup:
        result = await sup.run(program("demo.wasm"), ["test.txt", "out.txt"], policy=policy,
                               capture_stdout=True, capture_stderr=True)
    assert (result.returncode, result.stderr) == (0, b"")
    assert (tmp_path / "out.txt").read_text() == "copied through the broker\n"
    assert (tmp_path / "out.txt").stat().st_uid == os.geteuid()  # the broker made it, as before
