"""Per-child cgroups: memory caps (cgroup v2) and thread caps (the pids controller).

This machine's cgroup v2 hierarchy has no memory controller (`wasijail doctor`
says so), so most tests give the supervisor a stand-in cgroup tree: a folder
whose `mkdir` creates the control files the kernel would. They check what
wasijail does — the leaves it makes, the caps it writes, the child joining its
leaf before lockdown, and how an out-of-memory kill is reported. The kernel's
enforcement of `pids.max` is tested where this host has a pids hierarchy
(tests/escape/test_compromised_child.py::test_threads_are_capped_in_the_kernel).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest
import trio

from wasijail import OutcomeKind, Policy, open_supervisor
from wasijail.doctor import probe_limits
from wasijail.sandbox import cgroup
from wasijail.sandbox.cgroup import (
    COMPILE_OVERHEAD_PER_BYTE, PROCESS_OVERHEAD, CgroupPool, child_threads, own_cgroup_dir, own_v1_dir,
)
from wasijail.results import STATUS_LIMIT

from helpers import program

KERNEL_FILES = ("cgroup.procs", "tasks", "cgroup.controllers", "cgroup.subtree_control", "memory.max",
                "memory.swap.max", "memory.events", "pids.max")


class StandInPool(CgroupPool):
    made: list[Path] = []

    def _mkdir(self, path: Path) -> None:
        os.mkdir(path)
        for name in KERNEL_FILES:
            (path / name).write_text("")
        (path / "memory.events").write_text("low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n")
        StandInPool.made.append(path)


@pytest.fixture
def base(tmp_path):
    (tmp_path / "cgroup.controllers").write_text("cpu memory\n")
    (tmp_path / "cgroup.subtree_control").write_text("")
    StandInPool.made = []
    return tmp_path


@pytest.fixture
def no_v1_pids(monkeypatch):
    """The stand-in tree alone: no leaves in this host's real v1 pids hierarchy."""
    monkeypatch.setattr(CgroupPool, "open_v1_pids", classmethod(lambda cls, base=None: None))


def test_pool_enables_memory_for_its_subtree(base):
    pool = StandInPool.open(base)
    assert pool is not None
    assert (base / "cgroup.subtree_control").read_text() == "+memory"
    assert (pool.path / "cgroup.subtree_control").read_text() == "+memory"
    assert pool.path.name == f"wasijail-{os.getpid()}"
    leaf = pool.leaf(100 << 20, None)
    assert (leaf.path / "memory.max").read_text() == str(100 << 20)
    assert (leaf.path / "memory.swap.max").read_text() == "0"
    leaf.close_fd()


def test_no_pool_without_the_memory_or_pids_controller(tmp_path):
    (tmp_path / "cgroup.controllers").write_text("cpu io\n")
    assert StandInPool.open(tmp_path) is None


def test_pool_enables_pids_and_caps_threads(tmp_path):
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids\n")
    (tmp_path / "cgroup.subtree_control").write_text("")
    pool = StandInPool.open(tmp_path)
    assert (pool.has_memory, pool.has_pids) == (True, True)
    assert (pool.path / "cgroup.subtree_control").read_text() == "+memory +pids"
    leaf = pool.leaf(None, child_threads())
    assert (leaf.path / "pids.max").read_text() == str(child_threads())
    assert (leaf.path / "memory.max").read_text() == ""  # no memory limit: no memory cap
    assert not leaf.oom_killed()
    leaf.remove()


async def test_every_child_gets_a_thread_cap_without_a_memory_limit(tmp_path, no_v1_pids):
    (tmp_path / "cgroup.controllers").write_text("pids\n")
    (tmp_path / "cgroup.subtree_control").write_text("")
    StandInPool.made = []
    async with open_supervisor(cgroups=StandInPool.open(tmp_path)) as sup:
        result = await sup.run(program("exit7.wasm"), policy=Policy())
    assert result.returncode == 7
    (leaf,) = [p for p in StandInPool.made if p.name.startswith("child-")]
    assert (leaf / "cgroup.procs").read_text() == "0"
    assert (leaf / "pids.max").read_text() == str(child_threads())


