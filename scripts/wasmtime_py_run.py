#!/usr/bin/env python3
"""Run a WASI module in-process under wasmtime-py's own WASI, for scripts/bench.

    wasmtime_py_run.py [--dir HOST[::GUEST]]... [--invoke-count] MODULE [ARGS...]

The baseline a Python user gets without wasijail: one process, wasmtime-py's
`Linker.define_wasi` (wasmtime's Rust WASI, preview1 only: it has no
`wasi_unstable`, so the tutorial's demo.wat needs its preview1 copy
tests/programs/demo_p1.wat), preopens through `WasiConfig.preopen_dir`,
argv[0] = the module's file name (as wasijail and the wasmtime CLI), no
environment, stdio inherited. `.wat` files are compiled from text. Exit status:
the module's (proc_exit or 0 from `_start`), 134 on a trap, 1 on a load error.
"""

from __future__ import annotations

import os
import sys

import wasmtime


def main(argv: list[str]) -> int:
    dirs: list[tuple[str, str]] = []
    while argv and argv[0].startswith("--dir"):
        flag = argv.pop(0)
        value = flag.split("=", 1)[1] if "=" in flag else argv.pop(0)
        host, _, guest = value.partition("::")
        dirs.append((host, guest or host))
    if not argv:
        sys.stderr.write(__doc__)
        return 2
    module_path, *args = argv

    engine = wasmtime.Engine()
    try:
        module = wasmtime.Module.from_file(engine, module_path)  # .wat or .wasm
    except wasmtime.WasmtimeError as exc:
        sys.stderr.write(f"wasmtime_py_run: {module_path}: {exc}\n")
        return 1
    config = wasmtime.WasiConfig()
    config.argv = [os.path.basename(module_path), *args]
    for host, guest in dirs:
        config.preopen_dir(host, guest)
    config.inherit_stdin()
    config.inherit_stdout()
    config.inherit_stderr()
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    store = wasmtime.Store(engine)
    store.set_wasi(config)
    try:
        instance = linker.instantiate(store, module)
        start = instance.exports(store)["_start"]
        assert isinstance(start, wasmtime.Func)
        start(store)
    except wasmtime.ExitTrap as exc:
        return exc.code
    except wasmtime.Trap as exc:
        sys.stderr.write(f"Error: {exc}\n")
        return 134
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
