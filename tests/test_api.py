"""The trio-native embedding API: run, live handles, shared supervisors, cancellation."""

from __future__ import annotations

import os

import pytest
import trio
import trio.testing

import wasijail
from wasijail import GuestExit, OutcomeKind, Policy, Trap, open_supervisor

from helpers import program


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


async def test_check_raises_typed_errors():
    with pytest.raises(GuestExit) as exit_info:
        await wasijail.run(program("exit7.wasm"), check=True)
    assert exit_info.value.result.returncode == 7
    with pytest.raises(Trap, match="module trapped: wasm trap: wasm `unreachable` instruction executed"):
        await wasijail.run(program("trap.wasm"), check=True, capture_stderr=True)
    ok = await wasijail.run(program("demo_p1.wasm"), check=True, capture_stdout=True)
    assert ok.returncode == 0


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


async def test_cancellation_kills_and_reaps_the_child():
    async with open_supervisor() as sup:
        with trio.move_on_after(5):
            async with trio.open_nursery() as nursery:
                handle = await nursery.start(sup.run, program("spin.wasm"))
                assert _alive(handle.pid)
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