def test_this_host_matches_the_probe():
    layer = cgroup.probe()
    pool = CgroupPool.open()
    try:
        assert (pool is not None and pool.has_memory) == layer.available, layer.detail
    finally:
        if pool is not None:
            pool.close()
    if not layer.available:
        assert layer.detail  # the probe says why
    assert own_cgroup_dir() is None or own_cgroup_dir().is_absolute()


async def test_child_joins_its_leaf_with_the_policy_cap(base, no_v1_pids):
    pool = StandInPool.open(base)
    async with open_supervisor(cgroups=pool) as sup:
        result = await sup.run(program("demo_p1.wasm"), policy=Policy().with_limits(memory="64MiB"),
                               capture_stdout=True)
    assert result.stdout == b"hello world\n"
    (leaf,) = [p for p in StandInPool.made if p.name.startswith("child-")]
    assert (leaf / "cgroup.procs").read_text() == "0"  # the child wrote itself in, before lockdown
    # room for the compiler too: it runs in the same process, before the guest
    size = program("demo_p1.wasm").stat().st_size
    assert (leaf / "memory.max").read_text() == str((64 << 20) + PROCESS_OVERHEAD + COMPILE_OVERHEAD_PER_BYTE * size)


async def test_no_leaf_without_a_memory_limit(base, no_v1_pids):
    pool = StandInPool.open(base)
    async with open_supervisor(cgroups=pool) as sup:
        await sup.run(program("exit7.wasm"), policy=Policy())
    assert [p for p in StandInPool.made if p.name.startswith("child-")] == []


