"""The trio supervisor: the one async core behind the CLI, batch and the API.

For each run it opens the module and the preopened directories, has the fork
server start a child, sends it the start message (setup and module as fds),
then serves the child's broker socket and its stdio until the child reports
its result and exits. Whatever happens, a run ends with a `RunResult`: a
child that breaks the protocol is killed and reported as a violation, one
that passes a deadline or an output cap is killed and reported as such, and a
cancelled run kills and reaps its child before the cancellation propagates.
"""

from __future__ import annotations

import math
import os
import signal
import socket
import stat
import subprocess
import time
from contextlib import AsyncExitStack, ExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterable, AsyncIterator, Callable, Iterable, Iterator, Optional, Sequence, Union, final

import trio

from .protocol import transport
from .broker.handlers import DEFAULT_MAX_HANDLES, Broker
from .broker.resolve import Resolver
from .broker.placement import Placement
from .broker.session import BrokerSession
from .cache import ModuleCache, engine_fingerprint
from .descriptors import RUN_DESCRIPTORS, DescriptorBudget
from .engine import EngineOptions
from .launcher import Launcher
from .policy import Policy
from .protocol.broker import ChildOutcome
from .protocol.setup import ArtifactMode, ChildLimits, Setup, Start
from .sandbox import PARENT_LAYERS, spec as layer_spec
from .sandbox.cgroup import CgroupPool, Leaf, child_threads, memory_cap, thread_cap_uid, thread_cgroups
from .stdio import PrivateStdio, fill_closed_stdio
from .results import (
    STATUS_ERROR,
    STATUS_KILLED,
    STATUS_LIMIT,
    STATUS_TRAP,
    STATUS_VIOLATION,
    Outcome,
    OutcomeKind,
    RunResult,
    Usage,
    WasijailError,
    error_for,
)


@final
@dataclass(frozen=True)
class RunSpec:
    """What to run: the module, its arguments and the policy that confines it.

    ``module`` is the module's file (``.wat`` is read as text), or only its
    name in messages when ``source`` holds its bytes (``wasijail run -``:
    text unless the bytes start with the wasm magic). ``invoke`` calls that
    export with ``invoke_args`` instead of ``_start``; ``argv0`` defaults to
    the file name of the module as messages name it (``name``); ``engine`` changes engine, store and linker
    settings (wasmtime's ``-W`` options that are not limits). ``name`` is
    the module as messages and the result's ``args`` name it, when that is
    not ``module`` (a cluster worker runs its own copy of the client's file).
    """

    module: Path
    args: tuple[str, ...] = ()
    policy: Policy = Policy()
    invoke: str | None = None
    invoke_args: tuple[str, ...] = ()
    argv0: str | None = None
    engine: EngineOptions = EngineOptions()
    source: bytes | None = None
    compile_only: bool = False  # stop once the module is compiled into the cache (`wasijail compile`)
    name: str | None = None

    @property
    def shown(self) -> str:
        """The module as messages name it."""
        return self.name if self.name is not None else str(self.module)

    @property
    def is_wat(self) -> bool:
        """Whether the module is WebAssembly text."""
        if self.source is not None:
            return not self.source.startswith(b"\0asm")
        return self.module.suffix == ".wat"


@dataclass(frozen=True)
class CompileResult:
    """What `Supervisor.compile` did for one module."""

    module: Path
    cached: bool  # it was in the cache already: nothing was compiled
    seconds: float


#: A compile still running after this long is announced (Supervisor.on_long_compile).
LONG_COMPILE = 1.0


def _open_named(path: str | os.PathLike, flags: int, name: str, messages: dict[type[OSError], str],
                other: str) -> int:
    """os.open, or a WasijailError saying in one line why not: "NAME: MESSAGE" for the errors
    in `messages`, "NAME: OTHER<strerror>" for any other."""
    try:
        return os.open(path, flags | os.O_CLOEXEC)
    except OSError as exc:
        why = next((text for kind, text in messages.items() if isinstance(exc, kind)), f"{other}{exc.strerror}")
        raise WasijailError(f"{name}: {why}") from None


def open_module(spec: RunSpec) -> int:
    """Open the module file for reading, or raise WasijailError saying in one line why not."""
    name = spec.shown
    with ExitStack() as on_fail:
        if spec.source is not None:
            fd = _memfd("wasijail-module", spec.source)
        else:
            fd = _open_named(spec.module, os.O_RDONLY, name, {FileNotFoundError: "no such file",
                             IsADirectoryError: "is a directory, not a module"}, "cannot open: ")
        on_fail.callback(os.close, fd)
        st = os.fstat(fd)  # a memfd when the bytes came with the spec: checked the same way
        if stat.S_ISDIR(st.st_mode):
            raise WasijailError(f"{name}: is a directory, not a module")
        if not stat.S_ISREG(st.st_mode):
            raise WasijailError(f"{name}: not a regular file")
        if st.st_size == 0:
            raise WasijailError(f"{name}: empty file, not a module")
        limit = spec.policy.limits.module_size
        if limit is not None and st.st_size > limit:
            raise WasijailError(f"{name}: {st.st_size} bytes exceeds the module size limit of {limit}")
        on_fail.pop_all()
    return fd


