"""Raw host callbacks: WASI host functions on wasmtime's unchecked C API.

`Linker.define_func` routes every call through wasmtime-py's generic
trampoline, which builds a `Caller`, a `Val` per parameter and another for
the result: about 8 µs a call here (a no-op host function), more than a small
`fd_read` itself costs. Here each host function is registered with
`wasmtime_linker_define_func_unchecked` and a ctypes callback made for its
signature, which reads the parameters straight out of the
`wasmtime_val_raw_t` array and writes the errno back into slot 0: about
0.35 µs a call.

What the checked path did, this one does too (`tests/test_fastcall.py`
checks each point, and that the private wasmtime-py pieces used here still
look as expected):

* i32 and i64 parameters arrive unsigned: the raw slots are read as
  `uint32` (an i64 is two of them, little-endian), exactly the values
  `a & 0xFFFFFFFF` / `a & 0xFFFFFFFFFFFFFFFF` gave.
* An exception in `ERRNO_EXCEPTIONS` becomes the errno `errno_of` says, the
  one mapping both paths use.
* Any other exception (`ProcExit` from `proc_exit`, `MissingMemory`, a
  broken broker, a bug) unwinds the guest: the callback returns a trap made
  with `wasmtime_trap_new` and leaves the exception where wasmtime-py's own
  trampoline leaves it (`wasmtime._func.LAST_EXCEPTION`). wasmtime-py
  re-raises it when the call into wasm (`Func.__call__`,
  `Linker.instantiate`) returns with a trap, so callers see the very
  exception the host function raised, as before.
* Guest memory is still touched only through `GuestMemory`, whose bounds
  checks are unchanged: this module sees integers, never guest pointers.

Lifetime: the ctypes thunks (one per signature) live as long as the process
(a freed thunk would be a jump into freed memory); a definition's method
stays in `_METHODS[env]` until wasmtime calls `_finalize(env)`, when the last
instance using the definition is gone.
"""

from __future__ import annotations

import ctypes
import itertools
import struct
import sys
from typing import Callable

import wasmtime
import wasmtime._func as _wasmtime_func
from wasmtime import _bindings
from wasmtime import _ffi as ffi

from ..wasi import Errno, WasiErrno, errno_from_host
from .memory import Fault

# -- the exception -> errno mapping (shared with bindings.py's checked path) ----------

ERRNO_EXCEPTIONS: tuple[type[BaseException], ...] = (WasiErrno, OSError, Fault, struct.error, OverflowError)


def errno_of(exc: BaseException) -> int:
    """The errno the guest sees for an exception in ERRNO_EXCEPTIONS (in this order)."""
    if isinstance(exc, WasiErrno):
        return exc.errno
    if isinstance(exc, OSError):
        return errno_from_host(exc.errno)
    if isinstance(exc, (Fault, struct.error)):
        return Errno.FAULT
    if isinstance(exc, OverflowError):
        return Errno.OVERFLOW
    raise exc  # not an errno: unwind (the callbacks turn this into a trap)


# -- the raw ABI ---------------------------------------------------------------------------

# wasmtime_func_unchecked_callback_t is
#   wasm_trap_t *(*)(void *env, wasmtime_caller_t *caller,
#                    wasmtime_val_raw_t *args_and_results, size_t num_args_and_results)
# wasmtime-py declares it with POINTER(...) argument types, which make ctypes
# build a pointer object per argument on every call. This prototype has the
# same C signature but cheap conversions: env and caller as plain ints, and
# the value array as uint32_t*, so `a[i]` is an int with no union object.
CALLBACK = ctypes.CFUNCTYPE(ctypes.c_size_t, ctypes.c_void_p, ctypes.c_void_p,
                            ctypes.POINTER(ctypes.c_uint32), ctypes.c_size_t)
FINALIZER = ctypes.CFUNCTYPE(None, ctypes.c_void_p)

SLOT_WORDS = ctypes.sizeof(ffi.wasmtime_val_raw_t) // 4  # uint32 words per value slot (16 bytes: 4)

_TRAP_MESSAGE = b"wasijail: host function unwound the guest"
_TRAP_BUFFER = ctypes.create_string_buffer(_TRAP_MESSAGE)


