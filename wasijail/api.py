"""The embedding API: run modules from trio code, or from plain scripts."""

from __future__ import annotations

import functools
import os
from typing import Sequence

import trio

from .policy import Policy
from .results import RunResult
from .supervisor import open_supervisor


async def run(module: str | os.PathLike, args: Sequence[str] = (), *, policy: Policy | None = None,
              stdin=b"", stdout=None, stderr=None, capture_stdout: bool = False,
              capture_stderr: bool = False, check: bool = False,
              task_status=trio.TASK_STATUS_IGNORED) -> RunResult:
    """Run one module in its own sandboxed child and return its RunResult.

    The same call as `Supervisor.run`, on a supervisor of its own (one fork
    server for this run). To run many modules, share one with
    `open_supervisor()`.

    ::

        result = await wasijail.run("hello.wasm", capture_stdout=True)
        print(result.stdout.decode())
    """
    async with open_supervisor() as supervisor:
        return await supervisor.run(
            module, args, policy=policy, stdin=stdin, stdout=stdout, stderr=stderr,
            capture_stdout=capture_stdout, capture_stderr=capture_stderr, check=check,
            task_status=task_status)


def run_sync(module: str | os.PathLike, args: Sequence[str] = (), **kwargs) -> RunResult:
    """`run` for code that is not async: starts trio, runs the module, returns its result."""
    return trio.run(functools.partial(run, module, args, **kwargs))