def _open_broker(policy: Policy, resolver: Resolver, handles: int) -> Broker:
    """The run's broker, holding the policy's preopened directories (closed by its close())."""
    with ExitStack() as on_fail:  # the preopens opened so far, until the broker holds them
        preopens: list[tuple[int, bool]] = []
        for preopen in policy.preopens:
            fd = _open_named(preopen.host, os.O_RDONLY | os.O_DIRECTORY, f"preopen {preopen.host}",
                             {FileNotFoundError: "no such directory", NotADirectoryError: "not a directory"}, "")
            on_fail.callback(os.close, fd)
            preopens.append((fd, preopen.readonly))
        broker = Broker(preopens, resolver=resolver, max_handles=handles, files=policy.limits.files,
                        symlinks=policy.symlinks)
        on_fail.pop_all()
    return broker


def _setup_fd(spec: RunSpec, limits: ChildLimits) -> int:
    policy = spec.policy
    env = policy.resolved_env(os.environ)
    argv0 = spec.argv0 if spec.argv0 is not None else Path(spec.shown).name
    setup = Setup(
        module_name=os.fsencode(argv0),
        is_wat=spec.is_wat,
        args=tuple(os.fsencode(a) for a in spec.args),
        env=tuple(os.fsencode(f"{k}={v}") for k, v in env),
        preopen_names=tuple(p.guest.encode() for p in policy.preopens),
        preopen_readonly=tuple(p.readonly for p in policy.preopens),
        invoke=(spec.invoke or "").encode(),
        invoke_args=tuple(a.encode() for a in spec.invoke_args),
        limits=limits,
        engine=spec.engine.encode(),
    )
    return _memfd("wasijail-setup", setup.encode())


PIPE = subprocess.PIPE  # as stdin/stdout/stderr: hand the other end to the caller as a trio stream


StdinArg = Union[bytes, bytearray, memoryview, int, None, trio.abc.ReceiveStream, AsyncIterable[bytes]]
OutputArg = Optional[int]


def check_run_arguments(module: object, args: object, policy: object, stdin: object, stdout: object,
                        stderr: object, capture_stdout: object, capture_stderr: object, check: object,
                        *, started: bool) -> None:
    """Refuse wrong arguments at the call, as trio.run_process does: TypeError or ValueError, one line.

    ``started`` says whether the call runs under ``nursery.start`` (the only
    way a PIPE end can reach the caller).
    """
    if not isinstance(module, (str, os.PathLike)):
        raise TypeError(f"module must be a path (str or os.PathLike), not {type(module).__name__}")
    if isinstance(args, (str, bytes)) or not isinstance(args, Iterable):
        raise TypeError(f"args must be a sequence of str, not {type(args).__name__}")
    for arg in args:  # type: ignore[union-attr]
        if not isinstance(arg, str):
            raise TypeError(f"args must be a sequence of str, not one holding {type(arg).__name__}")
    if policy is not None and not isinstance(policy, Policy):
        hint = " (load a file with Policy.from_toml(path))" if isinstance(policy, (str, os.PathLike)) else ""
        raise TypeError(f"policy must be a wasijail.Policy or None, not {type(policy).__name__}{hint}")
    if not (stdin is None or isinstance(stdin, (bytes, bytearray, memoryview, trio.abc.ReceiveStream))
            or (isinstance(stdin, int) and not isinstance(stdin, bool)) or hasattr(stdin, "__aiter__")):
        hint = " (encode text first: stdin=text.encode())" if isinstance(stdin, str) else ""
        raise TypeError("stdin must be bytes, a trio ReceiveStream, an async iterable of bytes, an fd, None"
                        f" or PIPE, not {type(stdin).__name__}{hint}")
    for name, target, capture in (("stdout", stdout, capture_stdout), ("stderr", stderr, capture_stderr)):
        if target is not None and (not isinstance(target, int) or isinstance(target, bool)):
            raise TypeError(f"{name} must be an fd, None or PIPE, not {type(target).__name__}")
        if not isinstance(capture, bool):
            raise TypeError(f"capture_{name} must be a bool, not {type(capture).__name__}")
        if capture and target is not None:
            raise ValueError(f"{name}= and capture_{name}=True cannot be given together")
    if not isinstance(check, bool):
        raise TypeError(f"check must be a bool, not {type(check).__name__}")
    if not started:
        for name, value in (("stdin", stdin), ("stdout", stdout), ("stderr", stderr)):
            if isinstance(value, int) and not isinstance(value, bool) and value == PIPE:
                raise ValueError(f"{name}=PIPE is only valid with nursery.start(), which hands back the"
                                 " RunHandle holding the pipe")


