"""The trio supervisor: the one async core behind the CLI, batch and the API.

For each run it opens the module and the preopened directories, starts a child
process, sends it the start message (setup and module as fds), then serves the
child's broker socket until the child reports its result and exits. Whatever
the child does, the supervisor ends with a `RunResult`; a child that breaks
the protocol is killed and reported as a violation.
"""

from __future__ import annotations

import os
import signal
import socket
import stat
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator

import trio

from . import protocol
from .broker.handlers import Broker
from .broker.resolve import Resolver
from .broker.session import BrokerSession
from .launcher import Launcher
from .policy import Policy
from .protocol import Outcome as WireOutcome
from .results import (
    STATUS_ERROR,
    STATUS_TRAP,
    STATUS_VIOLATION,
    Outcome,
    OutcomeKind,
    RunResult,
    Usage,
    WasijailError,
)


@dataclass(frozen=True)
class RunSpec:
    """What to run: the module, its arguments and the policy that confines it."""

    module: Path
    args: tuple[str, ...] = ()
    policy: Policy = Policy()
    invoke: str | None = None
    invoke_args: tuple[str, ...] = ()
    argv0: str | None = None  # defaults to the module's file name


def _open_module(spec: RunSpec) -> int:
    path = spec.module
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise WasijailError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise WasijailError(f"{path}: is a directory, not a module") from None
    except OSError as exc:
        raise WasijailError(f"{path}: cannot open: {exc.strerror}") from None
    st = os.fstat(fd)
    if stat.S_ISDIR(st.st_mode):
        os.close(fd)
        raise WasijailError(f"{path}: is a directory, not a module")
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise WasijailError(f"{path}: not a regular file")
    if st.st_size == 0:
        os.close(fd)
        raise WasijailError(f"{path}: empty file, not a module")
    limit = spec.policy.limits.module_size
    if limit is not None and st.st_size > limit:
        os.close(fd)
        raise WasijailError(f"{path}: {st.st_size} bytes exceeds the module size limit of {limit}")
    return fd