class FastcallUnavailable(Exception):
    """This wasmtime-py does not have what fastcall relies on (see check_bindings)."""


def check_bindings() -> None:
    """Fail loudly if wasmtime-py's low-level pieces are not what this module was written for."""
    problems = []
    if sys.byteorder != "little":
        problems.append("big-endian host: raw slots are read as little-endian words")
    raw = ffi.wasmtime_val_raw_t
    fields = dict(raw._fields_) if hasattr(raw, "_fields_") else {}
    if fields.get("i32") is not ctypes.c_int32 or fields.get("i64") is not ctypes.c_int64:
        problems.append("wasmtime_val_raw_t has no int32 `i32` / int64 `i64` field")
    elif raw.i32.offset != 0 or raw.i64.offset != 0:
        problems.append("wasmtime_val_raw_t's i32/i64 do not start the union")
    if ctypes.sizeof(raw) != 16:
        problems.append(f"wasmtime_val_raw_t is {ctypes.sizeof(raw)} bytes, not 16")
    define = getattr(ffi, "wasmtime_linker_define_func_unchecked", None)
    cb_type = getattr(ffi, "wasmtime_func_unchecked_callback_t", None)
    if define is None or cb_type is None:
        problems.append("no wasmtime_linker_define_func_unchecked / wasmtime_func_unchecked_callback_t")
    else:
        c_define = getattr(_bindings, "_wasmtime_linker_define_func_unchecked", None)
        if c_define is None or len(c_define.argtypes) != 9 or c_define.argtypes[6] is not cb_type:
            problems.append("wasmtime_linker_define_func_unchecked's C signature changed")
        if (cb_type._restype_ is not ctypes.c_size_t or len(cb_type._argtypes_) != 4
                or cb_type._argtypes_[3] is not ctypes.c_size_t):
            problems.append("wasmtime_func_unchecked_callback_t's signature changed")
    if getattr(ffi, "wasmtime_trap_new", None) is None:
        problems.append("no wasmtime_trap_new")
    if not hasattr(_wasmtime_func, "LAST_EXCEPTION") or not callable(
            getattr(_wasmtime_func, "maybe_raise_last_exn", None)):
        problems.append("wasmtime._func no longer carries LAST_EXCEPTION out of a trap")
    if problems:
        raise FastcallUnavailable("; ".join(problems))


def _carry(exc: BaseException) -> int:
    """Park `exc` where wasmtime-py re-raises it, and return a new trap to unwind the guest."""
    _wasmtime_func.LAST_EXCEPTION = exc
    trap = ffi.wasmtime_trap_new(_TRAP_BUFFER, len(_TRAP_MESSAGE))
    # Ownership passes to wasmtime. (NULL, out of memory, would let the guest
    # go on; proc_exit's caller then traps on `unreachable`, and the parked
    # exception still surfaces.)
    return ctypes.cast(trap, ctypes.c_void_p).value or 0


class _SlotCountError(Exception):
    pass


# -- callbacks: one generated body and one ctypes thunk per signature -------------------------
#
# The thunks are made once per process (bindings.py prepares every WASI
# signature at import, so the fork server makes them and each child inherits
# them: making ~90 thunks and compiling ~17 bodies in every child cost about
# 2 ms a run). A definition is a thunk plus an `env` number; the callback
# finds the host method in _METHODS[env].

_METHODS: dict[int, Callable] = {}
_ENV_IDS = itertools.count(1)
_BODIES: dict[tuple[tuple[str, ...], int], Callable] = {}
_THUNKS: dict[tuple[tuple[str, ...], int], object] = {}


def _signature(params, results) -> tuple[tuple[str, ...], int]:
    params = tuple(params)
    if len(results) not in (0, 1):
        raise ValueError("WASI functions return one errno or nothing")
    for kind in params:
        if kind not in ("i32", "i64"):
            raise ValueError(f"unsupported parameter type {kind!r}")
    return params, len(results)