@final
class RunHandle:
    """A live run, handed back by ``await nursery.start(supervisor.run, ...)``.

    ``stdin``, ``stdout`` and ``stderr`` are trio streams for the ends given
    as PIPE (None otherwise), the caller's to close (they stay open when the
    run ends, so no output is lost; dropping the handle closes them too,
    as trio's own streams do); ``kill()`` stops the child (the run ends as
    outcome ``killed``); ``wait()`` returns the RunResult. ``pid`` is the
    child's process id, or None when the run ended before a child started
    (a module that could not be opened: ``wait()`` returns its ``error``).
    """

    def __init__(self, child: Any, stdin: trio.lowlevel.FdStream | None, stdout: trio.lowlevel.FdStream | None,
                 stderr: trio.lowlevel.FdStream | None) -> None:
        self._child = child
        self.pid: int | None = child.pid if child is not None else None
        self.stdin: trio.lowlevel.FdStream | None = stdin
        self.stdout: trio.lowlevel.FdStream | None = stdout
        self.stderr: trio.lowlevel.FdStream | None = stderr
        self._done = trio.Event()
        self._result: RunResult | None = None
        self.killed = False  # kill() was called while the child ran

    async def send_stdin(self, data: bytes) -> None:
        """Write all of ``data`` to the module's stdin (given as PIPE)."""
        if self.stdin is None:
            raise WasijailError("stdin was not opened as a pipe (pass stdin=PIPE)")
        await self.stdin.send_all(data)

    def kill(self) -> None:
        """Stop the run now; it ends with outcome ``killed``. Nothing happens once it has ended."""
        if self._child is not None and self._child.returncode is None and not self._done.is_set():
            self.killed = True
            self._child.kill()

    async def wait(self) -> RunResult:
        """Wait for the run to end and return its RunResult."""
        await self._done.wait()
        assert self._result is not None
        return self._result

    def _finish(self, result: RunResult) -> None:
        self._result = result
        self._done.set()


