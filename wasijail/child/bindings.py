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

from ..wasi import SNAPSHOTS, Snapshot
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


def define_wasi(linker: wasmtime.Linker, state: WasiState, *, fast: bool | None = None,
                preview0: bool = True, only: frozenset[tuple[str, str]] | None = None) -> None:
    """Define every function of every snapshot (preview1, and preview0 unless told not to);
    with `only`, just those of its (module, name) pairs (a module's imports: defining the
    rest costs a fresh child ~1.5 ms and resolves nothing)."""
    fast = FAST if fast is None else fast
    types: dict[tuple, wasmtime.FuncType] = {}  # per linker: a FuncType must not meet two engines
    for snapshot, imports in _IMPORTS:
        if snapshot.module == "wasi_unstable" and not preview0:
            continue
        host = WasiHost(state, snapshot)
        for imp in imports:
            if only is not None and (snapshot.module, imp.name) not in only:
                continue
            ty = types.get((imp.params, imp.results))
            if ty is None:
                ty = types[(imp.params, imp.results)] = wasmtime.FuncType(
                    [_VALTYPES[p]() for p in imp.params], [_VALTYPES[r]() for r in imp.results])
            method = getattr(host, imp.name)
            if fast:
                imp.define(linker, ty, method)
            elif imp.name == "proc_exit":
                linker.define_func(snapshot.module, imp.name, ty, _unsigned_exit(method))
            else:
                linker.define_func(snapshot.module, imp.name, ty, _wrap(method, imp.params))


WASI_MODULES = frozenset(s.module for s in SNAPSHOTS)

# Every WASI function as a fastcall.Import, with its callback made here, at
# import, so in the fork server: children inherit them ready-made (making them
# in each child cost about 2 ms a run).
_IMPORTS: list[tuple[Snapshot, list[fastcall.Import]]] = [
    (snapshot, [fastcall.Import(snapshot.module, name, params, results)
                for name, (params, results) in snapshot.functions.items()])
    for snapshot in SNAPSHOTS
]
if FAST:
    for _, _imports in _IMPORTS:
        for _imp in _imports:
            _imp.prepare()
