"""wasijail under asyncio: the trio supervisor runs as a trio guest on the asyncio loop.

One trio run per asyncio event loop, started in guest mode
(`trio.lowlevel.start_guest_run`) on first use, hosts every supervisor and
run that asyncio code asks for; asyncio awaits their results through
futures. Cancelling the asyncio task cancels the trio side (the run's child is
killed and reaped) before the cancellation reaches the caller. The guest run
ends when the loop shuts down its async generators (`asyncio.run` does).
"""

from __future__ import annotations

import asyncio
import functools
import os
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Awaitable, Callable, Sequence, TypeVar, final

import trio

from .policy import Policy
from .results import RunResult
from .supervisor import OutputArg, RunHandle, StdinArg, Supervisor, check_run_arguments, open_supervisor

T = TypeVar("T")

__all__ = ["in_asyncio", "AsyncioSupervisor", "AsyncioRunHandle", "AsyncioStream", "open_asyncio_supervisor"]


def in_asyncio() -> bool:
    """Whether the calling code runs in an asyncio task (not in trio)."""
    import sniffio

    try:
        return sniffio.current_async_library() == "asyncio"
    except sniffio.AsyncLibraryNotFoundError:
        return False


_bridges: dict[asyncio.AbstractEventLoop, _Bridge] = {}


@final
class _Bridge:
    """A trio guest run on one asyncio loop, with a nursery that asyncio code hands work to."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.ready: asyncio.Future[None] = loop.create_future()
        self.finished: asyncio.Future[None] = loop.create_future()
        self.nursery: trio.Nursery | None = None
        self.token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        trio.lowlevel.start_guest_run(self._main, run_sync_soon_threadsafe=loop.call_soon_threadsafe,
                                      done_callback=self._done, host_uses_signal_set_wakeup_fd=True)

    async def _main(self) -> None:
        self._stop = trio.Event()
        async with trio.open_nursery() as nursery:
            self.nursery, self.token = nursery, trio.lowlevel.current_trio_token()
            self.ready.set_result(None)
            await self._stop.wait()
            nursery.cancel_scope.cancel()

    def _done(self, outcome: Any) -> None:
        _bridges.pop(self.loop, None)
        if not self.finished.done():
            self.finished.set_result(None)
        if not self.ready.done():  # it failed before it started
            self.ready.set_exception(RuntimeError(f"the trio guest run ended: {outcome!r}"))

    def stop(self) -> None:
        if self._stop is not None and self.token is not None:
            self.token.run_sync_soon(self._stop.set)

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Run ``fn()`` as a trio task; cancelling the caller cancels it and waits for it to end."""
        await self.ready
        assert self.nursery is not None and self.token is not None
        result: asyncio.Future[T] = self.loop.create_future()
        ended: asyncio.Future[None] = self.loop.create_future()
        scope = trio.CancelScope()

        async def task() -> None:
            try:
                with scope:
                    value = await fn()
                    if not result.done():
                        result.set_result(value)
            except Exception as exc:
                if not result.done():
                    result.set_exception(exc)
            finally:
                if not result.done():
                    result.cancel()
                ended.set_result(None)

        self.token.run_sync_soon(self.nursery.start_soon, task)
        try:
            return await result
        except asyncio.CancelledError:
            self.token.run_sync_soon(scope.cancel)
            await asyncio.shield(ended)  # the child is killed and reaped before the caller goes on
            raise


async def _bridge() -> _Bridge:
    loop = asyncio.get_running_loop()
    bridge = _bridges.get(loop)
    if bridge is None:
        bridge = _bridges[loop] = _Bridge(loop)
        # The loop's shutdown of async generators (asyncio.run does it) ends the guest run cleanly.
        lifetime = _lifetime(bridge)
        await lifetime.__anext__()
        bridge.lifetime = lifetime  # type: ignore[attr-defined]  # kept alive until the loop shuts down
    return bridge


async def _lifetime(bridge: _Bridge) -> AsyncIterator[None]:
    try:
        yield
    finally:
        bridge.stop()
        await asyncio.shield(bridge.finished)