class Supervisor:
    """Runs modules, each in its own child forked from one shared fork server.

    Create it with `open_supervisor()`; it lives as long as that context. At
    most `max_parallel` children run at once; further runs wait their turn.
    """

    def __init__(self, launcher: Launcher, *, resolver: Resolver | None = None,
                 max_parallel: int | None = None, cache: ModuleCache | None = None,
                 cgroups: CgroupPool | None = None, descriptors: DescriptorBudget | None = None,
                 thread_cgroups: CgroupPool | None = None, host_uid: int = -1) -> None:
        self.launcher = launcher
        self.cache = cache
        self.cgroups = cgroups  # per-child memory (and thread) caps, where the host offers cgroup v2
        self.thread_cgroups = thread_cgroups  # per-child thread caps in the v1 pids hierarchy
        # Where no pids cgroup caps threads and we are root: children run as this host uid (-1: ours).
        self.host_uid = host_uid
        self.resolver = resolver or Resolver()
        self.max_parallel = max_parallel or os.cpu_count() or 1
        self._limiter = trio.CapacityLimiter(self.max_parallel)
        # Raises the soft RLIMIT_NOFILE and shares the descriptors out between runs.
        self.descriptors = descriptors or DescriptorBudget.for_this_process()
        self.live_children = 0  # children running right now (for tests and progress)
        self.placement = Placement()  # which CPU each brokering child shares with its broker thread
        self._parent_layers: dict = {}  # doctor's probe of PARENT_LAYERS, made once on demand
        # Called with (module path, whether the result will be cached) when a compile is still
        # running after LONG_COMPILE seconds: the CLI says so on a terminal.
        self.on_long_compile: Callable[[Path, bool], None] | None = None

    async def run(self, module: str | os.PathLike[str], args: Sequence[str] = (), *,
                  policy: Policy | None = None, stdin: StdinArg = b"", stdout: OutputArg = None,
                  stderr: OutputArg = None, capture_stdout: bool = False, capture_stderr: bool = False,
                  check: bool = False,
                  task_status: trio.TaskStatus[RunHandle] = trio.TASK_STATUS_IGNORED) -> RunResult:
        """Run `module` with `args` under `policy` (default: `Policy.default()`).

        Shaped like `trio.run_process`: stdin is bytes (default empty), a trio
        ReceiveStream, an fd, None (inherit) or PIPE; capture_stdout/stderr
        collect output into the result (up to the policy's `output` cap);
        check=True raises the typed error for any status but 0. Under
        `nursery.start(...)` it hands back a RunHandle at once, with stdin,
        stdout and stderr as trio streams unless captured or given.

        Wrong arguments raise TypeError or ValueError at once; every problem
        with the module itself (missing, unreadable, not wasm, a component,
        bad imports) is a result with outcome ``error`` (ModuleLoadError under
        check=True).
        """
        started = task_status is not trio.TASK_STATUS_IGNORED
        check_run_arguments(module, args, policy, stdin, stdout, stderr, capture_stdout, capture_stderr, check,
                            started=started)
        spec = RunSpec(Path(module), tuple(args), policy if policy is not None else Policy.default())
        if started:
            stdin = PIPE if stdin == b"" else stdin
            stdout = PIPE if stdout is None and not capture_stdout else stdout
            stderr = PIPE if stderr is None and not capture_stderr else stderr
        result = await self.run_spec(spec, stdin=stdin, stdout=stdout, stderr=stderr,
                                     capture_stdout=capture_stdout, capture_stderr=capture_stderr,
                                     task_status=task_status)
        if check and result.returncode != 0:
            raise error_for(result)
        return result

    async def compile(self, module: str | os.PathLike, *, policy: Policy | None = None) -> CompileResult:
        """Compile `module` into the cache ahead of time, running none of it.

        The compile happens as in a run (a locked-down child, `compile_timeout`);
        the engine settings a policy decides (fuel) are part of the cache key, so
        compile with the policy the runs will use. Raises the typed error for a
        module that does not compile.
        """
        if self.cache is None:
            raise WasijailError("compiling ahead of time needs the compiled-module cache")
        spec = RunSpec(Path(module), policy=policy if policy is not None else Policy.default(),
                       compile_only=True)
        started = time.monotonic()
        module_fd = open_module(spec)
        try:
            fingerprint = engine_fingerprint(fuel=spec.policy.limits.fuel is not None, options=spec.engine)
            key = await trio.to_thread.run_sync(self.cache.module_key, module_fd, fingerprint)
        finally:
            os.close(module_fd)
        artifact = await trio.to_thread.run_sync(self.cache.open, key)
        if artifact is not None:
            artifact.close()
            return CompileResult(spec.module, True, time.monotonic() - started)
        result = await self.run_spec(spec, stdin=b"", capture_stdout=True, capture_stderr=True)
        if result.returncode != 0:
            raise error_for(result)
        return CompileResult(spec.module, False, time.monotonic() - started)

    async def run_spec(self, spec: RunSpec, *, stdin: StdinArg = None, stdout: OutputArg = None,
                       stderr: OutputArg = None, capture_stdout: bool = False, capture_stderr: bool = False,
                       task_status: trio.TaskStatus[RunHandle] = trio.TASK_STATUS_IGNORED) -> RunResult:
        """Run one module to its end and return its RunResult.

        stdin: None (the supervisor's own), an fd, bytes, a trio ReceiveStream, or PIPE.
        stdout/stderr: None (the supervisor's own), an fd, or PIPE; capture_* collects
        them into the result, up to the policy's `output` cap per stream.
        """
        handles = self._handles_for(spec.policy)
        async with self._limiter, self.descriptors.hold(RUN_DESCRIPTORS + handles):
            return await self._run(spec, stdin, stdout, stderr, capture_stdout, capture_stderr,
                                   task_status, handles)

    def _handles_for(self, policy: Policy) -> int:
        """The most directory handles the broker holds for one run (its preopens included)."""
        handles = self.descriptors.handles_for(policy.limits.open_files, DEFAULT_MAX_HANDLES)
        return max(handles, len(policy.preopens))

    def assume_layers(self, layers) -> None:
        """Use this probe of the parent's layers (doctor.Layer items) instead of making one."""
        self._parent_layers.update({layer.name: layer for layer in layers if layer.name in PARENT_LAYERS})

    def _check_parent_layers(self, required: tuple[str, ...]) -> None:
        """Layers the parent provides (openat2, cgroup) must exist when the policy requires them."""
        for name in required:
            if name not in PARENT_LAYERS:
                continue  # the child checks its own layers during lockdown
            if name not in self._parent_layers:
                from .doctor import probe_layer

                self._parent_layers[name] = probe_layer(layer_spec(name))  # that layer's probe alone
            layer = self._parent_layers[name]
            memory_cgroup = self.cgroups is not None and self.cgroups.has_memory
            if name == "cgroup" and memory_cgroup:
                continue  # this supervisor holds a working memory cgroup
            if not layer.available or (name == "cgroup" and not memory_cgroup):
                raise WasijailError(f"the policy requires sandbox layer {name}, which this host lacks:"
                                    f" {layer.detail}")

    async def _run(self, spec, stdin, stdout, stderr, capture_stdout, capture_stderr,
                   task_status, handles: int) -> RunResult:
        limits = spec.policy.limits
        self._check_parent_layers(spec.policy.sandbox.require)
        try:
            module_fd = open_module(spec)
        except WasijailError as exc:  # a module problem ends like every other one: an `error` result
            result = RunResult.error(str(exc), args=(spec.shown, *spec.args))
            handle = RunHandle(None, None, None, None)
            handle._finish(result)
            task_status.started(handle)
            return result
        # As trio's _open_process: `run` releases what the run holds however it ends, last in
        # first out (the child is reaped before its cgroups are removed); `to_child` and
        # `spawn_ends` close our copies of what the child receives once it has them, or on failure.
        async with AsyncExitStack() as run:
            with ExitStack() as to_child:  # sent with the start message
                to_child.callback(os.close, module_fd)
                broker = _open_broker(spec.policy, self.resolver, handles)
                run.callback(broker.close)
                child_limits = ChildLimits.of(limits, child_threads())  # for the fork server and the child alike
                setup_fd = _setup_fd(spec, child_limits)
                to_child.callback(os.close, setup_fd)
                plumbing = _Plumbing(stdin, stdout, stderr, capture_stdout, capture_stderr, limits.output)
                run.push_async_callback(plumbing.aclose)
                broker.protect_stdio(plumbing.child_fds)
                started = time.monotonic()
                # Before the child exists: an artifact to load is mounted into its empty root
                # by its lockdown, for wasmtime to map rather than copy.
                cached = await self._cached_artifact(spec, module_fd, run)
                with ExitStack() as spawn_ends:  # inherited by the child as it is forked
                    parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
                    run.callback(parent_sock.close)
                    spawn_ends.callback(child_sock.close)
                    violations, violation_end = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
                    run.callback(os.close, violations)
                    spawn_ends.callback(os.close, violation_end)
                    leaves = self._leaves(limits.memory, os.fstat(module_fd).st_size, run)
                    for leaf in leaves:
                        spawn_ends.callback(leaf.close_fd)
                    child = await self.launcher.spawn(
                        child_sock.fileno(), plumbing.child_fds, violation_end,
                        limits=child_limits,
                        require=spec.policy.sandbox.require,
                        cgroup_procs=tuple(leaf.procs_fd for leaf in leaves),
                        host_uid=self.host_uid,
                        artifact_fd=cached.fd if cached.mode == ArtifactMode.LOAD and cached.fd is not None else -1,
                    )
                    run.callback(child.close)
                    run.enter_context(self._counted())
                    run.push_async_callback(_reap, child)
                plumbing.spawned()
                start_fds = (setup_fd, module_fd) if cached.fd is None else (setup_fd, module_fd, cached.fd)
                transport.send(parent_sock, Start(cached.mode), start_fds)
            session = BrokerSession(broker, parent_sock, child.kill, pid=child.pid, placement=self.placement)
            if cached.mode == ArtifactMode.PRODUCE:
                session.artifact_sink = cached.fd
            memory_leaf = next((leaf for leaf in leaves if leaf.memory_max is not None), None)
            handle = RunHandle(child, plumbing.user_stdin, plumbing.user_stdout, plumbing.user_stderr)
            ending = _Ending(session, child, violations, memory_leaf, limits.cpu_time, handle, spec)
            session.on_compiled = lambda: ending.guest_started(spec.compile_only)
            if not self.resolver.use_openat2:  # confined all the same, by the fallback walk: said, not hidden
                ending.parent_missing = ("openat2: not available here; paths resolve by the"
                                         " component-by-component O_NOFOLLOW walk",)
            task_status.started(handle)
            plumbing.handed_over()
            try:
                await self._supervise(spec, child, session, plumbing, ending)
            finally:  # before the result is read: the child is gone and its output copied
                await _reap(child)
                await plumbing.finish()
            if session.artifact is not None and self.cache is not None and cached.key:
                try:
                    await trio.to_thread.run_sync(self.cache.store, cached.key, session.artifact)
                except OSError:
                    pass  # a full or vanished cache folder costs the next run a compile, not this run
            result = ending.result(time.monotonic() - started, plumbing)
            handle._finish(result)
            return result

    @contextmanager
    def _counted(self) -> Iterator[None]:
        """Count a live child in `live_children` until it is reaped."""
        self.live_children += 1
        try:
            yield
        finally:
            self.live_children -= 1

    def _leaves(self, memory: int | None, module_size: int, run: AsyncExitStack) -> list[Leaf]:
        """The child's cgroups: its memory cap (with a memory limit) and its thread cap,
        removed when `run` ends."""
        memory_max = memory_cap(memory, module_size) if memory is not None else None
        leaves: list[Leaf] = []
        for pool in (self.cgroups, self.thread_cgroups):
            if pool is not None and (pool.has_pids or (pool.has_memory and memory_max is not None)):
                leaves.append(pool.leaf(memory_max, child_threads()))
                run.callback(leaves[-1].remove)
        return leaves

    async def _cached_artifact(self, spec: RunSpec, module_fd: int, run: AsyncExitStack) -> "_CachedArtifact":
        """Look the module up in the cache: an artifact to load, or a sink for one to store
        (its fd closed when `run` ends)."""
        if self.cache is None:
            return _CachedArtifact(ArtifactMode.NONE, None, "")
        limits = spec.policy.limits
        fingerprint = engine_fingerprint(fuel=limits.fuel is not None, options=spec.engine)
        known = self.cache.open_known(module_fd, fingerprint)  # no read, no hash: no thread needed
        if known is not None:
            key, artifact = known
            run.callback(artifact.close)
            return _CachedArtifact(ArtifactMode.LOAD, artifact.fd, key)
        # A module not seen before is read and hashed: a thread does it, so a large one
        # does not stall every other run's broker.
        key = await trio.to_thread.run_sync(self.cache.module_key, module_fd, fingerprint)
        artifact = await trio.to_thread.run_sync(self.cache.open, key)
        if artifact is None:
            fd = os.memfd_create("wasijail-artifact", os.MFD_CLOEXEC)
            run.callback(os.close, fd)
            return _CachedArtifact(ArtifactMode.PRODUCE, fd, key)
        run.callback(artifact.close)
        return _CachedArtifact(ArtifactMode.LOAD, artifact.fd, key)

    def _long_compile_notice(self, spec: RunSpec) -> Callable[[], None] | None:
        if self.on_long_compile is None:
            return None
        callback, cached = self.on_long_compile, self.cache is not None
        return lambda: callback(spec.module, cached)

    async def _supervise(self, spec, child, session, plumbing, ending) -> None:
        limits = spec.policy.limits
        # The run's wall-clock `timeout` counts from the moment guest code starts (the
        # child's compile notice); until then `compile_timeout` is what bounds it.
        with trio.CancelScope() as deadline:
            async with trio.open_nursery() as nursery:
                for pump in plumbing.pumps(child.kill, ending):
                    nursery.start_soon(pump)
                nursery.start_soon(_deadlines, session, child, ending, limits, deadline,
                                   self._long_compile_notice(spec))
                await session.serve()
                await child.wait()
                plumbing.stop_feeding()  # the guest can read no more
                session.compiled.set()  # ends the deadline watch if the child never got that far
        if deadline.cancelled_caught:
            ending.timed_out = limits.timeout


