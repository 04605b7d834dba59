"""Every option of `wasmtime run` (wasmtime 49), and what `wasijail run` does with it.

One table for the CLI (what it accepts, the reason it gives for what it
refuses, `-W help` and `-S help`), for the README's table (`markdown_table`,
checked by tests/test_readme.py) and for tests/test_cli.py, which runs each row.
A refused option ends the command with `wasijail: NAME: not supported:
REASON` and status 2, before anything runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import final

from .engine import FEATURES, FIXED, STORE_COUNTS, STORE_MAXIMUM

__all__ = ["RunOption", "FLAGS", "W_KEYS", "S_KEYS", "GROUPS", "SUBCOMMANDS", "spellings", "refusal",
           "help_text", "markdown_table"]


@final
@dataclass(frozen=True)
class RunOption:
    """One option: ``name`` as wasmtime spells it, what wasijail ``does`` with it.

    ``refused`` is the reason wasijail refuses it ("" when it is accepted).
    ``keeps`` marks a switch wasijail cannot turn: asking for the value it
    always has (``keeps``) is accepted, the other value is refused.
    """

    name: str
    does: str
    refused: str = ""
    keeps: bool | None = None


_COMPONENTS = "a component-model interface; wasijail runs core modules (WASI preview1), not components"
_NO_NETWORK = "wasijail grants no sockets: the child runs in an empty network namespace"
_CACHE = "wasijail fixes compiler settings for its cache"

#: Top-level options of `wasmtime run`, then wasijail's own.
FLAGS: tuple[RunOption, ...] = (
    RunOption("--dir HOST[::GUEST]", "preopen HOST under the name GUEST (default: HOST as written);"
              " wasijail adds `::ro` for a read-only preopen"),
    RunOption("--env NAME[=VAL]", "set NAME, or copy it from the host; nothing else is inherited"),
    RunOption("--invoke NAME", "call the export NAME with the trailing arguments, print its results"),
    RunOption("--argv0 NAME", "the module's `argv[0]` (default: the module's file name)"),
    RunOption("-W, --wasm KEY[=VAL]", "wasm options, each below; `-W help` lists them"),
    RunOption("-S, --wasi KEY[=VAL]", "WASI options, each below; `-S help` lists them"),
    RunOption("--preload NAME=PATH", "",
              refused="each child compiles and links exactly one module inside its sandbox;"
                      " linking a second module is not implemented"),
    RunOption("-O, --optimize KEY[=VAL]", "", refused=_CACHE),
    RunOption("-C, --codegen KEY[=VAL]", "",
              refused="wasijail fixes code generation for its cache and sandbox (--no-cache and --cache-dir"
                      " control the cache)"),
    RunOption("-D, --debug KEY[=VAL]", "",
              refused="debug info, core dumps, logs and debuggers need files or processes the sandboxed child"
                      " is not allowed"),
    RunOption("-R, --record KEY[=VAL]", "",
              refused="an execution trace is a file the child would write, and the child may create no files"),
    RunOption("--target TRIPLE", "", refused="wasijail compiles for the host it runs on"),
    RunOption("--config FILE", "", refused="wasijail's settings live in its policy file: use --policy FILE"),
    RunOption("--allow-precompiled", "",
              refused="precompiled code is never loaded from input; the cache holds only artifacts wasijail"
                      " compiled itself, verified by HMAC"),
    RunOption("--profile STRATEGY", "",
              refused="profilers need perf maps or profile files the sandboxed child may not write"),
    RunOption("-g, --gdbstub [ADDR:]PORT", "", refused="a debugger needs a TCP listener; " + _NO_NETWORK),
    RunOption("-h, --help", "this help"),
    RunOption("-V, --version", "print wasijail's version and the wasmtime it runs on"),
)

_LIMIT_DOES = {
    "fuel": "fuel budget: N units; 0 means none, so the first instruction traps (policy `fuel`)",
    "max-memory-size": "cap on linear memory in bytes; memory.grow returns -1 past it (policy `memory`)",
    "max-table-elements": "cap on table elements (policy `table_elements`)",
    "timeout": "wall-clock deadline (1, 2s, 100ms...); the child is killed at it (policy `timeout`)",
}

_FEATURE_DOES = "switch the proposal on (`=y`) or off (`=n`)"

#: `-W` keys: wasmtime's, in its `-W help` order. wasijail's own limits are also
#: accepted as `-W` keys (`-W cpu-time=2s`: the limit flags spelled with dashes).
W_KEYS: tuple[RunOption, ...] = (
    RunOption("nan-canonicalization", "canonicalize NaN results (`=y`/`=n`)"),
    *(RunOption(name, _LIMIT_DOES[name]) for name in ("fuel",)),
    RunOption("epoch-interruption", "", keeps=False,
              refused="wasijail ends a run at its deadline by killing the child; it runs no epoch ticker"),
    RunOption("max-wasm-stack", "stack the wasm code may use, in bytes, before it traps with a stack overflow"),
    RunOption("async-stack-size", "", refused="wasijail calls wasm synchronously: there are no async stacks"),
    RunOption("async-stack-zeroing", "", keeps=False,
              refused="wasijail calls wasm synchronously: there are no async stacks"),
    RunOption("unknown-exports-allow", "accepted: wasijail runs a core module whatever else it exports"),
    RunOption("unknown-imports-trap", "link imports WASI does not provide as functions that trap when called"),
    RunOption("unknown-imports-default", "link imports WASI does not provide as functions that return zeros"),
    RunOption("wmemcheck", "", keeps=False, refused="wasmtime-py is built without wmemcheck"),
    *(RunOption(name, _LIMIT_DOES[name]) for name in ("max-memory-size", "max-table-elements")),
    *(RunOption(name, f"the store may create at most N {STORE_COUNTS[name]}"
                      + (f" (N up to {STORE_MAXIMUM[name]}: the default)" if name in STORE_MAXIMUM else ""))
      for name in STORE_COUNTS),
    RunOption("trap-on-grow-failure", "", keeps=False,
              refused="wasmtime-py's store limiter cannot trap on a failed grow: memory.grow and table.grow"
                      " return -1"),
    RunOption("timeout", _LIMIT_DOES["timeout"]),
    RunOption("all-proposals", "",
              refused="not every proposal can be switched through wasmtime-py; switch each one by its key"),
    *(RunOption(name, _FEATURE_DOES) for name in FEATURES if name not in ("nan-canonicalization", *FIXED)),
    *(RunOption(name, "", keeps=kept, refused=why) for name, (kept, why) in FIXED.items()),
    RunOption("extended-const", "", keeps=True, refused="always on in wasmtime-py's engine; it cannot be switched"),
    RunOption("branch-hinting", "", refused="wasmtime-py has no switch for it"),
    RunOption("shared-everything-threads", "", keeps=False, refused="wasmtime-py has no switch for it"),
    RunOption("concurrency-support", "", keeps=False, refused=_COMPONENTS),
    *(RunOption(name, "", keeps=False, refused=_COMPONENTS) for name in (
        "component-model", "component-model-async", "component-model-more-async-builtins",
        "component-model-async-stackful", "component-model-threading", "component-model-error-context",
        "component-model-gc", "component-model-map", "component-model-memory64",
        "component-model-fixed-length-lists", "component-model-implements")),
)

#: `-S` keys, in wasmtime's `-S help` order.
S_KEYS: tuple[RunOption, ...] = (
    RunOption("cli", "", keeps=True, refused="wasijail always links WASI preview1 (a module that imports none of"
                                             " it is not affected)"),
    RunOption("cli-exit-with-code", "", keeps=False, refused=_COMPONENTS),
    RunOption("common", "", keeps=True, refused="wasijail always links WASI preview1 (`common` is `cli`)"),
    RunOption("nn", "", keeps=False, refused="wasi-nn is not provided"),
    RunOption("threads", "", keeps=False, refused="wasi-threads is not provided: a child runs one guest thread"),
    RunOption("http", "", keeps=False, refused=_COMPONENTS),
    RunOption("http-outgoing-body-buffer-chunks", "", refused=_COMPONENTS),
    RunOption("http-outgoing-body-chunk-size", "", refused=_COMPONENTS),
    RunOption("config", "", keeps=False, refused=_COMPONENTS),
    RunOption("keyvalue", "", keeps=False, refused=_COMPONENTS),
    RunOption("listenfd", "", keeps=False, refused=_NO_NETWORK),
    RunOption("tcplisten", "", refused=_NO_NETWORK),
    RunOption("tls", "", keeps=False, refused=_COMPONENTS),
    RunOption("preview2", "accepted, `=y` or `=n`: it picks which of wasmtime's own implementations serves"
                          " preview1; wasijail has one of its own"),
    RunOption("nn-graph", "", refused="wasi-nn is not provided"),
    RunOption("inherit-network", "", keeps=False, refused=_NO_NETWORK),
    RunOption("allow-ip-name-lookup", "", keeps=False, refused=_NO_NETWORK),
    RunOption("tcp", "", keeps=False, refused=_NO_NETWORK),
    RunOption("udp", "", keeps=False, refused=_NO_NETWORK),
    RunOption("network-error-code", "", keeps=False, refused=_NO_NETWORK),
    RunOption("preview0", "define `wasi_unstable` (`=y`, the default) or not (`=n`)"),
    RunOption("inherit-env", "copy every variable of the host's environment (`=y`)"),
    RunOption("inherit-stdin", "`=n`: the module reads an empty stdin (default `=y`)"),
    RunOption("inherit-stdout", "`=n`: the module's stdout is discarded (default `=y`)"),
    RunOption("inherit-stderr", "`=n`: the module's stderr is discarded (default `=y`)"),
    RunOption("cwd", "", refused="preview1 has no working directory (the initial cwd is " + _COMPONENTS + ")"),
    RunOption("config-var", "", refused=_COMPONENTS),
    RunOption("keyvalue-in-memory-data", "", refused=_COMPONENTS),
    RunOption("p3", "", keeps=False, refused=_COMPONENTS),
    RunOption("max-resources", "", refused=_COMPONENTS),
    RunOption("hostcall-fuel", "", refused=_COMPONENTS),
    RunOption("max-component-handles", "", refused=_COMPONENTS),
    RunOption("max-random-size", "", refused="it caps wasi-random 0.2, " + _COMPONENTS),
    RunOption("max-http-fields-size", "", refused=_COMPONENTS),
)

#: The option groups wasijail refuses whole, by flag: the reason comes from FLAGS.
GROUPS: dict[str, str] = {"-O": "--optimize", "-C": "--codegen", "-D": "--debug", "-R": "--record"}

#: wasmtime's other subcommands, and why wasijail has none of them (`run`, `compile` and `help` it has).
SUBCOMMANDS: dict[str, str] = {
    "config": "wasijail's settings are its policy: see `wasijail policy show`",
    "explore": "wasijail does not show the native code it compiles",
    "serve": "wasi-http proxies are " + _COMPONENTS,
    "settings": _CACHE + "; `wasijail doctor` shows what the host provides",
    "wast": "wasijail runs WASI modules, not spec test scripts",
    "completion": "wasijail ships no shell completions",
    "objdump": "wasijail never loads .cwasm files, so it has none to inspect",
    "hot-blocks": "profiling needs files the sandboxed child may not write",
    "wizer": "pre-initializing writes a new module from a running one; wasijail runs modules, it does not"
             " rewrite them",
}


def _flag(spelling: str) -> RunOption:
    for option in FLAGS:
        if spelling in spellings(option):
            return option
    raise KeyError(spelling)


def spellings(option: RunOption) -> list[str]:
    """The flag spellings of a FLAGS row: ``["-W", "--wasm"]``."""
    return [token.rstrip(",") for token in option.name.split() if token.startswith("-")]


def refusal(group: str, key: str, value: str | None) -> str | None:
    """Why ``group`` (``-W``, ``-S``, or a top-level flag) ``key[=value]`` is refused, or None.

    For ``-W``/``-S`` a key not in the table is not answered here (None):
    the caller reports it as unknown.
    """
    if group in GROUPS or group in GROUPS.values():
        return _flag(group).refused
    if group not in ("-W", "-S"):
        return _flag(group).refused or None
    for option in W_KEYS if group == "-W" else S_KEYS:
        if option.name != key:
            continue
        if not option.refused:
            return None
        if option.keeps is not None and value is not None:
            from .engine import EngineOptionError, parse_bool

            try:
                if parse_bool(key, value) == option.keeps:
                    return None
            except EngineOptionError:
                return None  # the caller says what is wrong with the value
        if option.keeps is not None and value is None and option.keeps:
            return None
        return option.refused
    return None


def help_text(group: str) -> str:
    """`-W help` / `-S help`: each key with what wasijail does with it."""
    keys = W_KEYS if group == "-W" else S_KEYS
    width = max(len(option.name) for option in keys)
    lines = [f"wasijail's {'wasm' if group == '-W' else 'WASI'} options ({group} KEY[=VALUE],...):", ""]
    for option in keys:
        lines.append(f"  {group} {option.name:<{width}}  {_behaviour(option)}")
    if group == "-W":
        lines += ["", "wasijail's own limits are -W keys too: " + ", ".join(_own_limits()) + "."]
    return "\n".join(lines) + "\n"


def _own_limits() -> list[str]:
    from .policy import LIMIT_KEYS

    return [f"{key.replace('_', '-')}=" for key in LIMIT_KEYS]


def _behaviour(option: RunOption) -> str:
    if not option.refused:
        return option.does
    if option.keeps is not None:
        kept, other = ("y", "n") if option.keeps else ("n", "y")
        return f"`={kept}` accepted (wasijail's only setting); `={other}` refused: {option.refused}"
    return f"refused: {option.refused}"


def markdown_table() -> str:
    """The README's table: every `wasmtime run` option with wasijail's behaviour."""
    rows = ["| `wasmtime run` option | `wasijail run` |", "|---|---|"]
    for option in FLAGS:
        rows.append(f"| `{option.name}` | {_behaviour(option)} |")
    for group, keys in (("-W", W_KEYS), ("-S", S_KEYS)):
        for option in keys:
            rows.append(f"| `{group} {option.name}` | {_behaviour(option)} |")
    return "\n".join(rows) + "\n"
