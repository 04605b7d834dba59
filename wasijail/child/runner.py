"""The child's life: wait for its start message, load the module, run it, report.

`child_main` is what a freshly started child process runs. Lockdown happens
before the first untrusted byte is read; until then the child has only the
broker socket and stdio.
"""

from __future__ import annotations

import ctypes
import math
import mmap
import os
import re
import resource
import signal
import socket
import sys
import threading
import time

import wasmtime
from wasmtime import _ffi  # the C API's module deserialize, to pass it a mapping (wasmtime-py is pinned to 50)

from ..engine import EngineOptions
from ..protocol import transport
from ..protocol.broker import ChildOutcome, Compiled, Result
from ..protocol.setup import ArtifactMode, Setup, decode_start
from .bindings import WASI_MODULES, define_wasi
from .broker_client import BrokerClient
from .memory import GuestMemory, MissingMemory
from .wasi import ProcExit, WasiState, exit_status


def make_engine(fuel: bool, options: EngineOptions = EngineOptions()) -> wasmtime.Engine:
    """The engine of a child (its settings are part of the cache key: EngineOptions.fingerprint)."""
    return wasmtime.Engine(options.make_config(fuel=fuel))


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks)


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "unknown error"


def load_module(engine: wasmtime.Engine, setup: Setup, data: bytes) -> wasmtime.Module:
    if data[:4] == b"\x7fELF":
        raise ModuleError("a precompiled artifact (.cwasm), not a module: wasijail compiles every module itself,"
                          " inside the sandbox, and never runs native code from its input")
    if setup.is_wat:
        try:
            data = wasmtime.wat2wasm(data.decode("utf-8", "replace"))
        except wasmtime.WasmtimeError as exc:
            raise ModuleError(wat_error(str(exc))) from None
    if data[:4] != b"\0asm":
        raise ModuleError("not a WebAssembly module (bad magic number)")
    if len(data) >= 8 and data[4:8] != b"\x01\0\0\0":
        raise ModuleError("a WebAssembly component, not a core module: wasijail runs WASI preview1 modules")
    try:
        return wasmtime.Module(engine, data)
    except wasmtime.WasmtimeError as exc:
        raise ModuleError(f"invalid WebAssembly module: {_describe(exc)}") from None


def wat_error(text: str) -> str:
    """wasmtime's text-format error as `LINE:COL: message` (the supervisor puts the file name before it)."""
    match = re.search(r"-->\s*\S*?:(\d+):(\d+)", text)
    message = _first_line(text)
    return f"{match[1]}:{match[2]}: {message}" if match else f"invalid WebAssembly text: {message}"


#: A backtrace frame line of a wasm trap: "    12: 0x1d - <unknown>!<wasm function 0>".
_FRAME = re.compile(r"^\s*\d+:\s*(?:0x[0-9a-f]+ - )?(.*)$")


def fold_backtrace(text: str, *, keep: int = 3) -> str:
    """A trap's text with runs of the same frame folded into one line.

    A stack overflow's backtrace repeats one function thousands of times;
    the first ``keep`` frames of a run stay and the rest become
    ``... 4,000 more frames of <wasm function 0>``.
    """
    out: list[str] = []
    run_name, run_length = None, 0

    def flush() -> None:
        if run_length > keep:
            out.append(f"    ... {run_length - keep:,} more frames of {run_name}")

    for line in text.splitlines():
        match = _FRAME.match(line)
        name = match[1] if match else None
        if name is not None and name == run_name:
            run_length += 1
            if run_length <= keep:
                out.append(line)
            continue
        flush()
        run_name, run_length = name, 1 if name is not None else 0
        out.append(line)
    flush()
    return "\n".join(out) + ("\n" if text.endswith("\n") else "")