@dataclass(frozen=True)
class _CachedArtifact:
    mode: int
    fd: int | None  # the artifact to load or the memfd for one to store; the run closes it
    key: str


def _memfd(name: str, data: bytes) -> int:
    """A fresh memfd holding all of data, rewound for the child to read."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    with ExitStack() as on_fail:
        on_fail.callback(os.close, fd)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.lseek(fd, 0, os.SEEK_SET)
        on_fail.pop_all()
    return fd


async def _reap(child) -> None:
    """Kill the child if it still runs and wait for its end, even in a cancelled scope."""
    with trio.CancelScope(shield=True):
        if child.returncode is None:
            child.kill()
            await child.wait()


async def _deadlines(session: BrokerSession, child, ending: "_Ending", limits, deadline: trio.CancelScope,
                     long_compile: Callable[[], None] | None) -> None:
    """compile_timeout until the child's compile notice, then the guest's own timeout."""
    with trio.move_on_after(limits.compile_timeout if limits.compile_timeout is not None else math.inf):
        if long_compile is not None:
            with trio.move_on_after(LONG_COMPILE):
                await session.compiled.wait()
            if not session.compiled.is_set():
                long_compile()
        await session.compiled.wait()
    if not session.compiled.is_set():
        ending.limit = f"compile_timeout: compiling took longer than {limits.compile_timeout:g} s"
        child.kill()
        return
    if ending.started and limits.timeout is not None:
        deadline.deadline = trio.current_time() + limits.timeout


class _Plumbing:
    """The three standard streams of one run: what the child gets, what we keep."""

    def __init__(self, stdin, stdout, stderr, capture_stdout: bool, capture_stderr: bool,
                 output_cap: int | None) -> None:
        self.streams: list = []
        self.output_cap = output_cap
        self.user_stdin = self.user_stdout = self.user_stderr = None
        self._stdin_source = None
        self._stdin_stream = None
        self._feeding = trio.CancelScope()
        self.captured: dict[str, bytearray] = {}
        self._capture_streams: dict[str, trio.lowlevel.FdStream] = {}
        fds = []
        own: list[int] = []  # our pipes' ends for the child, handed to PrivateStdio
        # As trio's _open_process: our streams are closed if setting up fails; the child's
        # ends until PrivateStdio owns them (it does even when it fails).
        with ExitStack() as on_fail, ExitStack() as child_ends:
            def pipe(ours_reads: bool) -> tuple[int, trio.lowlevel.FdStream]:
                read_end, write_end = os.pipe2(os.O_CLOEXEC)
                theirs, ours = (write_end, read_end) if ours_reads else (read_end, write_end)
                child_ends.callback(os.close, theirs)
                stream = trio.lowlevel.FdStream(ours)
                on_fail.callback(stream.close)
                own.append(theirs)
                self.streams.append(stream)
                return theirs, stream

            # stdin
            if stdin is None:
                fds.append(0)
            elif isinstance(stdin, int) and stdin != PIPE:
                fds.append(stdin)
            else:
                theirs, stream = pipe(ours_reads=False)
                fds.append(theirs)
                if stdin == PIPE:
                    self.user_stdin = stream
                else:
                    self._stdin_source, self._stdin_stream = stdin, stream
            # stdout, stderr
            for name, target, capture, default in (("stdout", stdout, capture_stdout, 1),
                                                   ("stderr", stderr, capture_stderr, 2)):
                if capture or target == PIPE:
                    theirs, stream = pipe(ours_reads=True)
                    fds.append(theirs)
                    if capture:
                        self.captured[name] = bytearray()
                        self._capture_streams[name] = stream
                    else:
                        setattr(self, f"user_{name}", stream)
                else:
                    fds.append(default if target is None else target)
            child_ends.pop_all()
            try:
                # The caller's own descriptors never reach the child: it gets descriptions of its own.
                self.private = PrivateStdio(tuple(fds), frozenset(own))
            except OSError as exc:
                raise WasijailError(f"standard streams: {exc.strerror}") from None
            on_fail.pop_all()
        self.child_fds = self.private.child_fds

    def spawned(self) -> None:
        """The child holds its stdio: close the ends meant for it, start the copy threads."""
        self.private.spawned()

    async def finish(self) -> None:
        """The child is gone: let the copy threads flush, hand offsets back (shielded)."""
        if self.private.copying:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self.private.finish)
        else:
            self.private.finish()  # no thread to wait for: offsets only

    def handed_over(self) -> None:
        """The caller holds its PIPE ends now (RunHandle): from here on they are the caller's
        to close, as trio.Process's are, so output still in a pipe as the run ends is read to
        its end rather than cut off under a reader."""
        user = (self.user_stdin, self.user_stdout, self.user_stderr)
        self.streams = [stream for stream in self.streams if stream not in user]

    async def aclose(self) -> None:
        """Close what the run holds (shielded: it runs as a run ends): our streams, and the
        caller's PIPE ends if the run ended before they were handed over."""
        self.private.close()
        with trio.CancelScope(shield=True):
            for stream in self.streams:
                await stream.aclose()

    def stop_feeding(self) -> None:
        self._feeding.cancel()

    def pumps(self, kill, ending: "_Ending") -> list:
        """The tasks that move stdin in and captured output out, for the run's nursery."""
        tasks = []
        if self._stdin_stream is not None:
            tasks.append(self._feeder(self._stdin_source, self._stdin_stream))
        for name, stream in self._capture_streams.items():
            tasks.append(self._collector(name, stream, kill, ending))
        return tasks

    def _feeder(self, source, stream):
        async def feed() -> None:
            with self._feeding:
                try:
                    if isinstance(source, (bytes, bytearray, memoryview)):
                        if source:
                            await stream.send_all(source)
                    else:
                        async for chunk in source:
                            await stream.send_all(chunk)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass  # the guest stopped reading
                finally:
                    await stream.aclose()

        return feed

    def _collector(self, name: str, stream, kill, ending: "_Ending"):
        sink = self.captured[name]
        cap = self.output_cap

        async def collect() -> None:
            async with stream:
                while True:
                    chunk = await stream.receive_some(1 << 16)
                    if not chunk:
                        return
                    if cap is not None and len(sink) + len(chunk) > cap:
                        sink.extend(chunk[:cap - len(sink)])
                        ending.limit = f"output: {name} exceeded {cap} bytes"
                        kill()
                        return
                    sink.extend(chunk)

        return collect


