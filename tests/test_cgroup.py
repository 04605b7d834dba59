"""Per-child cgroup v2 memory caps.

This machine's cgroup v2 hierarchy has no memory controller (`wasijail doctor`
says so), so these tests give the supervisor a stand-in cgroup tree: a folder
whose `mkdir` creates the control files the kernel would. They check what
wasijail does — the leaves it makes, the caps it writes, the child joining its
leaf before lockdown, and how an out-of-memory kill is reported — not the
kernel's enforcement.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest
import trio

from wasijail import OutcomeKind, Policy, open_supervisor
from wasijail.cgroup import PROCESS_OVERHEAD, CgroupPool, own_cgroup_dir
from wasijail.doctor import probe_layers
from wasijail.results import STATUS_LIMIT

from helpers import program

KERNEL_FILES = ("cgroup.procs", "cgroup.controllers", "cgroup.subtree_control", "memory.max",
                "memory.swap.max", "memory.events")


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
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids\n")
    (tmp_path / "cgroup.subtree_control").write_text("")
    StandInPool.made = []
    return tmp_path


def test_pool_enables_memory_for_its_subtree(base):
    pool = StandInPool.open(base)
    assert pool is not None
    assert (base / "cgroup.subtree_control").read_text() == "+memory"
    assert (pool.path / "cgroup.subtree_control").read_text() == "+memory"
    assert pool.path.name == f"wasijail-{os.getpid()}"
    leaf = pool.leaf(100 << 20)
    assert (leaf.path / "memory.max").read_text() == str(100 << 20)
    assert (leaf.path / "memory.swap.max").read_text() == "0"
    leaf.close_fd()


def test_no_pool_without_the_memory_controller(tmp_path):
    (tmp_path / "cgroup.controllers").write_text("cpu pids\n")
    assert StandInPool.open(tmp_path) is None


def test_this_host_matches_doctor():
    cgroup = next(layer for layer in probe_layers() if layer.name == "cgroup")
    pool = CgroupPool.open()
    try:
        assert (pool is not None) == cgroup.available, cgroup.detail
    finally:
        if pool is not None:
            pool.close()
    if not cgroup.available:
        assert cgroup.detail  # doctor says why
    assert own_cgroup_dir() is None or own_cgroup_dir().is_absolute()


async def test_child_joins_its_leaf_with_the_policy_cap(base):
    pool = StandInPool.open(base)
    async with open_supervisor(cgroups=pool) as sup:
        result = await sup.run(program("demo_p1.wasm"), policy=Policy().with_limits(memory="64MiB"),
                               capture_stdout=True)
    assert result.stdout == b"hello world\n"
    (leaf,) = [p for p in StandInPool.made if p.name.startswith("child-")]
    assert (leaf / "cgroup.procs").read_text() == "0"  # the child wrote itself in, before lockdown
    assert (leaf / "memory.max").read_text() == str((64 << 20) + PROCESS_OVERHEAD)


async def test_no_leaf_without_a_memory_limit(base):
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
        f"memory: the child process passed its cgroup cap of {(64 << 20) + PROCESS_OVERHEAD} bytes")
    assert result.returncode == STATUS_LIMIT