@final
class AsyncioStream:
    """A pipe end of an asyncio-side run: ``send_all``/``receive_some``/``aclose``, async iteration."""

    def __init__(self, bridge: _Bridge, stream: trio.lowlevel.FdStream) -> None:
        self._bridge, self._stream = bridge, stream

    async def send_all(self, data: bytes) -> None:
        """Write all of ``data``."""
        await self._bridge.call(functools.partial(self._stream.send_all, data))

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Read what is there (b"" at the end)."""
        return await self._bridge.call(functools.partial(self._stream.receive_some, max_bytes))

    async def aclose(self) -> None:
        """Close this end (for stdin: the module reads end-of-file)."""
        await self._bridge.call(self._stream.aclose)

    def __aiter__(self) -> AsyncioStream:
        return self

    async def __anext__(self) -> bytes:
        chunk = await self.receive_some()
        if not chunk:
            raise StopAsyncIteration
        return chunk


@final
class AsyncioRunHandle:
    """A live run under asyncio (from ``AsyncioSupervisor.start``): as RunHandle, with asyncio streams."""

    def __init__(self, bridge: _Bridge, handle: RunHandle, ended: asyncio.Future[RunResult]) -> None:
        self._bridge, self._handle, self._ended = bridge, handle, ended
        self.pid: int | None = handle.pid
        self.stdin = AsyncioStream(bridge, handle.stdin) if handle.stdin is not None else None
        self.stdout = AsyncioStream(bridge, handle.stdout) if handle.stdout is not None else None
        self.stderr = AsyncioStream(bridge, handle.stderr) if handle.stderr is not None else None

    async def send_stdin(self, data: bytes) -> None:
        """Write all of ``data`` to the module's stdin."""
        if self.stdin is None:
            await self._handle.send_stdin(data)  # raises the same error as under trio
        else:
            await self.stdin.send_all(data)

    def kill(self) -> None:
        """Stop the run now; it ends with outcome ``killed``."""
        assert self._bridge.token is not None
        self._bridge.token.run_sync_soon(self._handle.kill)

    async def wait(self) -> RunResult:
        """Wait for the run to end and return its RunResult (raises what the run raised, e.g. check=True)."""
        return await asyncio.shield(self._ended)


@final
class AsyncioSupervisor:
    """A Supervisor for asyncio code: ``await sup.run(...)``, ``await sup.start(...)`` for a live run."""

    def __init__(self, bridge: _Bridge, supervisor: Supervisor) -> None:
        self._bridge, self._supervisor = bridge, supervisor

    async def run(self, module: str | os.PathLike[str], args: Sequence[str] = (), *, policy: Policy | None = None,
                  stdin: StdinArg = b"", stdout: OutputArg = None, stderr: OutputArg = None,
                  capture_stdout: bool = False, capture_stderr: bool = False, check: bool = False) -> RunResult:
        """As Supervisor.run."""
        check_run_arguments(module, args, policy, stdin, stdout, stderr, capture_stdout, capture_stderr, check,
                            started=False)
        return await self._bridge.call(functools.partial(
            self._supervisor.run, module, args, policy=policy, stdin=stdin, stdout=stdout, stderr=stderr,
            capture_stdout=capture_stdout, capture_stderr=capture_stderr, check=check))

    async def start(self, module: str | os.PathLike[str], args: Sequence[str] = (), *,
                    policy: Policy | None = None, stdin: StdinArg = b"", stdout: OutputArg = None,
                    stderr: OutputArg = None, capture_stdout: bool = False, capture_stderr: bool = False,
                    check: bool = False) -> AsyncioRunHandle:
        """Start a run and hand back its AsyncioRunHandle at once (``nursery.start(sup.run, ...)`` under trio)."""
        check_run_arguments(module, args, policy, stdin, stdout, stderr, capture_stdout, capture_stderr, check,
                            started=True)
        bridge = self._bridge
        ended: asyncio.Future[RunResult] = bridge.loop.create_future()

        async def whole_run(task_status: trio.TaskStatus[RunHandle] = trio.TASK_STATUS_IGNORED) -> None:
            try:
                result = await self._supervisor.run(
                    module, args, policy=policy, stdin=stdin, stdout=stdout, stderr=stderr,
                    capture_stdout=capture_stdout, capture_stderr=capture_stderr, check=check,
                    task_status=task_status)
                ended.set_result(result)
            except Exception as exc:  # kept for wait(): the bridge's nursery must not see it
                ended.set_exception(exc)
            finally:
                if not ended.done():
                    ended.cancel()

        async def started() -> RunHandle:
            assert bridge.nursery is not None
            handle: RunHandle = await bridge.nursery.start(whole_run)
            return handle

        return AsyncioRunHandle(bridge, await bridge.call(started), ended)


@asynccontextmanager
async def open_asyncio_supervisor(**kwargs: Any) -> AsyncIterator[AsyncioSupervisor]:
    """`open_supervisor` for asyncio code: the supervisor lives in the loop's trio guest run."""
    bridge = await _bridge()
    opened: asyncio.Future[Supervisor] = bridge.loop.create_future()
    closing = trio.Event()

    async def hold() -> None:
        async with open_supervisor(**kwargs) as supervisor:
            opened.set_result(supervisor)
            await closing.wait()

    holder = asyncio.ensure_future(bridge.call(hold))
    try:
        waiting: set[asyncio.Future[Any]] = {opened, holder}
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if not opened.done():
            await holder  # it ended before the supervisor opened: raises why
            raise RuntimeError("the supervisor ended before it opened")
        supervisor = opened.result()
    except BaseException:
        holder.cancel()
        raise
    try:
        yield AsyncioSupervisor(bridge, supervisor)
    finally:
        assert bridge.token is not None
        bridge.token.run_sync_soon(closing.set)
        await holder


async def run(module: str | os.PathLike[str], args: Sequence[str], **kwargs: Any) -> RunResult:
    """`wasijail.run` under asyncio: a supervisor of its own in the loop's trio guest run."""
    async with open_asyncio_supervisor() as supervisor:
        return await supervisor.run(module, args, **kwargs)
