"""The raw host-call path (wasijail/child/fastcall.py) against the checked one.

fastcall leans on private pieces of wasmtime-py (the ctypes bindings of the
unchecked C API, the raw value layout, `wasmtime._func.LAST_EXCEPTION`). If
a wasmtime-py release moves any of them, the first tests here fail by name;
the rest check that the fast path converts, answers and unwinds exactly as
wasmtime-py's checked `define_func` path with bindings._wrap does.
"""

from __future__ import annotations

import ctypes
import errno
import gc
import struct
import sys

import pytest
import wasmtime
import wasmtime._func

from wasijail.child import bindings, fastcall
from wasijail.child.memory import Fault, GuestMemory
from wasijail.child.wasi import ProcExit, WasiState
from wasijail.wasi import Errno, WasiErrno, errno_from_host

# -- the bindings fastcall relies on ---------------------------------------------------------


def test_wasmtime_py_bindings_are_what_fastcall_expects():
    fastcall.check_bindings()  # raises FastcallUnavailable naming what changed


def test_the_child_uses_the_fast_path():
    assert bindings.FAST, "bindings.py fell back to wasmtime-py's 8 µs trampoline"


def test_raw_value_layout():
    raw = wasmtime._ffi.wasmtime_val_raw_t
    assert sys.byteorder == "little"
    assert ctypes.sizeof(raw) == 16 and fastcall.SLOT_WORDS == 4
    assert raw.i32.offset == 0 and raw.i64.offset == 0
    assert dict(raw._fields_)["i32"] is ctypes.c_int32
    assert dict(raw._fields_)["i64"] is ctypes.c_int64


def test_unchecked_callback_signature():
    cb = wasmtime._ffi.wasmtime_func_unchecked_callback_t
    assert cb._restype_ is ctypes.c_size_t
    assert len(cb._argtypes_) == 4
    assert cb._argtypes_[2]._type_ is wasmtime._ffi.wasmtime_val_raw_t
    assert cb._argtypes_[3] is ctypes.c_size_t
    # fastcall's own prototype must be the same C signature
    assert ctypes.sizeof(fastcall.CALLBACK) == ctypes.sizeof(cb)
    assert fastcall.CALLBACK._restype_ is ctypes.c_size_t
    assert [ctypes.sizeof(t) for t in fastcall.CALLBACK._argtypes_] == [
        ctypes.sizeof(t) for t in cb._argtypes_]


def test_wasmtime_py_still_reraises_a_parked_exception():
    assert hasattr(wasmtime._func, "LAST_EXCEPTION")
    wasmtime._func.LAST_EXCEPTION = KeyError("parked")
    with pytest.raises(KeyError, match="parked"):
        wasmtime._func.maybe_raise_last_exn()
    assert wasmtime._func.LAST_EXCEPTION is None


# -- raw callbacks, one host function at a time ---------------------------------------------

WAT = """
(module
  (import "t" "f" (func $f (param i32 i64 i32) (result i32)))
  (import "t" "none" (func $none (result i32)))
  (import "t" "exit" (func $exit (param i32)))
  (func (export "f") (param i32 i64 i32) (result i32)
    (call $f (local.get 0) (local.get 1) (local.get 2)))
  (func (export "none") (result i32) (call $none))
  (func (export "exit") (param i32) (call $exit (local.get 0))))
"""
F_PARAMS = ("i32", "i64", "i32")
F_RESULTS = ("i32",)


class Host:
    """Records what it was called with and does what `action` says."""

    def __init__(self, action=None):
        self.action = action
        self.calls: list[tuple] = []

    def f(self, *args):
        self.calls.append(args)
        if isinstance(self.action, BaseException):
            raise self.action
        return self.action if self.action is not None else 0

    def none(self):
        return self.f()

    def exit(self, code):
        self.calls.append((code,))
        raise ProcExit(code)


