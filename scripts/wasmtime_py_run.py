#!/usr/bin/env python3
"""Run a WASI module in-process under wasmtime-py's own WASI, for scripts/bench.

    wasmtime_py_run.py [--cache DIR] [--dir HOST[::GUEST]]... MODULE [ARGS...]

The baseline a Python user gets without wasijail: one process, wasmtime-py's
`Linker.define_wasi` (wasmtime's Rust WASI, preview1 only: it has no
`wasi_unstable`, so the tutorial's demo.wat needs its preview1 copy
tests/programs/demo_p1.wat), preopens through `WasiConfig.preopen_dir`,
argv[0] = the module's file name (as wasijail and the wasmtime CLI), no
environment, stdio inherited. `.wat` files are compiled from text. Exit status:
the module's (proc_exit or 0 from `_start`), 134 on a trap, 1 on a load error.

--cache DIR: wasmtime-py's own warm start, as a user who caches would do it:
the first run compiles and writes `Module.serialize()` to DIR (named by the
module file's path, size and mtime, so no run hashes the module); later runs
load it with `Module.deserialize_file`, which maps the file.
"""

from __future__ import annotations

import hashlib
import os
import sys

import wasmtime


def main(argv: list[str]) -> int:
    dirs: list[tuple[str, str]] = []
    cache: str | None = None
    while argv and argv[0].startswith(("--dir", "--cache")):
        flag = argv.pop(0)
        value = flag.split("=", 1)[1] if "=" in flag else argv.pop(0)
        if flag.startswith("--cache"):
            cache = value
            continue
        host, _, guest = value.partition("::")
        dirs.append((host, guest.partition("::")[0] or host))
    if not argv:
        sys.stderr.write(__doc__)
        return 2
    module_path, *args = argv

    engine = wasmtime.Engine()
    try:
        module = load(engine, module_path, cache)
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


def load(engine: wasmtime.Engine, module_path: str, cache: str | None) -> wasmtime.Module:
    if cache is None:
        return wasmtime.Module.from_file(engine, module_path)  # .wat or .wasm
    st = os.stat(module_path)
    name = hashlib.sha256(f"{os.path.abspath(module_path)}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()
    artifact = os.path.join(cache, name + ".cwasm")
    if os.path.exists(artifact):
        return wasmtime.Module.deserialize_file(engine, artifact)
    module = wasmtime.Module.from_file(engine, module_path)
    os.makedirs(cache, exist_ok=True)
    with open(artifact + ".tmp", "wb") as f:
        f.write(module.serialize())
    os.replace(artifact + ".tmp", artifact)
    return module


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
