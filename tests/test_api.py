"""The trio-native embedding API: run, live handles, shared supervisors, cancellation."""

from __future__ import annotations

import functools
import os

import pytest
import trio
import trio.testing

import wasijail
from wasijail import GuestExit, GuestTrap, OutcomeKind, Policy, open_supervisor

from helpers import alive, program


async def test_run_and_capture():
    result = await wasijail.run(program("demo_p1.wasm"), capture_stdout=True, capture_stderr=True)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"hello world\n", b"")
    assert result.outcome.kind is OutcomeKind.EXIT
    assert result.usage.bytes_written == 12
    assert result.usage.wall_time > 0 and result.usage.peak_memory > 0


async def test_uncaptured_streams_are_none():
    with open(os.devnull, "wb") as null:
        result = await wasijail.run(program("demo_p1.wasm"), stdout=null.fileno())
    assert (result.stdout, result.stderr) == (None, None)


async def test_stdin_as_bytes():
    data = bytes(range(256)) * 4096
    result = await wasijail.run(program("cat.wasm"), stdin=data, capture_stdout=True)
    assert result.stdout == data
    assert result.usage.bytes_read == len(data)


async def test_stdin_as_a_stream():
    send, receive = trio.testing.memory_stream_one_way_pair()

    async def producer():
        for i in range(50):
            await send.send_all(f"line {i}\n".encode())
        await send.aclose()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(producer)
        result = await wasijail.run(program("cat.wasm"), stdin=receive, capture_stdout=True)
    assert result.stdout == b"".join(f"line {i}\n".encode() for i in range(50))


async def test_streaming_output_and_send_stdin():
    async with open_supervisor() as sup, trio.open_nursery() as nursery:
        handle = await nursery.start(sup.run, program("cat.wasm"))
        await handle.send_stdin(b"first\n")
        got = b""
        async for chunk in handle.stdout:
            got += chunk
            if got.endswith(b"first\n"):
                break
        await handle.send_stdin(b"second\n")
        await handle.stdin.aclose()
        async for chunk in handle.stdout:
            got += chunk
        result = await handle.wait()
    assert got == b"first\nsecond\n"
    assert result.returncode == 0


async def test_output_left_in_a_pipe_when_the_run_ends_is_still_read():
    # The caller's PIPE ends are its own once handed over: a run that ends before they
    # are read (here: waited for first) must not close them under the reader.
    async with open_supervisor() as sup, trio.open_nursery() as nursery:
        handle = await nursery.start(functools.partial(sup.run, program("cat.wasm"), stdin=PIPE,
                                                       stdout=PIPE, stderr=PIPE))
        await handle.send_stdin(b"kept\n")
        await handle.stdin.aclose()
        result = await handle.wait()
        got = b"".join([chunk async for chunk in handle.stdout])
        assert b"".join([chunk async for chunk in handle.stderr]) == b""
        for stream in (handle.stdout, handle.stderr):
            await stream.aclose()
    assert (got, result.returncode) == (b"kept\n", 0)


async def test_check_raises_typed_errors():
    with pytest.raises(GuestExit) as exit_info:
        await wasijail.run(program("exit7.wasm"), check=True)
    assert exit_info.value.result.returncode == 7
    with pytest.raises(GuestTrap, match="module trapped: wasm trap: wasm `unreachable` instruction executed"):
        await wasijail.run(program("trap.wasm"), check=True, capture_stderr=True)
    ok = await wasijail.run(program("demo_p1.wasm"), check=True, capture_stdout=True)
    assert ok.returncode == 0


async def test_cancellation_kills_and_reaps_the_child():
    async with open_supervisor() as sup:
        with trio.move_on_after(5):
            async with trio.open_nursery() as nursery:
                handle = await nursery.start(sup.run, program("spin.wasm"))
                assert alive(handle.pid)
                nursery.cancel_scope.cancel()
        assert not os.path.exists(f"/proc/{handle.pid}")  # killed and reaped, not a zombie
        # and a plain move_on_after around a run:
        with trio.move_on_after(0.3):
            await sup.run(program("sleep.wasm"))
        assert sup.live_children == 0


async def test_max_parallel_is_never_exceeded():
    peak = 0
    async with open_supervisor(max_parallel=4) as sup:
        async def watch():
            nonlocal peak
            while True:
                peak = max(peak, sup.live_children)
                await trio.sleep(0)

        results = []

        async def one(i):
            results.append(await sup.run(program("exit7.wasm")))

        async with trio.open_nursery() as outer:
            outer.start_soon(watch)
            async with trio.open_nursery() as nursery:
                for i in range(50):
                    nursery.start_soon(one, i)
            outer.cancel_scope.cancel()
    assert len(results) == 50 and {r.returncode for r in results} == {7}
    assert 2 <= peak <= 4  # ran in parallel, never past the limit


