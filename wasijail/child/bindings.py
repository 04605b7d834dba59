"""Registers the WASI host functions with a wasmtime Linker.

The one place that knows how wasmtime-py calls into Python: it converts the
guest's signed integers to the unsigned values WASI means, and every exception
a host function raises into the errno the guest should see.
"""

from __future__ import annotations

import struct

import wasmtime

from ..wasi import SNAPSHOTS, Errno, errno_from_host
from .fdtable import WasiError
from .memory import Fault
from .wasi import WasiHost, WasiState

_VALTYPES = {"i32": wasmtime.ValType.i32, "i64": wasmtime.ValType.i64}
_MASKS = {"i32": 0xFFFFFFFF, "i64": 0xFFFFFFFFFFFFFFFF}


def _wrap(method, params: tuple[str, ...]):
    masks = tuple(_MASKS[p] for p in params)

    def call(*args: int) -> int:
        try:
            return method(*[a & m for a, m in zip(args, masks)])
        except WasiError as exc:
            return exc.errno
        except OSError as exc:
            return errno_from_host(exc.errno)
        except (Fault, struct.error):
            return Errno.FAULT
        except OverflowError:
            return Errno.OVERFLOW

    call.__name__ = method.__name__
    return call


def define_wasi(linker: wasmtime.Linker, state: WasiState) -> None:
    """Define every function of every snapshot (preview1 and preview0)."""
    for snapshot in SNAPSHOTS:
        host = WasiHost(state, snapshot)
        for name, (params, results) in snapshot.functions.items():
            ty = wasmtime.FuncType([_VALTYPES[p]() for p in params],
                                   [_VALTYPES[r]() for r in results])
            method = getattr(host, name)
            func = method if name == "proc_exit" else _wrap(method, params)
            linker.define_func(snapshot.module, name, ty, _unsigned_exit(func) if name == "proc_exit" else func)


def _unsigned_exit(method):
    def proc_exit(code: int) -> None:
        method(code & 0xFFFFFFFF)

    return proc_exit


WASI_MODULES = frozenset(s.module for s in SNAPSHOTS)
