"""Each limit, proven by a module that runs into it, and each ending's typed result."""

from __future__ import annotations

import os
import resource
import time

import pytest

from wasijail import OutcomeKind, Policy, open_supervisor
from wasijail.results import STATUS_LIMIT, STATUS_TRAP

from helpers import program


def limited(**limits) -> Policy:
    return Policy().with_limits(**limits)


@pytest.fixture
async def supervisor():
    async with open_supervisor() as sup:
        yield sup


async def test_memory_grow_past_the_cap_returns_minus_one(supervisor):
    result = await supervisor.run(program("grow.wasm"), policy=limited(memory="256MiB"))
    assert (result.outcome.kind, result.returncode) == (OutcomeKind.EXIT, 0)


async def test_memory_cap_too_small_for_the_module_fails_instantiation(supervisor, tmp_path):
    (tmp_path / "big.wat").write_text('(module (memory (export "memory") 32) (func (export "_start")))')
    result = await supervisor.run(tmp_path / "big.wat", policy=limited(memory="1MiB"))
    assert result.outcome.kind is OutcomeKind.ERROR
    assert result.outcome.detail.startswith("failed to instantiate: ")


@pytest.mark.parametrize("module", ["spin.wasm", "sleep.wasm"], ids=["busy-loop", "poll-oneoff-one-hour"])
async def test_timeout_kills_the_child_even_in_a_blocking_host_call(supervisor, module):
    started = time.monotonic()
    result = await supervisor.run(program(module), policy=limited(timeout="2s"))
    elapsed = time.monotonic() - started
    assert result.outcome.kind is OutcomeKind.TIMEOUT
    assert result.outcome.detail == "timed out after 2 s"
    assert result.returncode == STATUS_TRAP
    assert 2.0 <= elapsed < 4.0  # the 2 s count from the guest's start, after its compile


async def test_fuel_runs_out(supervisor):
    result = await supervisor.run(program("spin.wasm"), policy=limited(fuel=1_000_000))
    assert (result.outcome.kind, result.outcome.detail) == (OutcomeKind.LIMIT, "fuel: all fuel consumed")
    assert result.returncode == STATUS_LIMIT


@pytest.mark.parametrize("limit,seconds", [("500ms", 0.5), ("1s", 1.0)],
                         ids=["watchdog-for-fractions", "rlimit-for-whole-seconds"])
async def test_cpu_time_limit_stops_a_busy_loop(supervisor, limit, seconds):
    result = await supervisor.run(program("spin.wasm"), policy=limited(cpu_time=limit, timeout="20s"))
    assert result.outcome.kind is OutcomeKind.LIMIT
    assert result.outcome.detail == f"cpu_time: more than {seconds:g} s of CPU"
    assert result.returncode == STATUS_LIMIT
    assert seconds * 0.9 <= result.usage.cpu_time < seconds + 2  # the kernel counts CPU in ticks


async def test_output_cap_stops_a_flood(supervisor):
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = await supervisor.run(program("flood.wasm"), policy=limited(output="1MiB"), capture_stdout=True)
    assert result.outcome.kind is OutcomeKind.LIMIT
    assert result.outcome.detail == "output: stdout exceeded 1048576 bytes"
    assert result.returncode == STATUS_LIMIT
    assert result.stdout == b"y" * (1 << 20)
    # The supervisor kept at most the cap, not the 2 GiB the module tried to write.
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
    assert grown_kib < 64 * 1024


async def test_open_files_limit(supervisor, tmp_path):
    (tmp_path / "f").write_text("x")
    policy = limited(open_files=16).with_preopen(tmp_path, "/d")
    result = await supervisor.run(program("fdhog.wasm"), ["/d/f"], policy=policy, capture_stdout=True)
    # 16 descriptors: stdio and the preopen take 4, so 12 opens succeed.
    # wasi-libc words EMFILE as "No file descriptors available".
    assert result.stdout == b"opened 12\nfailed: No file descriptors available\n"


async def test_file_size_limit(supervisor, tmp_path):
    policy = limited(file_size="1MiB").with_preopen(tmp_path, "/d")
    result = await supervisor.run(program("filefill.wasm"), ["/d/out", str(4 << 20)], policy=policy,
                                  capture_stdout=True)
    assert result.stdout == b"wrote 1048576\nfailed: File too large\n"
    assert result.returncode == 1
    assert (tmp_path / "out").stat().st_size == 1 << 20


