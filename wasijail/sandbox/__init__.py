"""The host sandbox layers, one module per kernel concern (nsjail's shape).

Each policy layer below has a module here with `probe()`, which says
whether this host provides it and why not (`wasijail doctor`, the
supervisor's `--require` check), and the code that applies it:

    seccomp   seccomp.py (+ seccomp_policy.py, the allow-list as data;
              sigsys.py, the handler that names a violation)
    landlock  landlock.py
    userns    userns.py    the uid/gid maps
    mountns   mounts.py    the pivot into an empty read-only root (holding the
                           cached artifact, read-only, where there is one)
    netns     net.py       (nothing to set up: a new namespace has no interface)
    openat2   openat2.py   the broker's resolution beneath a preopen
    cgroup    cgroup.py    the supervisor's per-child memory and pids caps

The child's lockdown (`lockdown.py`) applies the child's layers in one
linear list of steps, with the steps that are not policy layers:
rlimits.py, runtime.py (what glibc and CPython would read from files
later), privileges.py (capabilities, no_new_privs). `kernel.py` holds the
Linux numbers they share; `probing.py` runs a probe that changes the process
(unshare, pivot_root, setresuid) in a throw-away child.

This module is the one list of layer names. It imports nothing heavy: the
policy model and the supervisor import it; a layer's module is imported
only by whoever probes or applies that layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, final

__all__ = ["LayerSpec", "LAYERS", "LAYER_NAMES", "PARENT_LAYERS", "Layer", "LayerStatus", "spec"]


@final
@dataclass(frozen=True)
class LayerSpec:
    name: str  # what `[sandbox] require`, `--require` and `wasijail doctor` call it
    module: str  # wasijail.sandbox.<module> has its probe()
    # The lockdown step (a key of LockdownReport) that applies it in the child;
    # None: the supervisor provides it, and checks it before starting a child.
    step: str | None


#: In the order `wasijail doctor` lists them.
LAYERS: tuple[LayerSpec, ...] = (
    LayerSpec("seccomp", "seccomp", "seccomp"),
    LayerSpec("landlock", "landlock", "landlock"),
    LayerSpec("userns", "userns", "namespaces"),
    LayerSpec("mountns", "mounts", "namespaces"),
    LayerSpec("netns", "net", "namespaces"),
    LayerSpec("openat2", "openat2", None),
    LayerSpec("cgroup", "cgroup", None),
)
LAYER_NAMES: tuple[str, ...] = tuple(layer.name for layer in LAYERS)
PARENT_LAYERS: frozenset[str] = frozenset(layer.name for layer in LAYERS if layer.step is None)


def spec(name: str) -> LayerSpec:
    """The layer called `name` (KeyError for a name that is none)."""
    for layer in LAYERS:
        if layer.name == name:
            return layer
    raise KeyError(name)


class Layer(NamedTuple):
    """What a probe found: whether this host provides the layer, and why (not)."""

    name: str
    available: bool
    detail: str


@final
@dataclass(frozen=True)
class LayerStatus:
    """What one lockdown step did: applied, or why not (a key of LockdownReport)."""

    name: str
    applied: bool
    detail: str
