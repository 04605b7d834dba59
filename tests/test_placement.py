"""A brokering child and its broker thread share one CPU; a computing child gets every CPU back."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import trio

from helpers import program
from wasijail import OutcomeKind, Policy, open_supervisor
from wasijail.broker import placement as placement_module
from wasijail.broker.placement import Placement

CPUS = os.sched_getaffinity(0)
needs_two_cpus = pytest.mark.skipif(len(CPUS) < 2, reason="placement needs two CPUs to choose from")


def _on_a_thread(fn):
    """Run fn on a fresh thread (whose CPU mask is its own), and return what it returned."""
    out = []
    thread = threading.Thread(target=lambda: out.append(fn()))
    thread.start()
    thread.join()
    return out[0]


@pytest.fixture
def sleeper():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc.pid
    proc.kill()
    proc.wait()


@needs_two_cpus
def test_pin_puts_the_child_and_the_calling_thread_on_one_cpu_and_release_undoes_it(sleeper):
    placement = Placement()

    def pin_and_look():
        cpu = placement.pin(sleeper)
        seen = (os.sched_getaffinity(sleeper), os.sched_getaffinity(0))
        placement.release(sleeper, cpu)
        return cpu, seen, (os.sched_getaffinity(sleeper), os.sched_getaffinity(0))

    cpu, pinned, released = _on_a_thread(pin_and_look)
    assert pinned == ({cpu}, {cpu})
    assert released == (CPUS, CPUS)
    assert set(placement.pairs().values()) == {0}
    assert os.sched_getaffinity(0) == CPUS  # the test's own thread was never touched


@needs_two_cpus
def test_parallel_pairs_spread_over_the_cpus(sleeper):
    placement = Placement()
    cpus = _on_a_thread(lambda: [placement.pin(sleeper) for _ in range(len(CPUS))])
    assert sorted(cpus) == sorted(CPUS)  # each on the least-used CPU: one pair per CPU
    assert set(placement.pairs().values()) == {1}


@needs_two_cpus
def test_a_pair_moves_when_its_cpu_holds_two_more_than_another(sleeper):
    # Three jobs on two CPUs, then the lone one ends: one of the two sharing a CPU moves.
    a, b = sorted(CPUS)[:2]
    placement = Placement({a, b})

    def scenario():
        first, second, third = (placement.pin(sleeper) for _ in range(3))
        assert (first, second, third) == (a, b, a)
        assert placement.rebalance(sleeper, third) == a  # 2 against 1: stays
        placement.release(None, second)
        moved = placement.rebalance(sleeper, third)
        return moved, placement.pairs(), os.sched_getaffinity(sleeper), os.sched_getaffinity(0)

    assert _on_a_thread(scenario) == (b, {a: 1, b: 1}, {b}, {b})


def test_a_gone_child_is_not_pinned_and_nothing_is_counted():
    placement = Placement()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout
    assert _on_a_thread(lambda: (placement.pin(int(gone)), os.sched_getaffinity(0))) == (None, CPUS)
    assert set(placement.pairs().values()) == {0}


def _broker_threads() -> list[set[int]]:
    masks = []
    for tid in os.listdir("/proc/self/task"):
        try:
            if Path(f"/proc/self/task/{tid}/comm").read_text().strip() == "wasijail-broker":
                masks.append(os.sched_getaffinity(int(tid)))
        except OSError:
            pass  # a thread that ended meanwhile
    return masks


@needs_two_cpus
async def test_a_brokering_child_shares_its_broker_threads_cpu(tmp_path):
    for i in range(200):
        (tmp_path / f"f{i}").touch()
    policy = Policy().with_preopen(tmp_path, "/d", mode="ro")
    async with open_supervisor(max_parallel=2) as sup, trio.open_nursery() as nursery:
        handles = [await nursery.start(functools.partial(
            sup.run, program("readdir_loop.wasm"), ["/d", "30"], policy=policy, capture_stdout=True))
            for _ in range(2)]
        with trio.fail_after(20):
            while True:
                children = [os.sched_getaffinity(handle.pid) for handle in handles]
                if all(len(mask) == 1 for mask in children):
                    break
                await trio.sleep(0.01)
        assert children[0] != children[1]  # two pairs, two CPUs
        assert sorted(map(sorted, _broker_threads())) == sorted(map(sorted, children))
        for handle in handles:
            handle.kill()
    assert [(await handle.wait()).outcome.kind for handle in handles] == [OutcomeKind.KILLED] * 2
    assert set(sup.placement.pairs().values()) == {0}


@needs_two_cpus
async def test_a_child_that_stops_brokering_gets_every_cpu_back(monkeypatch):
    calls = []
    pin, release = Placement.pin, Placement.release
    monkeypatch.setattr(Placement, "pin", lambda self, pid: calls.append(("pin", pid)) or pin(self, pid))
    monkeypatch.setattr(Placement, "release",
                        lambda self, pid, cpu: calls.append(("release", pid)) or release(self, pid, cpu))
    async with open_supervisor() as sup, trio.open_nursery() as nursery:
        handle = await nursery.start(functools.partial(sup.run, program("spin.wasm"), policy=Policy()))
        with trio.fail_after(20):
            while ("release", handle.pid) not in calls:  # pinned once compiled, then idle: let go
                await trio.sleep(placement_module.IDLE)
        assert calls[0] == ("pin", handle.pid)
        assert os.sched_getaffinity(handle.pid) == CPUS
        handle.kill()
    assert (await handle.wait()).outcome.kind is OutcomeKind.KILLED