def _describe(exc: Exception) -> str:
    """wasmtime's messages are multi-line cause chains: join them into one line."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    lines = [ln for ln in lines if ln != "Caused by:"]
    return ": ".join(lines) if lines else "unknown error"


class ModuleError(Exception):
    """The module cannot be loaded, linked or started: one line for the user."""


def check_imports(module: wasmtime.Module, options: EngineOptions) -> None:
    if options.unknown_imports:
        return  # the linker defines every unknown import (as traps or as default values)
    provided = WASI_MODULES if options.preview0 else WASI_MODULES - {"wasi_unstable"}
    for imp in module.imports:
        if imp.module not in provided:
            raise ModuleError(f"unknown import: `{imp.module}::{imp.name}` has not been defined"
                              " (only WASI imports are provided)")


class Artifact:
    """What the supervisor's cache asks of this run: a module to load, or one to hand back.

    `path`: where lockdown mounted the artifact read-only ("" if it did not), for
    wasmtime to map it; `fd` is the same file, copied from when it cannot be mapped."""

    def __init__(self, mode: int, fd: int, path: str = "") -> None:
        self.mode, self.fd, self.path = mode, fd, path

    def load(self, engine: wasmtime.Engine) -> wasmtime.Module | None:
        if self.mode != ArtifactMode.LOAD:
            return None
        try:
            if self.path:
                try:
                    # Mapped, not copied: pages are read as code runs, and the file backs
                    # the memory images as it does for wasmtime-py's own cache.
                    return wasmtime.Module.deserialize_file(engine, self.path)
                except wasmtime.WasmtimeError:
                    pass  # e.g. its mount forbids mapping code: copy it from the descriptor
            return _deserialize_fd(engine, self.fd)
        except (wasmtime.WasmtimeError, OSError, ValueError):
            return None  # not loadable by this engine after all: compile instead
        finally:
            os.close(self.fd)  # the cache's file: closed before any guest code runs
            self.fd = -1

    def produce(self, module: wasmtime.Module) -> int:
        if self.mode != ArtifactMode.PRODUCE:
            return 0
        view = memoryview(module.serialize())
        size = len(view)
        while view:
            view = view[os.write(self.fd, view):]
        os.close(self.fd)  # nothing written after this point can reach the cache
        return size


def _deserialize_fd(engine: wasmtime.Engine, fd: int) -> wasmtime.Module:
    """Module.deserialize straight from a private mapping of the artifact file.

    The fallback where lockdown could not mount the artifact (no namespaces
    here, or the cache lives on a noexec mount): wasmtime-py's Module.deserialize
    wants bytes and copies them once more, and reading the file into bytes
    would be a third copy, so this maps the descriptor the supervisor sent and
    hands wasmtime the mapping, which it copies into its code memory once.
    """
    size = os.fstat(fd).st_size
    with mmap.mmap(fd, size, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE) as view:
        data = (ctypes.c_uint8 * size).from_buffer(view)
        out = ctypes.POINTER(_ffi.wasmtime_module_t)()
        error = _ffi.wasmtime_module_deserialize(engine.ptr(), data, size, ctypes.byref(out))
        del data  # the mapping can close only once no buffer points into it
    if error:
        raise wasmtime.WasmtimeError._from_ptr(error)
    return wasmtime.Module._from_ptr(out)


def run(setup: Setup, module_fd: int, broker: BrokerClient, counters: list[int] | None = None,
        artifact: Artifact | None = None) -> Result:
    limits = setup.limits
    cpu_limit = limits.cpu_time
    options = EngineOptions.decode(setup.engine)
    artifact = artifact or Artifact(ArtifactMode.NONE, -1)
    try:
        try:
            engine = make_engine(limits.fuel is not None, options)
        except wasmtime.WasmtimeError as exc:
            raise ModuleError(f"invalid engine settings: {_describe(exc)}") from None
        module = artifact.load(engine)
        if module is None:  # the module's bytes are read only when there is something to compile
            module = load_module(engine, setup, _read_all(module_fd))
        else:
            os.close(module_fd)
        check_imports(module, options)
    except ModuleError as exc:
        return Result(ChildOutcome.ERROR, 1, 0, 0, str(exc).encode())
    # Wait for the supervisor to take the artifact (and start the guest's clocks:
    # cpu_time and timeout count from here, not from the start of the compile)
    # before any guest code runs.
    broker.ask(Compiled(artifact.produce(module)))
    if cpu_limit is not None:
        try:
            _start_guest_clock(cpu_limit)
        except (OSError, ValueError) as exc:  # never run the guest with the compile's budget too
            return Result(ChildOutcome.ERROR, 1, 0, 0, f"cannot limit the guest's CPU time: {exc}".encode())
    store = wasmtime.Store(engine)
    # wasmtime's own sentinel: -1 is no limit
    store.set_limits(memory_size=_or_unlimited(limits.memory), table_elements=_or_unlimited(limits.table_elements),
                     **options.store_limits())
    if limits.fuel is not None:
        store.set_fuel(limits.fuel)
    watchdog = None
    if cpu_limit is not None and cpu_limit != int(cpu_limit):
        # Whole seconds are exactly what RLIMIT_CPU (set in lockdown) enforces; only a
        # fractional limit needs the watchdog's finer clock.
        watchdog = CpuWatchdog(time.process_time() + cpu_limit)
        watchdog.start()
    state = WasiState(
        args=(setup.module_name, *setup.args), env=setup.env, broker=broker,
        preopens=list(zip(setup.preopen_names, setup.preopen_readonly)),
        open_files=limits.open_files, file_size=limits.file_size, disk=limits.disk,
    )
    if counters is not None:
        state.io = counters  # bytes read, bytes written: shared so they survive a trap
    linker = wasmtime.Linker(engine)
    # The module's own WASI imports only: the rest would resolve nothing.
    define_wasi(linker, state, preview0=options.preview0,
                only=frozenset((imp.module, imp.name) for imp in module.imports))
    if options.unknown_imports == "trap":
        linker.define_unknown_imports_as_traps(module)
    elif options.unknown_imports == "default":
        linker.define_unknown_imports_as_default_values(store, module)
    state.memory = GuestMemory(store, None)  # until instantiation: a start function may call WASI
    try:
        instance = linker.instantiate(store, module)
    except wasmtime.WasmtimeError as exc:
        return Result(ChildOutcome.ERROR, 1, 0, 0, f"failed to instantiate: {_describe(exc)}".encode())
    except (wasmtime.Trap, ProcExit, MissingMemory) as exc:
        return _ended(exc, watchdog)
    exports = instance.exports(store)
    memory = exports.get("memory")
    state.memory = GuestMemory(store, memory if isinstance(memory, wasmtime.Memory) else None)
    entry_name = setup.invoke.decode() if setup.invoke else "_start"
    entry = exports.get(entry_name)
    if not isinstance(entry, wasmtime.Func):
        if setup.invoke:
            return Result(ChildOutcome.ERROR, 1, 0, 0, f"failed to find export `{entry_name}`".encode())
        return Result(ChildOutcome.ERROR, 1, 0, 0, b"module has no `_start` export: not a WASI command")
    ty = entry.type(store)
    if not setup.invoke and (ty.params or ty.results):
        return Result(ChildOutcome.ERROR, 1, 0, 0, b"`_start` must take no parameters and return nothing")
    try:
        args = _invoke_args(ty, setup.invoke_args) if setup.invoke else []
    except ValueError as exc:
        return Result(ChildOutcome.ERROR, 1, 0, 0, str(exc).encode())
    try:
        results = entry(store, *args)
    except (wasmtime.Trap, wasmtime.WasmtimeError, ProcExit, MissingMemory) as exc:
        return _ended(exc, watchdog)
    if setup.invoke:
        _print_results(results)
        return Result(ChildOutcome.INVOKED, 0, 0, 0, b"")
    return Result(ChildOutcome.EXIT, 0, 0, 0, b"")


def _ended(exc: BaseException, watchdog: "CpuWatchdog | None") -> Result:
    """The Result for however the guest stopped running early."""
    if isinstance(exc, ProcExit):
        return _exited(exc.code)
    if isinstance(exc, MissingMemory):
        return Result(ChildOutcome.ERROR, 1, 0, 0, b"the module calls WASI but exports no `memory`")
    code = exc.trap_code if isinstance(exc, wasmtime.Trap) else None
    if code is wasmtime.TrapCode.OUT_OF_FUEL:
        return Result(ChildOutcome.LIMIT, 1, 0, 0, b"fuel: all fuel consumed")
    return Result(ChildOutcome.TRAP, 134, 0, 0, fold_backtrace(str(exc)).encode())


def _or_unlimited(value: int | None) -> int:
    return -1 if value is None else value


def _start_guest_clock(cpu_limit: float) -> None:
    """RLIMIT_CPU from here on: what the compile used plus the guest's cpu_time.

    Lockdown set it to cover the compile too (the guest's time plus compile_timeout
    on every core); lowering a limit needs no privilege, and the filter lets the
    child change only its own RLIMIT_CPU. The kernel counts whole seconds; the
    watchdog enforces a fraction."""
    seconds = max(1, math.ceil(time.process_time() + cpu_limit))
    resource.setrlimit(resource.RLIMIT_CPU, (seconds, seconds + 1))


class CpuWatchdog(threading.Thread):
    """Ends the process with SIGXCPU once it has used its CPU time.

    RLIMIT_CPU does the same, but only in whole seconds; this thread checks
    every 20 ms, and wasm keeps running at full speed (no epoch checks), since
    ctypes calls into wasm release the GIL for it to look.
    """

    POLL = 0.02

    def __init__(self, limit: float) -> None:
        super().__init__(name="wasijail-cpu-watchdog", daemon=True)
        self.limit = limit  # in process_time(): the compile's CPU before the guest started is not the guest's

    def run(self) -> None:
        while time.process_time() < self.limit:
            time.sleep(self.POLL)
        # tgkill to our own main thread: the one way to signal that the filter allows.
        signal.pthread_kill(threading.main_thread().ident, signal.SIGXCPU)


def _exited(code: int) -> Result:
    status = exit_status(code)
    if status is None:
        return Result(ChildOutcome.ERROR, 1, 0, 0, f"invalid exit status {code}: outside of [0..126)".encode())
    return Result(ChildOutcome.EXIT, status, 0, 0, b"")


def _invoke_args(ty: wasmtime.FuncType, raw: tuple[bytes, ...]) -> list:
    if len(raw) != len(ty.params):
        raise ValueError(f"invoked function expects {len(ty.params)} arguments, got {len(raw)}")
    values = []
    for text, param in zip(raw, ty.params):
        kind = str(param)
        try:
            values.append(float(text) if kind in ("f32", "f64") else int(text, 0))
        except ValueError:
            raise ValueError(f"argument {text.decode(errors='replace')!r} is not a valid {kind}") from None
    return values


def _print_results(results) -> None:
    if results is None:
        return
    for value in results if isinstance(results, (list, tuple)) else [results]:
        os.write(1, f"{value}\n".encode())


def child_main(sock_fd: int, artifact_path: str = "") -> None:
    """Entry of a child process: serve one run, report, exit. `artifact_path`: where lockdown
    mounted the cached artifact ("" when it did not)."""
    sock = socket.socket(fileno=sock_fd)
    broker = BrokerClient(sock)
    data, fds = transport.receive(sock)
    start = decode_start(data)
    setup_fd, module_fd, *artifact_fd = fds
    setup = Setup.decode(_read_all(setup_fd))
    artifact = Artifact(start.artifact, artifact_fd[0] if artifact_fd else -1, artifact_path)
    counters: list[int] = [0, 0]
    try:
        result = run(setup, module_fd, broker, counters, artifact)
    except Exception as exc:  # a bug in wasijail, not in the guest: say so
        result = Result(ChildOutcome.ERROR, 1, 0, 0, f"internal error in the child: {type(exc).__name__}: {exc}".encode())
    broker.report(result._replace(bytes_read=counters[0], bytes_written=counters[1]))
    sys.stdout.flush()
    os._exit(0)