async def test_out_of_memory_kill_is_a_memory_limit(base):
    pool = StandInPool.open(base)
    policy = Policy().with_limits(memory="64MiB")
    async with open_supervisor(cgroups=pool) as sup, trio.open_nursery() as nursery:
        handle = await nursery.start(functools.partial(sup.run, program("spin.wasm"), policy=policy))
        (leaf,) = [p for p in StandInPool.made if p.name.startswith("child-")]
        # What the kernel does to a process past memory.max: count an OOM kill, SIGKILL it.
        (leaf / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
        os.kill(handle.pid, 9)
        result = await handle.wait()
    assert result.outcome.kind is OutcomeKind.LIMIT
    assert result.outcome.detail == (
        f"memory: the child process passed its cgroup cap of "
        f"{(64 << 20) + PROCESS_OVERHEAD + COMPILE_OVERHEAD_PER_BYTE * program('spin.wasm').stat().st_size} bytes")
    assert result.returncode == STATUS_LIMIT


def test_subtrees_of_dead_supervisors_are_swept():
    """A supervisor killed with children running leaves `wasijail-<pid>/child-N`: the next one removes it."""
    import subprocess
    import sys

    base = own_v1_dir("pids")
    if base is None or not os.access(base, os.W_OK):
        # Only the v2 pool can be in use here; doctor says there is no v1 pids hierarchy to sweep.
        assert "v1" not in next(limit for limit in probe_limits() if limit.name == "threads").detail
        return
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    stale = base / f"wasijail-{dead}"
    os.mkdir(stale)
    os.mkdir(stale / "child-1")
    pool = CgroupPool.open_v1_pids()
    try:
        assert not stale.exists()
        assert pool.path.exists()
    finally:
        pool.close()
    assert not pool.path.exists()


def test_an_ended_childs_thread_leaf_is_used_again(tmp_path):
    # Making and removing a cgroup costs the event loop ~1.5 ms per child: an empty leaf that
    # caps threads alone serves the next child, its pids.max written again.
    (tmp_path / "cgroup.controllers").write_text("memory pids\n")
    (tmp_path / "cgroup.subtree_control").write_text("")
    pool = StandInPool.open(tmp_path)
    first = pool.leaf(None, child_threads())
    first.close_fd()
    (first.path / "pids.max").write_text("1")
    first.remove()  # its cgroup.procs lists no process: kept
    again = pool.leaf(None, child_threads())
    assert again.path == first.path and pool.spare == []
    assert (again.path / "pids.max").read_text() == str(child_threads())
    (again.path / "cgroup.procs").write_text("4242\n")  # a process still in it
    again.remove()
    assert pool.spare == []  # not handed to another child
    capped = pool.leaf(100 << 20, child_threads())
    assert capped.path != first.path  # a memory cap has state (its OOM count): a fresh leaf
    capped.remove()
    assert pool.spare == []
    assert pool.leaf(None, None).path not in (first.path, capped.path)


async def test_runs_one_after_another_share_one_real_thread_leaf():
    base = own_v1_dir("pids")
    if base is None or not os.access(base, os.W_OK):
        pytest.skip("no writable v1 pids hierarchy here (the v2 pool is tested with the stand-in)")
    async with open_supervisor() as sup:
        pool = sup.thread_cgroups
        assert pool is not None and pool.v1
        for _ in range(3):
            result = await sup.run(program("exit7.wasm"), policy=Policy())
            assert result.returncode == 7
        leaves = sorted(p.name for p in pool.path.iterdir() if p.is_dir())
        assert leaves == ["child-1"]
        assert (pool.path / "child-1" / "pids.max").read_text().strip() == str(child_threads())
        assert (pool.path / "child-1" / "cgroup.procs").read_text() == ""
    assert not pool.path.exists()


def test_a_child_joins_v1_by_its_thread_and_v2_by_its_process(tmp_path):
    # v1: `tasks` (no global lock: 0.04 ms against 7-25 ms for `cgroup.procs` here); v2
    # refuses thread moves between domains.
    (tmp_path / "cgroup.controllers").write_text("pids\n")
    (tmp_path / "cgroup.subtree_control").write_text("")
    v2 = StandInPool.open(tmp_path)
    v1 = StandInPool(tmp_path / "v1", frozenset({"pids"}), v1=True)
    os.mkdir(tmp_path / "v1")
    v1._mkdir(v1.path)
    for pool, join in ((v2, "cgroup.procs"), (v1, "tasks")):
        leaf = pool.leaf(None, child_threads())
        assert os.readlink(f"/proc/self/fd/{leaf.procs_fd}") == str(leaf.path / join)
        leaf.close_fd()


async def test_a_v1_leaf_holds_every_thread_of_its_child():
    # On v1 a child joins through `tasks` (its own thread, no global lock): the process's
    # threads, the interpreter's and those wasmtime starts later, must all be in the leaf.
    base = own_v1_dir("pids")
    if base is None or not os.access(base, os.W_OK):
        pytest.skip("no writable v1 pids hierarchy here (the v2 pool is tested with the stand-in)")
    async with open_supervisor() as sup, trio.open_nursery() as nursery:
        pool = sup.thread_cgroups
        assert pool is not None and pool.v1
        handle = await nursery.start(functools.partial(sup.run, program("spin.wasm"), policy=Policy()))
        status = Path(f"/proc/{handle.pid}/status")
        while "Seccomp:\t2" not in status.read_text():  # locked down: past its join, running the guest
            await trio.sleep(0.01)
        tasks = sorted(os.listdir(f"/proc/{handle.pid}/task"))
        leaf = f"/{pool.path.relative_to(base)}/child-1"
        for tid in tasks:
            lines = Path(f"/proc/{handle.pid}/task/{tid}/cgroup").read_text().splitlines()
            assert f"pids:{leaf}" in [line.split(":", 1)[1] for line in lines], (tid, lines)
        assert sorted((pool.path / "child-1" / "tasks").read_text().split()) == tasks
        assert (pool.path / "child-1" / "cgroup.procs").read_text().split() == [str(handle.pid)]
        handle.kill()
        assert (await handle.wait()).outcome.kind is OutcomeKind.KILLED


def _independent_cgroup_memory() -> bool:
    mount = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if right.startswith("cgroup2 "):
                mount = left.split()[4]
    if mount is None:
        return False
    own = [l[3:] for l in open("/proc/self/cgroup").read().splitlines() if l.startswith("0::")]
    if not own:
        return False
    path = os.path.normpath(f"{mount}/{own[0]}")
    try:
        controllers = Path(path, "cgroup.controllers").read_text().split()
    except OSError:
        controllers = []
    return "memory" in controllers and os.access(path, os.W_OK)


def test_probe_matches_the_kernel():
    layer = cgroup.probe()
    assert layer.name == "cgroup"
    if _independent_cgroup_memory():
        assert layer.available, layer
        assert "memory" in layer.detail
    else:
        assert not layer.available, layer
        # says which part is missing: no v2, no memory controller, or no write access
        assert any(word in layer.detail for word in ("v1", "memory", "writable")), layer
