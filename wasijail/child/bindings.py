"""Registers the WASI host functions with a wasmtime Linker.

The one place that decides how wasmtime calls into Python. Every function is
a raw callback (`fastcall.py`: wasmtime's unchecked API, about 0.3 µs a call
instead of wasmtime-py's 8 µs trampoline) that hands the host method the
guest's integers as the unsigned values WASI means and answers with an errno;
an exception in `fastcall.ERRNO_EXCEPTIONS` becomes the errno
`fastcall.errno_of` says, any other (`ProcExit` above all) unwinds the guest
and surfaces from the call into wasm.

`define_wasi(..., fast=False)` uses wasmtime-py's checked `define_func`
instead, with the same conversions: the reference the fast path is tested
against, and the fallback should a wasmtime-py release drop what fastcall
needs (`fastcall.check_bindings()` says what).
"""

from __future__ import annotations

import wasmtime

from ..wasi import SNAPSHOTS
from . import fastcall
from .fastcall import ERRNO_EXCEPTIONS, errno_of
from .wasi import WasiHost, WasiState

_VALTYPES = {"i32": wasmtime.ValType.i32, "i64": wasmtime.ValType.i64}
_MASKS = {"i32": 0xFFFFFFFF, "i64": 0xFFFFFFFFFFFFFFFF}

try:
    fastcall.check_bindings()
    FAST = True
except fastcall.FastcallUnavailable:
    FAST = False


def _wrap(method, params: tuple[str, ...]):
    """The checked path: mask to unsigned, exceptions to errnos (errno_of) or up."""
    masks = tuple(_MASKS[p] for p in params)

    def call(*args: int) -> int:
        try:
            return method(*[a & m for a, m in zip(args, masks)])
        except ERRNO_EXCEPTIONS as exc:
            return errno_of(exc)

    call.__name__ = method.__name__
    return call


def _unsigned_exit(method):
    def proc_exit(code: int) -> None:
        method(code & 0xFFFFFFFF)

    return proc_exit


def define_wasi(linker: wasmtime.Linker, state: WasiState, *, fast: bool | None = None) -> None:
    """Define every function of every snapshot (preview1 and preview0)."""
    fast = FAST if fast is None else fast
    types: dict[tuple, wasmtime.FuncType] = {}
    for snapshot in SNAPSHOTS:
        host = WasiHost(state, snapshot)
        for name, (params, results) in snapshot.functions.items():
            ty = types.get((params, results))
            if ty is None:
                ty = types[(params, results)] = wasmtime.FuncType(
                    [_VALTYPES[p]() for p in params], [_VALTYPES[r]() for r in results])
            method = getattr(host, name)
            if fast:
                fastcall.define(linker, snapshot.module, name, ty, method, params, results)
            elif name == "proc_exit":
                linker.define_func(snapshot.module, name, ty, _unsigned_exit(method))
            else:
                linker.define_func(snapshot.module, name, ty, _wrap(method, params))


WASI_MODULES = frozenset(s.module for s in SNAPSHOTS)

if FAST:  # at import, so in the fork server: children inherit the callbacks ready-made
    fastcall.prepare({sig for snapshot in SNAPSHOTS for sig in snapshot.functions.values()})
