"""The embedding API: run modules from trio code, asyncio code, or plain scripts.

The same calls work under trio and under asyncio: under asyncio the trio
supervisor runs as a trio guest on the asyncio loop (`wasijail.aio`).
"""

from __future__ import annotations

import functools
import os
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Sequence

import trio

from . import supervisor as _supervisor
from .aio import AsyncioSupervisor, in_asyncio, open_asyncio_supervisor
from .cache import ModuleCache
from .sandbox.cgroup import CgroupPool
from .launcher import Launcher
from .policy import Policy
from .results import RunResult
from .supervisor import OutputArg, RunHandle, StdinArg, Supervisor, check_run_arguments

__all__ = ["run", "run_sync", "open_supervisor"]


async def run(module: str | os.PathLike[str], args: Sequence[str] = (), *, policy: Policy | None = None,
              stdin: StdinArg = b"", stdout: OutputArg = None, stderr: OutputArg = None,
              capture_stdout: bool = False, capture_stderr: bool = False, check: bool = False,
              task_status: trio.TaskStatus[RunHandle] = trio.TASK_STATUS_IGNORED) -> RunResult:
    """Run one module in its own sandboxed child and return its RunResult.

    The same call as `Supervisor.run`, on a supervisor of its own (one fork
    server for this run). To run many modules, share one with
    `open_supervisor()`. Works under trio and under asyncio.

    ::

        result = await wasijail.run("hello.wasm", capture_stdout=True)
        print(result.stdout.decode())
    """
    started = task_status is not trio.TASK_STATUS_IGNORED
    check_run_arguments(module, args, policy, stdin, stdout, stderr, capture_stdout, capture_stderr, check,
                        started=started)
    if in_asyncio():
        async with open_asyncio_supervisor() as asupervisor:
            return await asupervisor.run(module, args, policy=policy, stdin=stdin, stdout=stdout, stderr=stderr,
                                         capture_stdout=capture_stdout, capture_stderr=capture_stderr, check=check)
    async with _supervisor.open_supervisor() as supervisor:
        return await supervisor.run(
            module, args, policy=policy, stdin=stdin, stdout=stdout, stderr=stderr,
            capture_stdout=capture_stdout, capture_stderr=capture_stderr, check=check,
            task_status=task_status)


def run_sync(module: str | os.PathLike[str], args: Sequence[str] = (), **kwargs: Any) -> RunResult:
    """`run` for code that is not async: starts trio, runs the module, returns its result."""
    return trio.run(functools.partial(run, module, args, **kwargs))


@asynccontextmanager
async def open_supervisor(*, resolver: Any = None, max_parallel: int | None = None,
                          cache: ModuleCache | str | os.PathLike[str] | None = None,
                          cgroups: CgroupPool | None = None,
                          launcher: Launcher | None = None) -> AsyncIterator[Supervisor | AsyncioSupervisor]:
    """Start a fork server and yield a supervisor that runs modules through it.

    Under trio it yields a `Supervisor` (live runs: ``nursery.start(sup.run,
    ...)``); under asyncio an `AsyncioSupervisor` with the same ``run`` and a
    ``start`` method for live runs. ``max_parallel``: children running at
    once (default: the number of cores); ``cache``: a ModuleCache, or a folder
    for one, to keep compiled modules between runs.
    """
    kwargs: dict[str, Any] = dict(resolver=resolver, max_parallel=max_parallel, cache=cache, cgroups=cgroups,
                                  launcher=launcher)
    if in_asyncio():
        async with open_asyncio_supervisor(**kwargs) as asupervisor:
            yield asupervisor
    else:
        async with _supervisor.open_supervisor(**kwargs) as supervisor:
            yield supervisor
