"""Engine, store and linker settings a run may change: wasmtime's `-W` options that are not limits.

One definition for the three places that use them: the CLI reads them from
`-W NAME[=VALUE]`, the child applies them (`make_config`, `store_limits`, the
linker), and the compiled-module cache keys artifacts by `fingerprint()`.
Nothing here imports wasmtime at module level: the supervisor uses it too.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import wasmtime

__all__ = ["FEATURES", "DEFAULT_FEATURES", "REQUIRES", "FIXED", "STORE_COUNTS", "STORE_MAXIMUM", "EngineOptions", "EngineOptionError", "parse_bool"]

#: `-W` proposal switches (and the two other engine booleans) -> wasmtime.Config attribute.
FEATURES: dict[str, str] = {
    "bulk-memory": "wasm_bulk_memory",
    "multi-memory": "wasm_multi_memory",
    "multi-value": "wasm_multi_value",
    "reference-types": "wasm_reference_types",
    "simd": "wasm_simd",
    "relaxed-simd": "wasm_relaxed_simd",
    "relaxed-simd-deterministic": "wasm_relaxed_simd_deterministic",
    "tail-call": "wasm_tail_call",
    "threads": "wasm_threads",
    "shared-memory": "shared_memory",
    "memory64": "wasm_memory64",
    "function-references": "wasm_function_references",
    "stack-switching": "wasm_stack_switching",
    "gc": "wasm_gc",
    "gc-support": "gc_support",
    "custom-page-sizes": "wasm_custom_page_sizes",
    "wide-arithmetic": "wasm_wide_arithmetic",
    "exceptions": "wasm_exceptions",
    "nan-canonicalization": "cranelift_nan_canonicalization",
}

#: What every child's engine enables unless a `-W` switch says otherwise.
DEFAULT_FEATURES: dict[str, bool] = {
    "bulk-memory": True, "multi-value": True, "reference-types": True, "simd": True, "tail-call": True,
    "exceptions": True,
    # The memory limit is per linear memory: with several, a module would have several times its
    # limit. One memory per store keeps it the total.
    "multi-memory": False,
}

#: Switches that only work with another one on: turning the other off turns them off too, and asking
#: for both is an error (wasmtime's C API aborts the process on such an engine).
REQUIRES: dict[str, str] = {"relaxed-simd": "simd", "relaxed-simd-deterministic": "relaxed-simd"}

#: Switches wasijail does not turn the other way, and why.
FIXED: dict[str, tuple[bool, str]] = {
    "reference-types": (True, "wasmtime-py's engine needs it for component-model-async, which it cannot"
                              " switch off"),
    "multi-memory": (False, "the memory limit is per linear memory: with several, a module would have several"
                            " times its limit"),
}

#: Store counts a run may lower but not raise: one instance, one memory (the memory limit is the total).
STORE_MAXIMUM: dict[str, int] = {"max-instances": 1, "max-memories": 1}

#: `-W max-instances/max-tables/max-memories` -> Store.set_limits keyword.
STORE_COUNTS: dict[str, str] = {"max-instances": "instances", "max-tables": "tables", "max-memories": "memories"}

_TRUE = ("", "y", "yes", "true", "on")
_FALSE = ("n", "no", "false", "off")


class EngineOptionError(ValueError):
    """A `-W` engine option with a value it cannot take."""


def parse_bool(name: str, value: str) -> bool:
    """wasmtime's boolean option values: `NAME`, `NAME=y|n|yes|no|true|false`."""
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise EngineOptionError(f"{name}: expected y or n, got {value!r}")


def _parse_count(name: str, value: str, maximum: int) -> int:
    text = value.strip().replace("_", "")
    if not text.isdigit() or int(text) > maximum:
        raise EngineOptionError(f"{name}: expected a whole number up to {maximum}, got {value!r}")
    return int(text)


