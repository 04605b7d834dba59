"""Code that uses the embedding API as a typed program would: `mypy --strict` must accept it
(tests/test_typing.py). It is also run, so what it claims is checked at run time too."""

from __future__ import annotations

import asyncio
from pathlib import Path

import trio

import wasijail
from wasijail import (AsyncioSupervisor, ModuleLoadError, Outcome, OutcomeKind, Policy, RunHandle, RunResult,
                      Supervisor, Usage)

PROGRAMS = Path(__file__).parent / "programs"


async def with_trio() -> list[int]:
    policy: Policy = Policy.default().with_preopen(PROGRAMS, "/data", mode="ro").with_limits(timeout="5s")
    result: RunResult = await wasijail.run(PROGRAMS / "demo_p1.wasm", ["x"], policy=policy, stdin=b"",
                                           capture_stdout=True, capture_stderr=True, check=True)
    out: bytes | None = result.stdout
    outcome: Outcome = result.outcome
    usage: Usage = result.usage
    codes = [result.returncode, len(out or b""), int(outcome.kind is OutcomeKind.EXIT), int(usage.cpu_time >= 0)]
    async with wasijail.open_supervisor(max_parallel=2) as sup:
        assert isinstance(sup, Supervisor)
        async with trio.open_nursery() as nursery:
            handle: RunHandle = await nursery.start(sup.run, str(PROGRAMS / "cat.wasm"))
            await handle.send_stdin(b"typed\n")
            assert handle.stdin is not None and handle.stdout is not None
            await handle.stdin.aclose()
            received = b"".join([chunk async for chunk in handle.stdout])
            codes.append(len(received))
            codes.append((await handle.wait()).returncode)
    try:
        await wasijail.run(PROGRAMS / "missing.wasm", check=True)
    except ModuleLoadError as exc:
        codes.append(exc.result.returncode)
    return codes


async def with_asyncio() -> int:
    async with wasijail.open_supervisor() as sup:
        assert isinstance(sup, AsyncioSupervisor)
        handle = await sup.start(PROGRAMS / "exit7.wasm")
        return (await handle.wait()).returncode


def main() -> tuple[list[int], int, int]:
    sync: RunResult = wasijail.run_sync(PROGRAMS / "exit7.wasm")
    return trio.run(with_trio), asyncio.run(with_asyncio()), sync.returncode


if __name__ == "__main__":
    print(main())