def _open_preopens(policy: Policy) -> list[tuple[int, bool]]:
    opened: list[tuple[int, bool]] = []
    try:
        for preopen in policy.preopens:
            try:
                fd = os.open(preopen.host, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except FileNotFoundError:
                raise WasijailError(f"preopen {preopen.host}: no such directory") from None
            except NotADirectoryError:
                raise WasijailError(f"preopen {preopen.host}: not a directory") from None
            except OSError as exc:
                raise WasijailError(f"preopen {preopen.host}: {exc.strerror}") from None
            opened.append((fd, preopen.readonly))
    except BaseException:
        for fd, _ in opened:
            os.close(fd)
        raise
    return opened


def _setup_fd(spec: RunSpec) -> int:
    policy = spec.policy
    limits = policy.limits
    env = policy.resolved_env(os.environ)
    argv0 = spec.argv0 if spec.argv0 is not None else spec.module.name
    setup = protocol.Setup(
        module_name=os.fsencode(argv0),
        is_wat=spec.module.suffix == ".wat",
        args=tuple(os.fsencode(a) for a in spec.args),
        env=tuple(os.fsencode(f"{k}={v}") for k, v in env),
        preopen_names=tuple(p.guest.encode() for p in policy.preopens),
        preopen_readonly=tuple(p.readonly for p in policy.preopens),
        invoke=(spec.invoke or "").encode(),
        invoke_args=tuple(a.encode() for a in spec.invoke_args),
        memory_limit=limits.memory if limits.memory is not None else -1,
        table_limit=limits.table_elements if limits.table_elements is not None else -1,
        fuel=limits.fuel or 0,
        open_files=limits.open_files if limits.open_files is not None else -1,
        file_size=limits.file_size if limits.file_size is not None else -1,
    )
    fd = os.memfd_create("wasijail-setup", os.MFD_CLOEXEC)
    data = setup.encode()
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


class Supervisor:
    """Runs modules, each in its own child forked from one shared fork server.

    Create it with `open_supervisor()`; it lives as long as that context.
    """

    def __init__(self, launcher: Launcher, *, resolver: Resolver | None = None) -> None:
        self.launcher = launcher
        self.resolver = resolver or Resolver()

    async def run(self, spec: RunSpec, *, stdin: int | None = None, stdout: int | None = None,
                  stderr: int | None = None) -> RunResult:
        """Run one module to its end. stdio: an fd for the guest, or None for the supervisor's own."""
        module_fd = _open_module(spec)
        try:
            preopens = _open_preopens(spec.policy)
        except BaseException:
            os.close(module_fd)
            raise
        broker = Broker(preopens, resolver=self.resolver)
        parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        setup_fd = -1
        child = None
        started = time.monotonic()
        limits = spec.policy.limits
        try:
            setup_fd = _setup_fd(spec)
            child = await self.launcher.spawn(
                child_sock.fileno(),
                (0 if stdin is None else stdin, 1 if stdout is None else stdout,
                 2 if stderr is None else stderr),
                file_size=limits.file_size if limits.file_size is not None else -1,
                cpu_time=limits.cpu_time or 0.0,
                require=spec.policy.sandbox.require,
            )
            child_sock.close()
            protocol.send(parent_sock, protocol.Start(0), (setup_fd, module_fd))
            os.close(setup_fd)
            setup_fd = -1
            os.close(module_fd)
            module_fd = -1
            session = BrokerSession(broker, trio.socket.from_stdlib_socket(parent_sock), child.kill)
            ending = _Ending(session, child)
            timeout = limits.timeout
            try:
                with trio.move_on_after(timeout if timeout is not None else float("inf")) as scope:
                    await session.serve()
                    await child.wait()
            finally:
                if child.returncode is None:
                    child.kill()
                    with trio.CancelScope(shield=True):
                        await child.wait()
            if scope.cancelled_caught:
                ending.timed_out = timeout
            return ending.result(time.monotonic() - started)
        finally:
            broker.close()
            parent_sock.close()
            child_sock.close()
            if child is not None:
                child.close()
            for fd in (setup_fd, module_fd):
                if fd >= 0:
                    os.close(fd)


@asynccontextmanager
async def open_supervisor(*, resolver: Resolver | None = None) -> AsyncIterator[Supervisor]:
    """Start a fork server and yield a Supervisor that runs modules through it."""
    body_error: BaseException | None = None
    async with trio.open_nursery() as nursery:
        launcher = Launcher()
        await launcher.start(nursery)
        try:
            yield Supervisor(launcher, resolver=resolver)
        except BaseException as exc:
            # Re-raised below, outside the nursery, so callers see their own
            # exception rather than an ExceptionGroup around it.
            body_error = exc
        finally:
            await launcher.aclose()
            nursery.cancel_scope.cancel()
    if body_error is not None:
        raise body_error


class _Ending:
    """Turns what happened to one child into its RunResult."""

    def __init__(self, session: BrokerSession, child) -> None:
        self.session = session
        self.broker = session.broker
        self.child = child
        self.timed_out: float | None = None

    def result(self, wall: float) -> RunResult:
        usage = Usage(wall_time=wall, brokered_calls=self.broker.calls)
        status = self.child.returncode
        if self.timed_out is not None:
            outcome = Outcome(OutcomeKind.TIMEOUT, f"timed out after {self.timed_out:g} s")
            return RunResult(STATUS_TRAP, outcome, usage=usage)
        if self.session.violation is not None:
            return RunResult(STATUS_VIOLATION, Outcome(OutcomeKind.VIOLATION, self.session.violation), usage=usage)
        if status is not None and status < 0:
            sig = -status
            if sig == signal.SIGSYS:
                outcome = Outcome(OutcomeKind.VIOLATION, "sandbox violation (killed by seccomp)", signal=sig)
                return RunResult(STATUS_VIOLATION, outcome, usage=usage)
            name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
            outcome = Outcome(OutcomeKind.CRASH, f"child killed by {name}", signal=sig)
            return RunResult(128 + sig, outcome, usage=usage)
        reported = self.session.reported
        if reported is None:
            outcome = Outcome(OutcomeKind.CRASH, f"child exited with status {status} without a result")
            return RunResult(STATUS_ERROR, outcome, usage=usage)
        message = reported.message.decode("utf-8", "replace")
        if reported.outcome in (WireOutcome.EXIT, WireOutcome.INVOKED):
            return RunResult(reported.code, Outcome(OutcomeKind.EXIT, exit_code=reported.code), usage=usage)
        if reported.outcome == WireOutcome.TRAP:
            return RunResult(STATUS_TRAP, Outcome(OutcomeKind.TRAP, message), usage=usage)
        return RunResult(STATUS_ERROR, Outcome(OutcomeKind.ERROR, message), usage=usage)