@dataclass(frozen=True)
class EngineOptions:
    """Settings of the engine, the store and the linker of one run (all default to wasijail's own).

    ``features`` overrides :data:`FEATURES` switches (``("gc", True)``...);
    ``max_wasm_stack`` is in bytes; ``max_instances``, ``max_tables`` and
    ``max_memories`` cap what the store may create; ``unknown_imports`` is
    ``"trap"`` or ``"default"`` to link imports wasijail does not provide
    as functions that trap or return zeros (wasmtime's
    ``unknown-imports-trap``/``-default``); ``preview0`` False leaves
    ``wasi_unstable`` undefined.
    """

    features: tuple[tuple[str, bool], ...] = ()
    max_wasm_stack: int | None = None
    max_instances: int | None = None
    max_tables: int | None = None
    max_memories: int | None = None
    unknown_imports: Literal["", "trap", "default"] = ""
    preview0: bool = True

    def with_option(self, name: str, value: str) -> EngineOptions:
        """This with one `-W NAME=VALUE` applied; raises EngineOptionError for a bad value.
        ``name`` must be one of :meth:`names`."""
        if name in FEATURES:
            flag = parse_bool(name, value)
            if name in FIXED and flag != FIXED[name][0]:
                raise EngineOptionError(f"{name}: cannot be switched {'on' if flag else 'off'}: {FIXED[name][1]}")
            kept = tuple(f for f in self.features if f[0] != name)
            options = dataclasses.replace(self, features=kept + ((name, flag),))
            given = dict(options.features)
            for feature, needed in REQUIRES.items():
                if given.get(feature) and given.get(needed) is False:
                    raise EngineOptionError(f"{feature} needs {needed}: `-W {needed}=n` and `-W {feature}` conflict")
            return options
        if name == "max-wasm-stack":
            return dataclasses.replace(self, max_wasm_stack=_parse_count(name, value, 2**31 - 1) or None)
        if name == "max-instances":
            return dataclasses.replace(self, max_instances=_parse_count(name, value, STORE_MAXIMUM[name]))
        if name == "max-tables":
            return dataclasses.replace(self, max_tables=_parse_count(name, value, 2**31 - 1))
        if name == "max-memories":
            return dataclasses.replace(self, max_memories=_parse_count(name, value, STORE_MAXIMUM[name]))
        if name in ("unknown-imports-trap", "unknown-imports-default"):
            mode = name.rsplit("-", 1)[1]
            if parse_bool(name, value):
                return dataclasses.replace(self, unknown_imports=mode)  # type: ignore[arg-type]
            return dataclasses.replace(self, unknown_imports="" if self.unknown_imports == mode
                                       else self.unknown_imports)
        if name == "preview0":
            return dataclasses.replace(self, preview0=parse_bool(name, value))
        raise EngineOptionError(f"{name}: not an engine option")

    @staticmethod
    def names() -> tuple[str, ...]:
        """The `-W` names :meth:`with_option` takes (``preview0`` is `-S`)."""
        return (*FEATURES, "max-wasm-stack", *STORE_COUNTS, "unknown-imports-trap", "unknown-imports-default")

    def switches(self) -> dict[str, bool]:
        """Every feature switch the engine sets: wasijail's defaults, then the overrides."""
        switches = {**DEFAULT_FEATURES, **dict(self.features)}
        for feature, needed in REQUIRES.items():  # in dependency order
            if switches.get(needed) is False and feature not in switches:
                switches[feature] = False
        return switches

    def fingerprint(self) -> str:
        """What of this decides compiled code: part of the compiled-module cache key."""
        switches = ",".join(f"{k}={int(v)}" for k, v in sorted(self.switches().items()))
        return f"features={switches};max_wasm_stack={self.max_wasm_stack}"

    def make_config(self, *, fuel: bool) -> wasmtime.Config:
        """The wasmtime.Config of a child's engine."""
        import wasmtime

        config = wasmtime.Config()
        for name, on in self.switches().items():
            setattr(config, FEATURES[name], on)
        if self.max_wasm_stack is not None:
            config.max_wasm_stack = self.max_wasm_stack
        config.consume_fuel = fuel
        # The host keeps one view of guest memory; it stays valid only if memory never moves.
        config.memory_may_move = False
        return config

    def store_limits(self) -> dict[str, int]:
        """Keywords for Store.set_limits (-1: not limited; instances and memories at most 1 whatever is asked)."""
        limits = {}
        for name, kw in STORE_COUNTS.items():
            value = getattr(self, name.replace("-", "_"))
            limits[kw] = STORE_MAXIMUM.get(name, -1) if value is None else value
        return limits

    def encode(self) -> tuple[bytes, ...]:
        """As `NAME=VALUE` items for the child's setup message."""
        items = [f"{name}={'y' if on else 'n'}" for name, on in self.features]
        if self.max_wasm_stack is not None:
            items.append(f"max-wasm-stack={self.max_wasm_stack}")
        for name in STORE_COUNTS:
            value = getattr(self, name.replace("-", "_"))
            if value is not None:
                items.append(f"{name}={value}")
        if self.unknown_imports:
            items.append(f"unknown-imports-{self.unknown_imports}=y")
        if not self.preview0:
            items.append("preview0=n")
        return tuple(item.encode() for item in items)

    @classmethod
    def decode(cls, items: tuple[bytes, ...]) -> EngineOptions:
        """The options :meth:`encode` wrote."""
        options = cls()
        for item in items:
            name, _, value = item.decode().partition("=")
            options = options.with_option(name, value)
        return options