def raw_callback(params, results) -> Callable:
    """The Python body of the raw callback for a signature: (env, caller, args, n) -> trap or 0."""
    key = _signature(params, results)
    body = _BODIES.get(key)
    if body is not None:
        return body
    params, nresults = key
    args = []
    for k, kind in enumerate(params):
        word = SLOT_WORDS * k
        args.append(f"a[{word}]" if kind == "i32" else f"(a[{word}] | a[{word + 1}] << 32)")
    call = f"methods[env]({', '.join(args)})"
    slots = max(len(params), nresults)
    if nresults:  # errno-returning: errno exceptions are answers, the rest unwinds
        body_src = ("            try:\n"
                    f"                a[0] = {call}\n"
                    "            except catch as exc:\n"
                    "                a[0] = errno_of(exc)\n")
    else:  # proc_exit: everything it raises unwinds (ProcExit carries the status)
        body_src = f"            {call}\n"
    source = (
        "def make(methods, catch, errno_of, carry, SlotCountError):\n"
        "    def call(env, caller, a, n):\n"
        "        try:\n"
        f"            if n != {slots}:\n"
        f"                raise SlotCountError(f'{{n}} value slots, expected {slots}')\n"
        f"{body_src}"
        "            return 0\n"
        "        except BaseException as exc:\n"
        "            return carry(exc)\n"
        "    return call\n"
    )
    namespace: dict = {}
    name = "".join("I" if p == "i64" else "i" for p in params) + ("_i" if nresults else "_")
    exec(compile(source, f"<fastcall {name}>", "exec"), namespace)
    body = namespace["make"](_METHODS, ERRNO_EXCEPTIONS, errno_of, _carry, _SlotCountError)
    _BODIES[key] = body
    return body


def _thunk(params, results):
    key = _signature(params, results)
    thunk = _THUNKS.get(key)
    if thunk is None:
        thunk = _THUNKS[key] = ctypes.cast(CALLBACK(raw_callback(params, results)), _CALLBACK_TYPE)
    return thunk


def register(method: Callable) -> int:
    """A new env number for `method` (released by wasmtime's finalizer, or unregister)."""
    env = next(_ENV_IDS)
    _METHODS[env] = method
    return env


def unregister(env: int) -> None:
    _METHODS.pop(env, None)


@FINALIZER
def _finalize(env):  # called by wasmtime when the last user of a definition is gone
    _METHODS.pop(env or 0, None)


_CALLBACK_TYPE = getattr(ffi, "wasmtime_func_unchecked_callback_t", None)


# -- registration ----------------------------------------------------------------------------

class Import:
    """One host function, ready to define in any linker: names and thunk made once.

    The FuncType is not kept: wasmtime's C API ties a wasm_functype_t to the
    first engine it is used with (and aborts the process if it meets another),
    so types are made per linker.
    """

    __slots__ = ("module", "name", "params", "results", "_module_buf", "_name_buf", "_thunk")

    def __init__(self, module: str, name: str, params, results):
        self.module, self.name = module, name
        self.params, self.results = tuple(params), tuple(results)
        self._module_buf = ctypes.create_string_buffer(module.encode())
        self._name_buf = ctypes.create_string_buffer(name.encode())
        self._thunk = None

    def prepare(self) -> None:
        """Make the callback now (bindings.py does it at import, in the fork server)."""
        if self._thunk is None:
            self._thunk = _thunk(self.params, self.results)

    def define(self, linker: wasmtime.Linker, ty: wasmtime.FuncType, method: Callable) -> None:
        """Define this import in `linker`, with type `ty`, as a raw callback into `method`."""
        self.prepare()
        env = register(method)
        try:
            error = ffi.wasmtime_linker_define_func_unchecked(
                linker.ptr(), self._module_buf, len(self._module_buf) - 1, self._name_buf,
                len(self._name_buf) - 1, ty.ptr(), self._thunk, env, _finalize)
        except BaseException:
            unregister(env)
            raise
        if error:
            unregister(env)  # not defined (wasmtime may or may not have called _finalize)
            raise wasmtime.WasmtimeError._from_ptr(error)


def define(linker: wasmtime.Linker, module: str, name: str, ty: wasmtime.FuncType,
           method: Callable, params: tuple[str, ...], results: tuple[str, ...]) -> None:
    """Define `module.name` in `linker` as a raw callback into `method` (a one-off Import)."""
    Import(module, name, params, results).define(linker, ty, method)


def live_definitions() -> int:
    """How many raw callbacks wasmtime still holds (for tests)."""
    return len(_METHODS)