def instantiate(host: Host, fast: bool):
    engine = wasmtime.Engine()
    store = wasmtime.Store(engine)
    linker = wasmtime.Linker(engine)
    i32, i64 = wasmtime.ValType.i32(), wasmtime.ValType.i64()
    sigs = {"f": ([i32, i64, i32], [i32], F_PARAMS, F_RESULTS), "none": ([], [i32], (), F_RESULTS),
            "exit": ([i32], [], ("i32",), ())}
    for name, (p, r, params, results) in sigs.items():
        ty = wasmtime.FuncType(p, r)
        method = getattr(host, name)
        if fast:
            fastcall.define(linker, "t", name, ty, method, params, results)
        elif name == "exit":
            linker.define_func("t", name, ty, bindings._unsigned_exit(method))
        else:
            linker.define_func("t", name, ty, bindings._wrap(method, params))
    instance = linker.instantiate(store, wasmtime.Module(engine, WAT))
    exports = instance.exports(store)
    return store, {name: exports[name] for name in sigs}


@pytest.mark.parametrize("args", [
    (0, 0, 0),
    (1, 2, 3),
    (-1, -1, -1),
    (-2**31, -2**63, 2**31 - 1),
    (0x7FFFFFFF, 2**63 - 1, -0x80000000),
    (-5, 0x123456789, 7),
])
def test_parameters_arrive_unsigned_as_on_the_checked_path(args):
    seen = []
    for fast in (True, False):
        host = Host()
        store, funcs = instantiate(host, fast)
        assert funcs["f"](store, *args) == 0
        seen.append(host.calls)
    assert seen[0] == seen[1]
    expected = (args[0] & 0xFFFFFFFF, args[1] & 0xFFFFFFFFFFFFFFFF, args[2] & 0xFFFFFFFF)
    assert seen[0] == [expected]


@pytest.mark.parametrize("action, expected", [
    (0, 0),
    (Errno.BADF, Errno.BADF),
    (12345, 12345),
    (WasiErrno(Errno.NOTCAPABLE), Errno.NOTCAPABLE),
    (OSError(errno.ENOENT, "gone"), errno_from_host(errno.ENOENT)),
    (FileNotFoundError(errno.ENOENT, "gone"), errno_from_host(errno.ENOENT)),
    (OSError(errno.EMFILE, "full"), errno_from_host(errno.EMFILE)),
    (OSError("no errno"), Errno.IO),
    (Fault("out of bounds"), Errno.FAULT),
    (struct.error("bad pack"), Errno.FAULT),
    (OverflowError("too big"), Errno.OVERFLOW),
])
def test_exceptions_become_the_same_errnos(action, expected):
    answers = []
    for fast in (True, False):
        store, funcs = instantiate(Host(action), fast)
        answers.append(funcs["f"](store, 1, 2, 3))
        answers.append(funcs["none"](store))
    assert answers == [int(expected)] * 4
    assert wasmtime._func.LAST_EXCEPTION is None


class Unexpected(Exception):
    pass


@pytest.mark.parametrize("exc", [Unexpected("a bug"), KeyError("k"), ProcExit(3), KeyboardInterrupt()])
def test_other_exceptions_unwind_the_guest_and_surface_unchanged(exc):
    for fast in (True, False):
        store, funcs = instantiate(Host(exc), fast)
        with pytest.raises(type(exc)) as raised:
            funcs["f"](store, 1, 2, 3)
        assert raised.value is exc
        assert wasmtime._func.LAST_EXCEPTION is None
        # the store is still usable afterwards, as wasmtime-py leaves it
        store2, funcs2 = instantiate(Host(0), fast)
        assert funcs2["f"](store2, 1, 2, 3) == 0


@pytest.mark.parametrize("code, expected", [(0, 0), (7, 7), (125, 125), (200, 200), (-1, 0xFFFFFFFF)])
def test_proc_exit_unwinds_with_its_unsigned_code(code, expected):
    for fast in (True, False):
        host = Host()
        store, funcs = instantiate(host, fast)
        with pytest.raises(ProcExit) as raised:
            funcs["exit"](store, code)
        assert raised.value.code == expected
        assert host.calls == [(expected,)]
        assert wasmtime._func.LAST_EXCEPTION is None