async def test_policy_built_in_code(tmp_path):
    (tmp_path / "in.txt").write_text("from code\n")
    policy = Policy.default().with_preopen(tmp_path, "/data", mode="ro").with_limits(timeout="10s")
    result = await wasijail.run(program("openpath.wasm"), ["/data/in.txt", "r"], policy=policy,
                                capture_stdout=True)
    assert result.stdout == b"from code\n"


def test_run_sync():
    result = wasijail.run_sync(program("exit7.wasm"))
    assert result.returncode == 7


# --- argument checks, module problems, kill, args, check_returncode ---

from wasijail import Killed, ModuleLoadError, PIPE, RunFailed  # noqa: E402


@pytest.mark.parametrize("call,error,message", [
    (lambda: wasijail.run(program("exit7.wasm"), "hello"), TypeError, "args must be a sequence of str, not str"),
    (lambda: wasijail.run(program("exit7.wasm"), [1]), TypeError, "not one holding int"),
    (lambda: wasijail.run(program("cat.wasm"), stdin="text"), TypeError, "stdin=text.encode()"),
    (lambda: wasijail.run(program("exit7.wasm"), policy="p.toml"), TypeError, "Policy.from_toml(path)"),
    (lambda: wasijail.run(42), TypeError, "module must be a path"),
    (lambda: wasijail.run(program("exit7.wasm"), stdout=1, capture_stdout=True), ValueError,
     "stdout= and capture_stdout=True cannot be given together"),
    (lambda: wasijail.run(program("cat.wasm"), stdin=PIPE), ValueError, "stdin=PIPE is only valid with nursery"),
    (lambda: wasijail.run(program("exit7.wasm"), stdout=PIPE), ValueError, "stdout=PIPE is only valid"),
])
async def test_wrong_arguments_raise_at_the_call(call, error, message):
    with trio.fail_after(5):  # raised at once, never a hang
        with pytest.raises(error) as info:
            await call()
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("make,detail", [
    (lambda d: d / "missing.wasm", "no such file"),
    (lambda d: d, "is a directory"),
    (lambda d: (d / "x.wasm").write_bytes(b"GIF89a") and d / "x.wasm", "bad magic number"),
    (lambda d: (d / "c.wasm").write_bytes(b"\0asm\x0d\x00\x01\x00") and d / "c.wasm", "a WebAssembly component"),
    (lambda d: (d / "i.wat").write_text('(module (import "env" "f" (func)))') and d / "i.wat", "unknown import"),
    (lambda d: (d / "e.wasm").write_bytes(b"") is not None and d / "e.wasm", "empty file"),
])
async def test_every_module_problem_is_an_error_outcome(tmp_path, make, detail):
    module = make(tmp_path)
    result = await wasijail.run(module)
    assert (result.outcome.kind, result.returncode) == (OutcomeKind.ERROR, 1)
    assert detail in result.outcome.detail and str(module) in result.outcome.detail
    with pytest.raises(ModuleLoadError):
        await wasijail.run(module, check=True)
    with pytest.raises(ModuleLoadError):
        result.check_returncode()


async def test_a_missing_module_under_nursery_start_hands_back_an_ended_handle(tmp_path):
    async with trio.open_nursery() as nursery:
        handle = await nursery.start(wasijail.run, tmp_path / "nope.wasm")
        assert handle.pid is None
        assert (await handle.wait()).outcome.kind is OutcomeKind.ERROR


async def test_kill_ends_as_killed():
    async with open_supervisor() as sup:
        async with trio.open_nursery() as nursery:
            handle = await nursery.start(sup.run, program("spin.wasm"))
            handle.kill()
            result = await handle.wait()
    assert (result.outcome.kind, result.returncode, result.outcome.signal) == (OutcomeKind.KILLED, 137, 9)
    with pytest.raises(Killed):
        result.check_returncode()


async def test_result_carries_its_command_and_check_returncode():
    result = await wasijail.run(program("exit7.wasm"), ["a", "b"])
    assert result.args == (str(program("exit7.wasm")), "a", "b")
    with pytest.raises(GuestExit) as info:
        result.check_returncode()
    assert isinstance(info.value, RunFailed) and info.value.result is result
    ok = await wasijail.run(program("demo_p1.wasm"), capture_stdout=True)
    assert ok.check_returncode() is None


async def test_a_missing_parent_layer_is_reported_with_the_result():
    """openat2 missing: paths are still confined (the fallback walk), and the result says it ran without it."""
    from wasijail.broker.resolve import Resolver

    async with open_supervisor(resolver=Resolver(use_openat2=False)) as sup:
        result = await sup.run(program("exit7.wasm"))
    assert [m.split(":")[0] for m in result.sandbox_missing] == ["openat2"]