@asynccontextmanager
async def open_supervisor(*, resolver: Resolver | None = None, max_parallel: int | None = None,
                          cache: ModuleCache | str | os.PathLike | None = None,
                          cgroups: CgroupPool | None = None,
                          launcher: Launcher | None = None) -> AsyncIterator[Supervisor]:
    """Start a fork server and yield a Supervisor that runs modules through it.

    max_parallel: children running at once (default: the number of cores).
    cache: a ModuleCache, or a folder for one, to keep compiled modules between
    runs; None compiles every module every time.
    """
    fill_closed_stdio()  # the fork server's socket must not become this process's stdout
    if cache is not None and not isinstance(cache, ModuleCache):
        cache = ModuleCache(cache)
    if cgroups is None:
        cgroups = CgroupPool.open()  # None where the host delegates no cgroup v2 memory or pids
    threads = thread_cgroups(cgroups)  # the v1 pids hierarchy where v2 has no pids controller
    host_uid = thread_cap_uid(cgroups, threads)  # RLIMIT_NPROC's uid where no cgroup caps threads
    body_error: BaseException | None = None
    async with trio.open_nursery() as nursery:
        launcher = launcher or Launcher()
        await launcher.start(nursery)
        try:
            yield Supervisor(launcher, resolver=resolver, max_parallel=max_parallel, cache=cache,
                             cgroups=cgroups, thread_cgroups=threads, host_uid=host_uid)
        except BaseException as exc:
            # Re-raised below, outside the nursery, so callers see their own
            # exception rather than an ExceptionGroup around it.
            body_error = exc
        finally:
            await launcher.aclose()
            for pool in (cgroups, threads):
                if pool is not None:
                    pool.close()
            nursery.cancel_scope.cancel()
    if body_error is not None:
        raise body_error


