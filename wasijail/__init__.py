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
    "run": "api", "run_sync": "api", "open_supervisor": "api",
    "AsyncioSupervisor": "aio", "AsyncioRunHandle": "aio", "AsyncioStream": "aio",
    "EngineOptions": "engine", "Killed": "results",
    "Supervisor": "supervisor", "RunSpec": "supervisor",
    "RunHandle": "supervisor", "PIPE": "supervisor",
    "Policy": "policy", "Preopen": "policy", "Limits": "policy", "PolicyError": "policy",
    "RunResult": "results", "Outcome": "results", "OutcomeKind": "results", "Usage": "results",
    "WasijailError": "results", "RunFailed": "results", "GuestExit": "results", "GuestTrap": "results",
    "Timeout": "results", "ResourceLimit": "results", "SandboxViolation": "results",
    "ChildCrash": "results", "ModuleLoadError": "results",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'wasijail' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:  # `X as X`: an explicit re-export, for type checkers
    from .aio import AsyncioRunHandle as AsyncioRunHandle
    from .aio import AsyncioStream as AsyncioStream
    from .aio import AsyncioSupervisor as AsyncioSupervisor
    from .api import open_supervisor as open_supervisor
    from .api import run as run
    from .api import run_sync as run_sync
    from .engine import EngineOptions as EngineOptions
    from .policy import Limits as Limits
    from .policy import Policy as Policy
    from .policy import PolicyError as PolicyError
    from .policy import Preopen as Preopen
    from .results import ChildCrash as ChildCrash
    from .results import GuestExit as GuestExit
    from .results import GuestTrap as GuestTrap
    from .results import Killed as Killed
    from .results import ModuleLoadError as ModuleLoadError
    from .results import Outcome as Outcome
    from .results import OutcomeKind as OutcomeKind
    from .results import ResourceLimit as ResourceLimit
    from .results import RunFailed as RunFailed
    from .results import RunResult as RunResult
    from .results import SandboxViolation as SandboxViolation
    from .results import Timeout as Timeout
    from .results import Usage as Usage
    from .results import WasijailError as WasijailError
    from .supervisor import PIPE as PIPE
    from .supervisor import RunHandle as RunHandle
    from .supervisor import RunSpec as RunSpec
    from .supervisor import Supervisor as Supervisor
