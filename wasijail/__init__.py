"""wasijail: a WASI runtime for untrusted WebAssembly, with an OS-level sandbox.

The public API, re-exported from the private modules that define it::

    import trio, wasijail

    async def main():
        policy = wasijail.Policy.default().with_preopen("data", "/data", mode="ro")
        result = await wasijail.run("tool.wasm", ["/data/in.txt"], policy=policy,
                                    capture_stdout=True)
        print(result.returncode, result.stdout)

    trio.run(main)

Names load on first use, so the child processes, which import parts of this
package, do not pay for the supervisor's imports.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .stdio import fill_closed_stdio

# First thing, in every process that imports wasijail (the CLI, the fork
# server, a program embedding it): a closed 0, 1 or 2 becomes /dev/null, so no
# socket or pipe opened later (ours, or trio's own) can take that number and
# be handed to a guest as its stdio.
fill_closed_stdio()

_EXPORTS = {
    "run": "api", "run_sync": "api",
    "open_supervisor": "supervisor", "Supervisor": "supervisor", "RunSpec": "supervisor",
    "RunHandle": "supervisor", "PIPE": "supervisor",
    "Policy": "policy", "Preopen": "policy", "Limits": "policy", "PolicyError": "policy",
    "RunResult": "results", "Outcome": "results", "OutcomeKind": "results", "Usage": "results",
    "WasijailError": "results", "RunFailed": "results", "GuestExit": "results", "Trap": "results",
    "Timeout": "results", "ResourceLimit": "results", "SandboxViolation": "results",
    "ChildCrash": "results", "ModuleError": "results",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'wasijail' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from .api import run, run_sync
    from .policy import Limits, Policy, PolicyError, Preopen
    from .results import (ChildCrash, GuestExit, ModuleError, Outcome, OutcomeKind, ResourceLimit, RunFailed,
                          RunResult, SandboxViolation, Timeout, Trap, Usage, WasijailError)
    from .supervisor import PIPE, RunHandle, RunSpec, Supervisor, open_supervisor