class _Ending:
    """Turns what happened to one child into its RunResult."""

    def __init__(self, session: BrokerSession, child, violations: int, leaf: Leaf | None,
                 cpu_time: float | None, handle: RunHandle, spec: RunSpec) -> None:
        self.handle = handle
        self.spec = spec
        self.parent_missing: tuple[str, ...] = ()  # confinement layers of the parent's this host lacks
        self.session = session
        self.cpu_time = cpu_time
        self.leaf = leaf  # the child's memory cgroup, if it had one
        self.violations = violations  # the pipe a seccomp refusal is named on
        self.broker = session.broker
        self.child = child
        self.timed_out: float | None = None
        self.limit: str | None = None  # a limit the supervisor enforced (output, compile_timeout)
        self.started = False  # guest code may run: the child compiled (or loaded) its module
        self.compile_only = False  # the run ended, on purpose, once the module was compiled

    def guest_started(self, compile_only: bool = False) -> None:
        """The child says its module is ready; it waits for our reply before running guest code
        (and, given it, lowers its own RLIMIT_CPU to what it has used plus cpu_time)."""
        self.started = True
        if compile_only:  # killed before our reply: no guest code runs
            self.compile_only = True
            self.child.kill()

    def result(self, wall: float, plumbing: _Plumbing) -> RunResult:
        reported = self.session.reported
        child = self.child
        usage = Usage(
            wall_time=wall, cpu_time=child.cpu_time, peak_memory=child.max_rss,
            bytes_read=reported.bytes_read if reported else 0,
            bytes_written=reported.bytes_written if reported else 0,
            brokered_calls=self.broker.calls,
        )
        outcome, status = self._outcome(reported)
        captured = plumbing.captured
        out = bytes(captured["stdout"]) if "stdout" in captured else None
        err = bytes(captured["stderr"]) if "stderr" in captured else None
        missing = (self.session.sandbox_missing or ()) + self.parent_missing
        return RunResult(status, outcome, out, err, usage, missing, args=(self.spec.shown, *self.spec.args))

    def _outcome(self, reported) -> tuple[Outcome, int]:
        status = self.child.returncode
        if self.timed_out is not None:
            return Outcome(OutcomeKind.TIMEOUT, f"timed out after {self.timed_out:g} s"), STATUS_TRAP
        if self.limit is not None:
            return Outcome(OutcomeKind.LIMIT, self.limit), STATUS_LIMIT
        if self.compile_only:
            return Outcome(OutcomeKind.EXIT, exit_code=0), 0
        if self.session.violation is not None:
            return Outcome(OutcomeKind.VIOLATION, self.session.violation), STATUS_VIOLATION
        if self.session.failure is not None:
            return Outcome(OutcomeKind.CRASH, self.session.failure), STATUS_ERROR
        if status is not None and status < 0:
            sig = -status
            if sig == signal.SIGKILL and self.handle.killed:
                return Outcome(OutcomeKind.KILLED, "killed by RunHandle.kill()", signal=sig), STATUS_KILLED
            if sig == signal.SIGSYS:
                return Outcome(OutcomeKind.VIOLATION, self._violation(), signal=sig), STATUS_VIOLATION
            if sig == signal.SIGKILL and self.leaf is not None and self.leaf.oom_killed():
                detail = f"memory: the child process passed its cgroup cap of {self.leaf.memory_max} bytes"
                return Outcome(OutcomeKind.LIMIT, detail, signal=sig), STATUS_LIMIT
            if sig == signal.SIGXCPU and not self.started:  # lockdown's RLIMIT_CPU, while compiling
                return Outcome(OutcomeKind.LIMIT, "compile_timeout: compiling used all the CPU time it"
                               " was allowed", signal=sig), STATUS_LIMIT
            if sig == signal.SIGXCPU:  # the child's CPU watchdog, or RLIMIT_CPU behind it
                detail = f"cpu_time: more than {self.cpu_time:g} s of CPU" if self.cpu_time else "cpu_time"
                return Outcome(OutcomeKind.LIMIT, detail, signal=sig), STATUS_LIMIT
            name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
            return Outcome(OutcomeKind.CRASH, f"child killed by {name}", signal=sig), 128 + sig
        if reported is None:
            return Outcome(OutcomeKind.CRASH, f"child exited with status {status} without a result"), STATUS_ERROR
        message = reported.message.decode("utf-8", "replace")
        if reported.outcome in (ChildOutcome.EXIT, ChildOutcome.INVOKED):
            return Outcome(OutcomeKind.EXIT, exit_code=reported.code), reported.code
        if reported.outcome == ChildOutcome.TRAP:
            return Outcome(OutcomeKind.TRAP, message), STATUS_TRAP
        if reported.outcome == ChildOutcome.LIMIT:
            return Outcome(OutcomeKind.LIMIT, message), STATUS_LIMIT
        if self.session.reported_while_loading:  # the module itself: name its file, as wasmtime does
            glue = "" if message[:1].isdigit() else " "  # "bad.wat:2:1: ..." for text errors
            message = f"{self.spec.shown}:{glue}{message}"
        return Outcome(OutcomeKind.ERROR, message), STATUS_ERROR

    def _violation(self) -> str:
        """"sandbox violation: execve", from what the child's SIGSYS handler wrote."""
        try:
            data = os.read(self.violations, 4096)
        except BlockingIOError:
            data = b""
        from .sandbox.seccomp import describe_violation  # needs pyseccomp: load it only now

        return describe_violation(data)
