"""`wasijail doctor`: which sandbox layers this host can provide.

`probe_layers()` asks each layer's module (wasijail/sandbox/) to probe for
real (in a throw-away forked child where trying changes the process) and say
why a missing one is missing; `format_report()` renders the result, one line
per layer. The names are the registry's (`wasijail.sandbox.LAYER_NAMES`), so
`[sandbox] require = [...]` and this report speak the same language.
"""

from __future__ import annotations

import importlib
import os
from typing import NamedTuple

from .sandbox import LAYER_NAMES, LAYERS, Layer, LayerSpec, cgroup, userns
from .sandbox.cgroup import PROCESS_OVERHEAD, UNPRIVILEGED_UID, child_threads, own_cgroup_dir, own_v1_dir
from .sandbox.kernel import read_text

__all__ = ["Layer", "LAYER_NAMES", "probe_layer", "probe_layers", "format_report", "Limit", "probe_limits",
           "format_limits"]


def probe_layer(layer: LayerSpec) -> Layer:
    """The probe of one layer, by its module; a module that cannot load is the layer missing."""
    try:
        module = importlib.import_module(f"{__package__}.sandbox.{layer.module}")
    except (ImportError, OSError, RuntimeError) as exc:  # pyseccomp finds no libseccomp, say
        return Layer(layer.name, False, f"wasijail.sandbox.{layer.module} cannot load: {exc}")
    return module.probe()


def probe_layers() -> list[Layer]:
    """Every layer in LAYER_NAMES order, each with why it is (not) there."""
    return [probe_layer(layer) for layer in LAYERS]


def format_report(layers: list[Layer]) -> str:
    """One line per layer: 'seccomp      available  (filter mode, TSYNC, ...)'."""
    return "\n".join(
        f"{layer.name:<12} {'available' if layer.available else 'missing':<9}  ({layer.detail})"
        for layer in layers
    )


# -- limits: what enforces each, on this host ------------------------------------------------


class Limit(NamedTuple):
    name: str
    layer: str  # what enforces it
    detail: str


def _probe_threads() -> Limit:
    """Which mechanism caps a child's threads here (the supervisor makes the same choice)."""
    cap = child_threads()
    v2 = own_cgroup_dir()
    if v2 is not None and "pids" in (read_text(os.path.join(v2, "cgroup.controllers")) or "").split() \
            and os.access(v2, os.W_OK):
        return Limit("threads", "pids cgroup", f"pids.max={cap} per child, cgroup v2 under {v2}")
    v1 = own_v1_dir("pids")
    if v1 is not None and os.access(v1, os.W_OK):
        return Limit("threads", "pids cgroup", f"pids.max={cap} per child, cgroup v1 pids hierarchy under {v1}")
    where = ("set inside its user namespace, where the kernel counts this child's tasks alone;"
             " needs the userns layer")
    if os.getuid() != 0:
        return Limit("threads", "RLIMIT_NPROC", f"{cap} per child, {where}")
    works, why = userns.can_create(UNPRIVILEGED_UID)
    if works:
        return Limit("threads", "RLIMIT_NPROC", f"{cap} per child, {where}; the supervisor runs as root,"
                     f" so each child runs as host uid {UNPRIVILEGED_UID} (root is exempt from RLIMIT_NPROC)")
    return Limit("threads", "none", f"no writable pids cgroup, RLIMIT_NPROC does not bind host uid 0, and {why}")


def probe_limits() -> list[Limit]:
    """Each resource limit and the layer that enforces it on this host."""
    import resource

    from .broker.readdir import MAX_CHECKPOINTS
    from .child.wasi import MAX_IOVS
    from .descriptors import RESERVED, RUN_DESCRIPTORS

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    memory_cgroup = cgroup.probe()
    memory_extra = (f"; process memory: cgroup memory.max = memory + {PROCESS_OVERHEAD >> 20} MiB"
                    if memory_cgroup.available else "; process memory beyond linear memory: not capped (no memory cgroup)")
    return [
        Limit("memory", "Store limits", "total linear memory: one memory per store (multi-memory off)"
              + memory_extra),
        Limit("table_elements", "Store limits", "per table"),
        Limit("open_files", "broker + child",
              "the broker holds at most open_files directory handles per child (a compromised child"
              " included); the child's WASI table answers EMFILE"),
        Limit("descriptors", "supervisor",
              f"soft RLIMIT_NOFILE raised to the hard limit ({hard}); each run is admitted"
              f" only when {RUN_DESCRIPTORS} + its handles fit ({RESERVED} kept back)"),
        _probe_threads(),
        Limit("file_size", "RLIMIT_FSIZE", "per file, by the kernel: EFBIG"),
        Limit("disk", "child (WASI)",
              "bytes written to files: EDQUOT past it; native code out of wasmtime is held only by"
              " file_size per writable file"),
        Limit("files", "broker", "entries created (open with O_CREAT, mkdir, symlink, link): EDQUOT past it"),
        Limit("readdir memory", "broker", "listings streamed by cookie: one reply plus at most"
              f" {MAX_CHECKPOINTS} positions per handle, never a whole listing"),
        Limit("host calls", "child (WASI)", "poll_oneoff, random_get and path lengths handled a piece"
              f" at a time; at most {MAX_IOVS} iovecs a call (EINVAL past it)"),
        Limit("cpu_time", "RLIMIT_CPU + watchdog", "SIGXCPU; fractions of a second by a watchdog thread"),
        Limit("fuel", "Store (wasmtime)", "wasm instructions, counted by the engine"),
        Limit("timeout", "supervisor", "kills the child, even in a blocking host call"),
        Limit("output", "supervisor", "per captured stream"),
        Limit("module_size", "supervisor", "checked before the module is read"),
        Limit("compile_timeout", "supervisor", "kills the child still compiling"),
    ]


def format_limits(limits: list[Limit]) -> str:
    """One line per limit: 'threads      pids cgroup  (pids.max=36 per child, ...)'."""
    return "\n".join(f"{limit.name:<15} {limit.layer:<22} ({limit.detail})" for limit in limits)


if __name__ == "__main__":
    print(format_report(probe_layers()))
    print()
    print(format_limits(probe_limits()))