def test_proc_exit_from_a_start_function_surfaces_from_instantiate():
    wat = """(module (import "t" "exit" (func $exit (param i32)))
                     (func $s (call $exit (i32.const 3))) (start $s))"""
    for fast in (True, False):
        host = Host()
        engine = wasmtime.Engine()
        store = wasmtime.Store(engine)
        linker = wasmtime.Linker(engine)
        ty = wasmtime.FuncType([wasmtime.ValType.i32()], [])
        if fast:
            fastcall.define(linker, "t", "exit", ty, host.exit, ("i32",), ())
        else:
            linker.define_func("t", "exit", ty, bindings._unsigned_exit(host.exit))
        with pytest.raises(ProcExit) as raised:
            linker.instantiate(store, wasmtime.Module(engine, wat))
        assert raised.value.code == 3


@pytest.fixture
def registered():
    envs = []

    def register(method):
        envs.append(fastcall.register(method))
        return envs[-1]

    yield register
    for env in envs:
        fastcall.unregister(env)


def test_a_wrong_slot_count_unwinds_instead_of_reading_past_the_array(registered):
    host = Host()
    env = registered(host.f)
    call = fastcall.raw_callback(F_PARAMS, F_RESULTS)
    slots = (ctypes.c_uint32 * 16)(*range(16))
    trap = call(env, None, slots, 2)  # wasmtime always passes 3 for this signature
    try:
        assert trap != 0 and host.calls == []
        assert isinstance(wasmtime._func.LAST_EXCEPTION, fastcall._SlotCountError)
    finally:
        wasmtime._func.LAST_EXCEPTION = None
        wasmtime._ffi.wasm_trap_delete(ctypes.cast(trap, ctypes.POINTER(wasmtime._ffi.wasm_trap_t)))


def test_an_unknown_env_unwinds():
    call = fastcall.raw_callback(F_PARAMS, F_RESULTS)
    slots = (ctypes.c_uint32 * 16)()
    trap = call(10**9, None, slots, 3)
    try:
        assert trap != 0
        assert isinstance(wasmtime._func.LAST_EXCEPTION, KeyError)
    finally:
        wasmtime._func.LAST_EXCEPTION = None
        wasmtime._ffi.wasm_trap_delete(ctypes.cast(trap, ctypes.POINTER(wasmtime._ffi.wasm_trap_t)))


def test_slots_are_read_in_16_byte_steps_and_the_errno_lands_in_slot_0(registered):
    host = Host(action=Errno.NOENT)
    env = registered(host.f)
    call = fastcall.raw_callback(F_PARAMS, F_RESULTS)
    raw = (wasmtime._ffi.wasmtime_val_raw_t * 3)()
    raw[0].i32, raw[1].i64, raw[2].i32 = -7, -(2**40), 9
    words = ctypes.cast(raw, ctypes.POINTER(ctypes.c_uint32))
    assert call(env, None, words, 3) == 0
    assert host.calls == [((-7) & 0xFFFFFFFF, (-(2**40)) & 0xFFFFFFFFFFFFFFFF, 9)]
    assert raw[0].i32 == Errno.NOENT


def test_every_wasi_signature_is_prepared_at_import():
    from wasijail.wasi import SNAPSHOTS

    for snapshot in SNAPSHOTS:
        for params, results in snapshot.functions.values():
            assert fastcall._signature(params, results) in fastcall._THUNKS


def test_definitions_are_released_with_the_store_and_linker():
    gc.collect()
    before = fastcall.live_definitions()
    store, funcs = instantiate(Host(), True)
    assert fastcall.live_definitions() == before + 3
    del store, funcs
    gc.collect()
    assert fastcall.live_definitions() == before


# -- the real WASI host functions through both paths -------------------------------------------

WASI_WAT = """
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
  (import "wasi_unstable" "args_sizes_get" (func $sizes (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "fd_write") (param i32 i32 i32 i32) (result i32)
    (call $fd_write (local.get 0) (local.get 1) (local.get 2) (local.get 3)))
  (func (export "clock") (param i32 i64 i32) (result i32)
    (call $clock (local.get 0) (local.get 1) (local.get 2)))
  (func (export "sizes") (param i32 i32) (result i32) (call $sizes (local.get 0) (local.get 1)))
  (func (export "exit") (param i32) (call $exit (local.get 0))))
"""


