"""The supervisor's run plumbing: whatever step of a run fails, what it opened is released.

Each test makes one step of `Supervisor._run` fail (a pipe that cannot be
made, a spawn that fails, a start message that cannot be sent, a preopen
broker that cannot be built) and checks that the supervisor holds exactly
the descriptors it held before, that no child is left counted or alive, and
that the next run works.
"""

from __future__ import annotations

import os

import pytest
import trio

import wasijail.supervisor as supervisor_module
from wasijail import Policy, WasijailError, open_supervisor
from wasijail.results import OutcomeKind

from helpers import alive, program


def _fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


class Boom(Exception):
    """The failure injected into one step of a run."""


def _record_spawns(sup, monkeypatch) -> list[int]:
    """The pids of the children the supervisor spawns from now on."""
    spawned: list[int] = []
    real_spawn = sup.launcher.spawn

    async def spawn(*args, **kwargs):
        child = await real_spawn(*args, **kwargs)
        spawned.append(child.pid)
        return child

    monkeypatch.setattr(sup.launcher, "spawn", spawn)
    return spawned


async def _warm(sup) -> set[str]:
    """One full run first, so trio's and the cache's own descriptors exist before we count."""
    result = await sup.run(program("exit7.wasm"), capture_stdout=True, capture_stderr=True)
    assert result.returncode == 7
    return _fds()


async def _after_failure_all_is_released(sup, before: set[str]) -> None:
    assert _fds() == before
    assert sup.live_children == 0
    again = await sup.run(program("exit7.wasm"), capture_stdout=True, capture_stderr=True)
    assert again.returncode == 7  # the supervisor is still whole


async def test_a_pipe_that_cannot_be_made_leaks_none_of_the_earlier_ones(monkeypatch):
    async with open_supervisor() as sup:
        before = await _warm(sup)
        real = os.pipe2
        calls = 0

        def pipe2(flags):
            nonlocal calls
            calls += 1
            if calls == 3:  # stdin's and stdout's pipes exist, stderr's fails
                raise OSError(24, "Too many open files")
            return real(flags)

        monkeypatch.setattr(supervisor_module.os, "pipe2", pipe2)
        with pytest.raises(OSError):
            await sup.run(program("exit7.wasm"), stdin=b"x", capture_stdout=True, capture_stderr=True)
        monkeypatch.setattr(supervisor_module.os, "pipe2", real)
        assert calls == 3
        await _after_failure_all_is_released(sup, before)


async def test_a_failed_spawn_closes_every_end_meant_for_the_child(monkeypatch):
    async with open_supervisor() as sup:
        before = await _warm(sup)

        async def spawn(*args, **kwargs):
            raise Boom()

        monkeypatch.setattr(sup.launcher, "spawn", spawn)
        with pytest.raises(Boom):
            await sup.run(program("exit7.wasm"), stdin=b"in", capture_stdout=True, capture_stderr=True)
        monkeypatch.undo()
        await _after_failure_all_is_released(sup, before)


async def test_a_failure_after_the_spawn_kills_and_reaps_the_child(monkeypatch):
    async with open_supervisor() as sup:
        before = await _warm(sup)
        spawned = _record_spawns(sup, monkeypatch)

        def send(*args, **kwargs):
            raise Boom()

        monkeypatch.setattr(supervisor_module.transport, "send", send)
        with pytest.raises(Boom):
            await sup.run(program("exit7.wasm"), capture_stdout=True, capture_stderr=True)
        monkeypatch.undo()
        assert spawned and not alive(spawned[0])  # killed and reaped before the error reached us
        await _after_failure_all_is_released(sup, before)


async def test_a_run_cancelled_while_it_looks_up_the_cache_starts_no_child(monkeypatch):
    """The cache is looked up before the child is spawned (an artifact to load is mounted by the
    child's lockdown), so a run cancelled there leaves no child and nothing open behind."""
    async with open_supervisor() as sup:
        before = await _warm(sup)
        spawned = _record_spawns(sup, monkeypatch)

        async def lookup(*args, **kwargs):
            await trio.sleep_forever()  # cancelled here, before any child exists

        monkeypatch.setattr(sup, "_cached_artifact", lookup)
        with trio.move_on_after(2) as scope:
            await sup.run(program("exit7.wasm"), capture_stdout=True, capture_stderr=True)
        monkeypatch.undo()
        assert scope.cancelled_caught
        assert spawned == []
        await _after_failure_all_is_released(sup, before)


async def test_a_broker_that_cannot_be_built_closes_the_preopens_it_was_given(monkeypatch, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    policy = Policy().with_preopen(tmp_path / "a", "/a").with_preopen(tmp_path / "b", "/b")
    async with open_supervisor() as sup:
        before = await _warm(sup)

        def broken(*args, **kwargs):
            raise Boom()

        monkeypatch.setattr(supervisor_module, "Broker", broken)
        with pytest.raises(Boom):
            await sup.run(program("exit7.wasm"), policy=policy)
        monkeypatch.undo()
        await _after_failure_all_is_released(sup, before)


async def test_a_missing_preopen_closes_the_ones_opened_before_it(tmp_path):
    (tmp_path / "a").mkdir()
    policy = Policy().with_preopen(tmp_path / "a", "/a").with_preopen(tmp_path / "gone", "/b")
    async with open_supervisor() as sup:
        before = await _warm(sup)
        with pytest.raises(WasijailError, match=r"^preopen .*gone: no such directory$"):
            await sup.run(program("exit7.wasm"), policy=policy)
        await _after_failure_all_is_released(sup, before)


async def test_open_errors_name_the_file_in_one_line(tmp_path):
    async with open_supervisor() as sup:
        missing = await sup.run(tmp_path / "none.wasm")
        folder = await sup.run(tmp_path)
    assert missing.outcome.kind is OutcomeKind.ERROR
    assert missing.outcome.detail == f"{tmp_path / 'none.wasm'}: no such file"
    assert folder.outcome.detail == f"{tmp_path}: is a directory, not a module"
    policy = Policy().with_preopen(program("exit7.wasm"), "/x")
    async with open_supervisor() as sup:
        with pytest.raises(WasijailError, match=r"^preopen .*exit7.wasm: not a directory$"):
            await sup.run(program("exit7.wasm"), policy=policy)
