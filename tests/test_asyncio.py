"""The embedding API under asyncio: the trio supervisor as a trio guest on the asyncio loop.

Each test is a plain function running `asyncio.run`, so the asyncio loop (not
pytest-trio's) drives everything; tests/test_api.py runs the same calls under trio.
"""

from __future__ import annotations

import asyncio

import pytest

import wasijail
from wasijail import AsyncioSupervisor, Killed, OutcomeKind

from helpers import program


def test_run_under_asyncio():
    async def main() -> wasijail.RunResult:
        return await wasijail.run(program("demo_p1.wasm"), capture_stdout=True)

    result = asyncio.run(main())
    assert (result.returncode, result.stdout, result.outcome.kind) == (0, b"hello world\n", OutcomeKind.EXIT)


def test_open_supervisor_and_live_handles_under_asyncio():
    async def main() -> list[object]:
        seen: list[object] = []
        async with wasijail.open_supervisor(max_parallel=2) as sup:
            assert isinstance(sup, AsyncioSupervisor)
            results = await asyncio.gather(*(sup.run(program(n)) for n in ("exit7.wasm", "demo_p1.wasm")))
            seen.append(sorted(r.returncode for r in results))
            handle = await sup.start(program("cat.wasm"))
            await handle.send_stdin(b"hello\n")
            assert handle.stdin is not None and handle.stdout is not None
            await handle.stdin.aclose()
            seen.append(b"".join([chunk async for chunk in handle.stdout]))
            seen.append((await handle.wait()).returncode)
            spinning = await sup.start(program("spin.wasm"))
            spinning.kill()
            killed = await spinning.wait()
            seen.append(killed.outcome.kind)
            with pytest.raises(Killed):
                killed.check_returncode()
        return seen

    assert asyncio.run(main()) == [[0, 7], b"hello\n", 0, OutcomeKind.KILLED]


def test_cancelling_an_asyncio_task_kills_the_child():
    async def main() -> int:
        async with wasijail.open_supervisor() as sup:
            assert isinstance(sup, AsyncioSupervisor)
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(sup.run(program("spin.wasm")), 0.5)
            return sup._supervisor.live_children  # reaped before the cancellation reached us

    assert asyncio.run(main()) == 0


def test_wrong_arguments_raise_under_asyncio_too():
    async def main() -> None:
        with pytest.raises(TypeError, match="args must be a sequence of str"):
            await wasijail.run(program("exit7.wasm"), "hello")  # type: ignore[arg-type]

    asyncio.run(main())


def test_module_errors_under_asyncio(tmp_path):
    async def main() -> None:
        with pytest.raises(wasijail.ModuleLoadError):
            await wasijail.run(tmp_path / "missing.wasm", check=True)

    asyncio.run(main())