def wasi_instance(fast: bool):
    engine = wasmtime.Engine()
    store = wasmtime.Store(engine)
    linker = wasmtime.Linker(engine)
    state = WasiState(args=(b"prog", b"one"), env=(), broker=None, preopens=[], open_files=16)
    bindings.define_wasi(linker, state, fast=fast)
    instance = linker.instantiate(store, wasmtime.Module(engine, WASI_WAT))
    exports = instance.exports(store)
    memory = exports["memory"]
    state.memory = GuestMemory(store, memory)
    return store, exports, memory


@pytest.mark.parametrize("call, args", [
    ("fd_write", (99, 0, 1, 16)),  # EBADF
    ("fd_write", (1, 0x10000 - 4, 1, 16)),  # iovec straddles the end of memory: EFAULT
    ("fd_write", (1, -8, 1, 16)),  # pointer 0xFFFFFFF8: EFAULT, not a negative index
    ("fd_write", (1, 0, 5000, 16)),  # more iovecs than IOV_MAX: EINVAL
    ("fd_write", (1, 0, 0, 16)),  # nothing to write: 0 bytes, success
    ("clock", (1, -1, 64)),  # monotonic clock, precision u64::MAX: success
    ("clock", (1, 0, 0x10000 - 4)),  # result straddles the end: EFAULT
    ("clock", (77, 0, 64)),  # no such clock: EINVAL
    ("sizes", (0, 4)),
    ("sizes", (0, -1)),  # EFAULT
])
def test_wasi_functions_answer_the_same_on_both_paths(call, args):
    answers = []
    for fast in (True, False):
        store, exports, memory = wasi_instance(fast)
        errno_ = exports[call](store, *args)
        written = bytes(memory.read(store, 0, 128)) if call != "clock" else b""  # clocks move on
        answers.append((errno_, written))
    assert answers[0] == answers[1]


def test_wasi_results_on_the_fast_path():
    store, exports, memory = wasi_instance(True)
    assert exports["fd_write"](store, 99, 0, 1, 16) == Errno.BADF
    assert exports["fd_write"](store, 1, -8, 1, 16) == Errno.FAULT
    assert exports["fd_write"](store, 1, 0, 5000, 16) == Errno.INVAL
    assert exports["clock"](store, 77, 0, 64) == Errno.INVAL
    assert exports["clock"](store, 1, -1, 64) == Errno.SUCCESS
    assert struct.unpack("<Q", memory.read(store, 64, 72))[0] > 0
    assert exports["sizes"](store, 0, 4) == Errno.SUCCESS
    assert struct.unpack("<II", memory.read(store, 0, 8)) == (2, len(b"prog\0one\0"))


@pytest.mark.parametrize("code, expected", [(7, 7), (-1, 0xFFFFFFFF)])
def test_wasi_proc_exit_on_the_fast_path(code, expected):
    store, exports, _ = wasi_instance(True)
    with pytest.raises(ProcExit) as raised:
        exports["exit"](store, code)
    assert raised.value.code == expected


def test_only_the_modules_own_imports_are_defined():
    # A child defines just what its module imports (the rest resolves nothing and cost
    # ~1.5 ms a run): the module still links and answers as with everything defined.
    engine = wasmtime.Engine()
    store = wasmtime.Store(engine)
    linker = wasmtime.Linker(engine)
    module = wasmtime.Module(engine, WASI_WAT)
    wanted = frozenset((imp.module, imp.name) for imp in module.imports)
    state = WasiState(args=(b"prog", b"one"), env=(), broker=None, preopens=[], open_files=16)
    bindings.define_wasi(linker, state, only=wanted)
    exports = linker.instantiate(store, module).exports(store)
    state.memory = GuestMemory(store, exports["memory"])
    assert exports["fd_write"](store, 99, 0, 1, 16) == Errno.BADF
    assert exports["sizes"](store, 0, 4) == Errno.SUCCESS
    for module_name, name in wanted:
        assert isinstance(linker.get(store, module_name, name), wasmtime.Func)
    with pytest.raises(wasmtime.WasmtimeError):
        linker.get(store, "wasi_snapshot_preview1", "fd_read")  # not imported: not defined
    with pytest.raises(wasmtime.WasmtimeError):
        linker.get(store, "wasi_unstable", "fd_write")