async def test_module_size_limit(supervisor):
    from wasijail import ModuleLoadError

    result = await supervisor.run(program("demo.wasm"), policy=limited(module_size=1000))
    assert result.outcome.kind is OutcomeKind.ERROR
    assert result.outcome.detail.endswith("exceeds the module size limit of 1000")
    with pytest.raises(ModuleLoadError, match="exceeds the module size limit of 1000"):
        await supervisor.run(program("demo.wasm"), policy=limited(module_size=1000), check=True)


async def test_compile_deadline(supervisor, tmp_path):
    functions = "".join(f"(func $f{i} (result i32) (i32.add (i32.const {i}) (i32.const 1)))" for i in range(20000))
    (tmp_path / "huge.wat").write_text(f'(module (memory (export "memory") 1) {functions} (func (export "_start")))')
    result = await supervisor.run(tmp_path / "huge.wat", policy=limited(compile_timeout="1ms"))
    assert result.outcome.kind is OutcomeKind.LIMIT
    assert result.outcome.detail == "compile_timeout: compiling took longer than 0.001 s"


async def test_compile_time_is_neither_cpu_time_nor_timeout(supervisor, tmp_path):
    """A module whose compile takes more CPU than the guest's cpu_time, and more wall time than
    its timeout, runs: both count from the moment guest code starts (issue 12)."""
    functions = ["(func $f0 (param i32) (result i32) (local.get 0))"]
    functions += [f"(func $f{i} (param i32) (result i32) (i32.add (i32.mul (local.get 0) (i32.const {i}))"
                  f" (call $f{i - 1} (i32.const 1))))" for i in range(1, 60000)]
    (tmp_path / "slow.wat").write_text(
        f'(module (memory (export "memory") 1) {"".join(functions)} (func (export "_start")))')
    started = time.monotonic()
    result = await supervisor.run(tmp_path / "slow.wat",
                                  policy=limited(cpu_time="300ms", timeout="300ms", compile_timeout="120s"))
    assert (result.outcome.kind, result.returncode) == (OutcomeKind.EXIT, 0), result.outcome
    assert result.usage.cpu_time > 0.3 and time.monotonic() - started > 0.3  # the compile alone passed both


async def test_huge_argv_and_env(supervisor):
    args = [f"arg{i:06}-" + "x" * 90 for i in range(20000)]  # 2 MB of argv
    policy = Policy()
    for i in range(2000):
        policy = policy.with_env(f"VAR{i}", "v" * 100)
    result = await supervisor.run(program("env.wasm"), args, policy=policy, capture_stdout=True)
    lines = result.stdout.decode().splitlines()
    assert result.returncode == 0
    assert lines[0] == "argc=20001"
    assert lines[1:3] == ["argv[0]=env.wasm", f"argv[1]={args[0]}"]
    assert lines[20002] == "env:VAR0=" + "v" * 100
    assert len(lines) == 1 + 20001 + 2000


# --- every ending has its typed result ---------------------------------------------


async def test_trap_in_start_section(supervisor):
    result = await supervisor.run(program("start_trap.wasm"))
    assert (result.outcome.kind, result.returncode) == (OutcomeKind.TRAP, STATUS_TRAP)
    assert "wasm trap: wasm `unreachable` instruction executed" in result.outcome.detail


async def test_no_memory_export(supervisor):
    result = await supervisor.run(program("nomem.wasm"))
    assert (result.outcome.kind, result.outcome.detail) == (
        OutcomeKind.ERROR, "the module calls WASI but exports no `memory`")


async def test_start_with_parameters(supervisor):
    result = await supervisor.run(program("start_params.wasm"))
    assert (result.outcome.kind, result.outcome.detail) == (
        OutcomeKind.ERROR, "`_start` must take no parameters and return nothing")


async def test_component_instead_of_module(supervisor, tmp_path):
    (tmp_path / "c.wasm").write_bytes(b"\0asm\x0d\x00\x01\x00")
    result = await supervisor.run(tmp_path / "c.wasm")
    assert result.outcome.kind is OutcomeKind.ERROR
    assert "component" in result.outcome.detail


async def test_child_killed_by_a_signal_is_a_crash(supervisor):
    import trio

    async with trio.open_nursery() as nursery:
        handle = await nursery.start(supervisor.run, program("spin.wasm"))
        os.kill(handle.pid, 9)
        result = await handle.wait()
    assert (result.outcome.kind, result.outcome.signal, result.returncode) == (OutcomeKind.CRASH, 9, 137)
    assert result.outcome.detail == "child killed by SIGKILL"
