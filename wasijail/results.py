"""How a run ends: typed outcomes, the RunResult, and wasijail's exceptions."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import final

__all__ = ["OutcomeKind", "Outcome", "Usage", "RunResult", "WasijailError", "RunFailed",
           "GuestExit", "GuestTrap", "Timeout", "ResourceLimit", "SandboxViolation", "ChildCrash", "Killed",
           "ModuleLoadError", "error_for", "describe"]


class OutcomeKind(str, enum.Enum):
    """How a run ended; the value is the name used in batch results (``"exit"``, ``"trap"``...)."""

    EXIT = "exit"  # the module exited (returned from _start or called proc_exit)
    TRAP = "trap"  # a wasm trap, with its backtrace
    TIMEOUT = "timeout"  # the wall-clock deadline passed; the child was killed
    LIMIT = "limit"  # a resource limit was hit (which one is in `detail`)
    VIOLATION = "violation"  # the child broke the sandbox or the broker protocol
    CRASH = "crash"  # the child died of a signal wasijail did not send
    KILLED = "killed"  # the caller stopped the run with RunHandle.kill()
    ERROR = "error"  # the module could not be read, loaded, linked or started


# Exit statuses the CLI uses, documented in the README.
STATUS_TRAP = 134  # as wasmtime: 128 + SIGABRT
STATUS_LIMIT = 134  # fuel, CPU time, output, compile deadline: wasmtime reports these as traps too
STATUS_VIOLATION = 159  # 128 + SIGSYS
STATUS_ERROR = 1
STATUS_USAGE = 2
STATUS_KILLED = 128 + 9  # SIGKILL, as a shell reports it
STATUS_INTERRUPTED = 128 + 2  # the CLI stopped by Ctrl-C (SIGINT), as a shell reports it


@final
@dataclass(frozen=True)
class Outcome:
    """The kind of ending, with what is known about it."""

    kind: OutcomeKind
    detail: str = ""  # one line for ERROR, VIOLATION, LIMIT, CRASH; the trap text for TRAP
    exit_code: int | None = None  # the module's status for EXIT
    signal: int | None = None  # the signal that ended the child, if one did


@final
@dataclass(frozen=True)
class Usage:
    """What the run used."""

    wall_time: float = 0.0  # seconds from the child's start to its end
    cpu_time: float = 0.0  # user + system CPU seconds of the child
    peak_memory: int = 0  # the child's peak resident set, bytes
    bytes_read: int = 0  # by the guest through fd_read/fd_pread
    bytes_written: int = 0  # by the guest through fd_write/fd_pwrite
    brokered_calls: int = 0  # requests the broker served


@final
@dataclass(frozen=True)
class RunResult:
    """The result of one run, shaped like ``subprocess.CompletedProcess``.

    ``returncode`` is what the CLI exits with (README, "Exit statuses");
    ``stdout``/``stderr`` are the captured bytes, or None when not
    captured; ``args`` is the command that ran: the module as given, then
    its arguments.
    """

    returncode: int
    outcome: Outcome
    stdout: bytes | None = None
    stderr: bytes | None = None
    usage: Usage = field(default_factory=Usage)
    # Sandbox layers this host could not apply to the child ("userns: reason"):
    # the run was confined by the others only.
    sandbox_missing: tuple[str, ...] = ()
    args: tuple[str, ...] = ()

    @classmethod
    def error(cls, detail: str, args: tuple[str, ...] = ()) -> RunResult:
        """A run that never started (its module, policy or files unusable): outcome ``error``,
        status 1, `detail` saying why in one line. Every such result is made here."""
        return cls(STATUS_ERROR, Outcome(OutcomeKind.ERROR, detail), args=args)

    def check_returncode(self) -> None:
        """Raise the typed RunFailed for this result if returncode is not 0 (as CompletedProcess does)."""
        if self.returncode != 0:
            raise error_for(self)


class WasijailError(Exception):
    """Something wasijail itself could not do (bad module, bad policy, missing file)."""


class RunFailed(WasijailError):
    """A run did not exit with status 0 (raised by check=True); `.result` has the details."""

    def __init__(self, result: RunResult) -> None:
        super().__init__(describe(result))
        self.result = result


class GuestExit(RunFailed):
    """The module exited with a non-zero status."""


class GuestTrap(RunFailed):
    """The module trapped."""


class Timeout(RunFailed):
    """The run passed its wall-clock deadline."""


class ResourceLimit(RunFailed):
    """The run hit a resource limit."""


class SandboxViolation(RunFailed):
    """The child attempted something the sandbox forbids."""


class ChildCrash(RunFailed):
    """The child process died of a signal."""


class Killed(RunFailed):
    """The run was stopped with RunHandle.kill()."""


class ModuleLoadError(RunFailed):
    """The module could not be loaded, linked or started."""


_ERRORS = {
    OutcomeKind.EXIT: GuestExit,
    OutcomeKind.TRAP: GuestTrap,
    OutcomeKind.TIMEOUT: Timeout,
    OutcomeKind.LIMIT: ResourceLimit,
    OutcomeKind.VIOLATION: SandboxViolation,
    OutcomeKind.CRASH: ChildCrash,
    OutcomeKind.KILLED: Killed,
    OutcomeKind.ERROR: ModuleLoadError,
}


def error_for(result: RunResult) -> RunFailed:
    """The typed exception for a result that did not exit 0."""
    return _ERRORS[result.outcome.kind](result)


def describe(result: RunResult) -> str:
    """One line saying how the run ended."""
    outcome = result.outcome
    if outcome.kind is OutcomeKind.EXIT:
        return f"module exited with status {outcome.exit_code}"
    if outcome.kind is OutcomeKind.TRAP:
        return "module trapped: " + (outcome.detail.strip().splitlines() or ["?"])[-1].strip()
    return f"{outcome.kind.value}: {outcome.detail}"
