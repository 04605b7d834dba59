"""The policy model: what a module may see and how much it may use.

A :class:`Policy` is a frozen value. It is filled from a TOML policy file
(:meth:`Policy.from_toml`), from the built-in safe default
(:meth:`Policy.default`), and then from command-line flags through the
``with_*`` methods, each of which returns a new Policy: a flag overrides the
file.  This module does no I/O apart from reading the policy file; the host
environment is consulted only by :meth:`Policy.resolved_env`, with a mapping
the caller passes in, and preopened directories are not checked for existence
here (the supervisor checks them when a run starts).

Policy file schema (every table and every key is optional: a key left out
keeps the built-in default's value, :meth:`Policy.default`)::

    [fs]
    symlinks = "confined"     # "confined" | "wasi", default "confined"

    [[fs.preopen]]            # repeatable, in order
    host = "data"             # relative: against the policy file's folder
    guest = "/data"           # default: host as written
    mode = "ro"               # "ro" | "rw", default "rw"

    [env]
    vars = { LANG = "C" }     # explicit variables, in order
    inherit = ["HOME"]        # copied from the host environment at run time

    [limits]                  # absent key = the default's value; "unlimited" lifts it
    memory = "256MiB"
    table_elements = 10000
    timeout = "10s"
    cpu_time = "5s"
    fuel = 1000000            # 0 = no fuel at all: the first instruction traps
    output = "16MiB"
    open_files = 256
    file_size = "1GiB"
    disk = "4GiB"             # bytes written to files of writable preopens
    files = 10000             # directory entries created
    module_size = "64MiB"
    compile_timeout = "30s"

    [sandbox]
    require = ["seccomp"]     # layers that must be available; [] requires none

Any limit may also be given as the string ``"unlimited"`` (or ``"none"``).

Errors are :class:`PolicyError` with a one-line message naming the file (or
the flag), the key, what was expected and what was found, e.g.
``policies/x.toml: [limits] memory: expected a size such as 256MiB, got 'lots'``.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import math
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal, NamedTuple

from .results import WasijailError

__all__ = [
    "PolicyError",
    "Preopen",
    "Limits",
    "SandboxPolicy",
    "Policy",
    "SANDBOX_LAYERS",
    "SYMLINK_MODES",
    "LIMIT_KEYS",
    "parse_size",
    "parse_duration",
    "format_size",
    "format_duration",
    "parse_dir_flag",
    "parse_mapdir_flag",
    "parse_env_flag",
    "parse_wasmtime_w_flag",
]

Mode = Literal["ro", "rw"]

#: Sandbox layers a policy may require, in the order the child applies them
#: (roughly). ``wasijail doctor`` reports which of them the host provides.
SANDBOX_LAYERS: tuple[str, ...] = (
    "seccomp",
    "landlock",
    "userns",
    "mountns",
    "netns",
    "openat2",
    "cgroup",
)

KiB = 1024
MiB = 1024**2
GiB = 1024**3
TiB = 1024**4


# --------------------------------------------------------------------------
# errors


class PolicyError(WasijailError, ValueError):
    """A policy file or flag that cannot be accepted (a :class:`~wasijail.WasijailError`; also a
    ValueError, as it always was).

    The message is one line: ``SOURCE: KEY: problem`` where SOURCE is the
    policy file as given (or the flag, e.g. ``--dir``) and KEY names the
    offending key (e.g. ``[limits] memory``); either part is left out when
    it does not apply. They are also available as ``.source`` and ``.key``.
    """

    def __init__(self, message: str, *, source: str | None = None, key: str | None = None):
        super().__init__(message)
        self.source = source
        self.key = key


def _error(source: str | None, key: str | None, problem: str) -> PolicyError:
    parts = [p for p in (source, key) if p]
    parts.append(problem)
    message = ": ".join(parts).replace("\n", "\\n").replace("\r", "\\r")
    return PolicyError(message, source=source, key=key)


def _describe(value: object) -> str:
    """How a found value is shown in an error message (TOML terms)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        if len(value) > 80:
            return repr(value[:77]) + "..."
        return repr(value)
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, (list, tuple)):
        return "an array"
    if isinstance(value, (datetime.date, datetime.time)):
        return f"a date/time ({value.isoformat()})"
    if value is None:
        return "nothing"
    return f"a {type(value).__name__}"


# --------------------------------------------------------------------------
# sizes and durations

_SIZE_UNITS: dict[str, int] = {
    "": 1,
    "b": 1,
    "k": KiB,
    "kib": KiB,
    "kb": 1000,
    "m": MiB,
    "mib": MiB,
    "mb": 1000**2,
    "g": GiB,
    "gib": GiB,
    "gb": 1000**3,
    "t": TiB,
    "tib": TiB,
    "tb": 1000**4,
}
_SIZE_RE = re.compile(r"\s*([+-]?)((?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))\s*([A-Za-z]*)\s*")

_NUMBER = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
_DURATION_UNITS: dict[str, Fraction] = {
    "ns": Fraction(1, 10**9),
    "us": Fraction(1, 10**6),
    "\u00b5s": Fraction(1, 10**6),  # micro sign
    "\u03bcs": Fraction(1, 10**6),  # greek mu
    "ms": Fraction(1, 1000),
    "s": Fraction(1),
    "m": Fraction(60),
    "h": Fraction(3600),
    "d": Fraction(86400),
}
_DURATION_UNIT_RE = "ns|us|\u00b5s|\u03bcs|ms|s|m|h|d"
_DURATION_BARE_RE = re.compile(rf"\s*([+-]?)({_NUMBER})\s*")
_DURATION_WHOLE_RE = re.compile(rf"\s*([+-]?)((?:\s*{_NUMBER}\s*(?:{_DURATION_UNIT_RE}))+)\s*")
_DURATION_PART_RE = re.compile(rf"({_NUMBER})\s*({_DURATION_UNIT_RE})")


def parse_size(value: object, *, key: str, source: str) -> int:
    """Parse a size in bytes.

    Accepts an int (bytes) or a string: ``"512"``, ``"512B"``, ``"4KiB"``,
    ``"256MiB"``, ``"1.5GiB"``, ``"4KB"`` (powers of 1000: KB, MB, GB, TB),
    ``"4K"`` (powers of 1024 like wasmtime: K, M, G, T). Units are
    case-insensitive, whitespace between number and unit is allowed. The
    result must be a whole number of bytes (``"0.1KiB"`` is an error) and not
    negative; zero is returned as 0 (callers apply their own lower bounds).
    Floats and booleans are rejected.
    """
    expected = "expected a size such as 256MiB"
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise _error(source, key, f"{expected}, got {_describe(value)}")
    if isinstance(value, int):
        if value < 0:
            raise _error(source, key, f"must not be negative, got {value}")
        return value
    m = _SIZE_RE.fullmatch(value)
    if not m or m.group(3).lower() not in _SIZE_UNITS:
        raise _error(source, key, f"{expected}, got {_describe(value)}")
    sign, number, unit = m.groups()
    amount = Fraction(number) * _SIZE_UNITS[unit.lower()]
    if sign == "-" and amount != 0:
        raise _error(source, key, f"must not be negative, got {_describe(value)}")
    if amount.denominator != 1:
        raise _error(
            source, key, f"expected a whole number of bytes, got {_describe(value)} ({float(amount)} bytes)"
        )
    return int(amount)


def parse_duration(value: object, *, key: str, source: str) -> float:
    """Parse a duration in seconds.

    Accepts an int or float (seconds) or a string: a bare number (seconds,
    as wasmtime's ``-W timeout=5``) or one or more number+unit parts with
    units ``ns``, ``us`` (also ``µs``), ``ms``, ``s``, ``m``, ``h``, ``d``:
    ``"1.5s"``, ``"200ms"``, ``"2m"``, ``"1h30m"``, ``"500us"``. Numbers may
    have a fraction and an exponent. Negative, infinite and NaN values are
    errors; zero is returned as 0.0 (callers apply their own lower bounds).
    """
    expected = "expected a duration such as 10s, 1.5s or 200ms"
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise _error(source, key, f"{expected}, got {_describe(value)}")
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise _error(source, key, f"{expected}, got {_describe(value)}")
        if value < 0:
            raise _error(source, key, f"must not be negative, got {_describe(value)}")
        return float(value)
    m = _DURATION_BARE_RE.fullmatch(value)
    if m:
        sign, total = m.group(1), Fraction(m.group(2))
    else:
        m = _DURATION_WHOLE_RE.fullmatch(value)
        if not m:
            raise _error(source, key, f"{expected}, got {_describe(value)}")
        sign = m.group(1)
        total = sum(
            (Fraction(n) * _DURATION_UNITS[u] for n, u in _DURATION_PART_RE.findall(m.group(2))),
            Fraction(0),
        )
    if sign == "-" and total != 0:
        raise _error(source, key, f"must not be negative, got {_describe(value)}")
    seconds = float(total)
    if not math.isfinite(seconds):
        raise _error(source, key, f"{expected}, got {_describe(value)}")
    return seconds


def format_size(n: int) -> str:
    """Format bytes with the largest binary unit that divides them exactly:
    ``format_size(268435456) == "256MiB"``, ``format_size(1000) == "1000"``.
    ``parse_size(format_size(n)) == n`` for every n >= 0."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"format_size: expected a non-negative int, got {n!r}")
    for unit, factor in (("TiB", TiB), ("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= factor and n % factor == 0:
            return f"{n // factor}{unit}"
    return str(n)


def format_duration(seconds: float) -> str:
    """Format seconds as the shortest exact whole count of one unit
    (``d``, ``h``, ``m``, ``s``, ``ms``, ``us``, ``ns``): ``60.0 -> "1m"``,
    ``1.5 -> "1500ms"``, ``90 -> "90s"``; otherwise as seconds in Python's
    shortest float form (``"1.234567e-05s"``).
    ``parse_duration(format_duration(x)) == x`` for every finite x >= 0."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise ValueError(f"format_duration: expected a number, got {seconds!r}")
    seconds = float(seconds)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"format_duration: expected a finite number >= 0, got {seconds!r}")
    if seconds == 0:
        return "0s"
    exact = Fraction(seconds)
    for unit in ("d", "h", "m", "s", "ms", "us", "ns"):
        factor = _DURATION_UNITS[unit]
        n = round(exact / factor)
        if n >= 1 and float(n * factor) == seconds:
            return f"{n}{unit}"
    return f"{seconds!r}s"


def _parse_count(value: object, *, key: str, source: str) -> int:
    expected = "expected a whole number"
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise _error(source, key, f"{expected}, got {_describe(value)}")
    if isinstance(value, str):
        m = re.fullmatch(r"\s*([+-]?)([0-9]+)\s*", value)
        if not m:
            raise _error(source, key, f"{expected}, got {_describe(value)}")
        n = int(m.group(2))
        if m.group(1) == "-":
            n = -n
    else:
        n = value
    if n < 0:
        raise _error(source, key, f"must not be negative, got {_describe(value)}")
    return n


# --------------------------------------------------------------------------
# limits


class _LimitSpec(NamedTuple):
    kind: Literal["size", "duration", "count"]
    minimum: int | float
    maximum: int | float
    why_min: str


_YEAR = 365 * 86400.0

#: The built-in default policy, shipped in the package (policies/default.toml links to it).
DEFAULT_POLICY_FILE = "default_policy.toml"

#: The bounds of each limit (inclusive). ``None`` (absent) always means
#: "not limited"; ``fuel = 0`` is a budget of none (as wasmtime's ``-W fuel=0``).
_LIMIT_SPECS: dict[str, _LimitSpec] = {
    "memory": _LimitSpec("size", 64 * KiB, 2**48, " (one wasm page)"),
    "table_elements": _LimitSpec("count", 1, 2**32, ""),
    "timeout": _LimitSpec("duration", 0.001, _YEAR, ""),
    "cpu_time": _LimitSpec("duration", 0.001, _YEAR, ""),
    "fuel": _LimitSpec("count", 0, 2**63 - 1, ""),
    "output": _LimitSpec("size", 1, 2**40, ""),
    "open_files": _LimitSpec("count", 4, 2**20, " (stdin, stdout, stderr and one more)"),
    "file_size": _LimitSpec("size", 1, 2**60, ""),
    "disk": _LimitSpec("size", 1, 2**60, ""),
    "files": _LimitSpec("count", 1, 2**40, ""),
    "module_size": _LimitSpec("size", 8, 2**40, " (the smallest module: magic and version)"),
    "compile_timeout": _LimitSpec("duration", 0.001, _YEAR, ""),
}

#: The limit names, in the order of :class:`Limits`' fields.
LIMIT_KEYS: tuple[str, ...] = tuple(_LIMIT_SPECS)


def _format_bound(kind: str, v: int | float) -> str:
    if kind == "size":
        return format_size(int(v))
    if kind == "duration":
        return format_duration(float(v))
    return str(v)


def _parse_limit(name: str, value: object, *, source: str | None, key: str | None) -> int | float | None:
    spec = _LIMIT_SPECS[name]
    src = source or ""
    k = key or ""
    if value is None:
        return None
    if isinstance(value, str) and value.strip().lower() in ("unlimited", "none"):
        return None
    parsed: int | float
    if spec.kind == "size":
        parsed = parse_size(value, key=k, source=src)
    elif spec.kind == "duration":
        parsed = parse_duration(value, key=k, source=src)
    else:
        parsed = _parse_count(value, key=k, source=src)
    if parsed < spec.minimum:
        bound = _format_bound(spec.kind, spec.minimum)
        raise _error(source, key, f"must be at least {bound}{spec.why_min}, got {_describe(value)}")
    if parsed > spec.maximum:
        bound = _format_bound(spec.kind, spec.maximum)
        raise _error(source, key, f"must be at most {bound}, got {_describe(value)}")
    return parsed


@dataclass(frozen=True, slots=True)
class Limits:
    """Resource limits; ``None`` means not limited.

    Bounds (inclusive; outside them is a :class:`PolicyError`):

    - ``memory`` (bytes, linear memory per store): 64KiB (one wasm page)
      to 2**48 (256TiB).
    - ``table_elements`` (count): 1 to 2**32.
    - ``timeout`` (seconds of wall clock for the whole run): 1ms to 365 days.
    - ``cpu_time`` (seconds of CPU): 1ms to 365 days; an enforcer based on
      RLIMIT_CPU rounds up to whole seconds.
    - ``fuel`` (wasmtime fuel units): 0 to 2**63-1; 0 is no fuel at all (the
      first instruction traps), as in wasmtime.
    - ``output`` (bytes per captured stream): 1 to 2**40 (1TiB).
    - ``open_files`` (count, RLIMIT_NOFILE-like): 4 (stdio and one more) to
      2**20 (Linux's default nr_open).
    - ``file_size`` (bytes, largest file the module may write): 1 to 2**60.
    - ``disk`` (bytes written to files of writable preopens in one run):
      1 to 2**60; past it writes fail with EDQUOT.
    - ``files`` (directory entries created in one run: files, directories,
      links): 1 to 2**40; past it creating fails with EDQUOT.
    - ``module_size`` (bytes of .wasm/.wat input): 8 (magic + version) to
      2**40.
    - ``compile_timeout`` (seconds to compile the module): 1ms to 365 days.

    Sizes and durations are stored as int bytes and float seconds; the
    constructor also accepts the string forms of :func:`parse_size` and
    :func:`parse_duration` and ``"unlimited"``, and normalizes them.
    """

    memory: int | None = None
    table_elements: int | None = None
    timeout: float | None = None
    cpu_time: float | None = None
    fuel: int | None = None
    output: int | None = None
    open_files: int | None = None
    file_size: int | None = None
    disk: int | None = None
    files: int | None = None
    module_size: int | None = None
    compile_timeout: float | None = None

    def __post_init__(self) -> None:
        for name in LIMIT_KEYS:
            value = _parse_limit(name, getattr(self, name), source="Limits", key=name)
            object.__setattr__(self, name, value)


# --------------------------------------------------------------------------
# preopens, sandbox


def _check_text(value: object, *, what: str, source: str | None, key: str | None) -> str:
    if not isinstance(value, str):
        raise _error(source, key, f"expected {what}, got {_describe(value)}")
    if value == "":
        raise _error(source, key, f"expected {what}, got an empty string")
    if "\0" in value:
        raise _error(source, key, f"must not contain NUL, got {_describe(value)}")
    return value


def _check_mode(value: object, *, source: str | None, key: str | None) -> Mode:
    if value not in ("ro", "rw") or not isinstance(value, str):
        raise _error(source, key, f'expected "ro" or "rw", got {_describe(value)}')
    return value  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class Preopen:
    """A host directory offered to the module under a guest name.

    ``host`` is absolute (relative paths are made absolute against the
    policy file's folder, or the current directory for flags) but symlinks
    are not resolved and the directory need not exist yet: the supervisor
    checks it when a run starts. ``guest`` is the name the module sees
    (non-empty, no NUL); duplicates are allowed, in order, as in wasmtime.
    ``mode`` is ``"ro"`` or ``"rw"``.
    """

    host: Path
    guest: str
    mode: Mode = "rw"

    def __post_init__(self) -> None:
        host = self.host
        if isinstance(host, bytes):
            host = os.fsdecode(host)
        if not isinstance(host, (str, os.PathLike)):
            raise _error("Preopen", "host", f"expected a path, got {_describe(host)}")
        raw = os.fspath(host)
        if isinstance(raw, bytes):
            raw = os.fsdecode(raw)
        _check_text(raw, what="a directory path", source="Preopen", key="host")
        object.__setattr__(self, "host", Path(raw).absolute())
        _check_text(self.guest, what="a guest name", source="Preopen", key="guest")
        _check_mode(self.mode, source="Preopen", key="mode")

    @property
    def readonly(self) -> bool:
        """Whether the preopen is read-only (mode "ro")."""
        return self.mode == "ro"


def _make_preopen(
    host: object,
    guest: object,
    mode: object,
    *,
    base_dir: Path,
    source: str | None,
    key_prefix: str | None,
) -> Preopen:
    def k(name: str) -> str | None:
        return f"{key_prefix} {name}" if key_prefix else None

    if isinstance(host, os.PathLike):
        host = os.fspath(host)
    if isinstance(host, bytes):
        host = os.fsdecode(host)
    host_s = _check_text(host, what="a directory path", source=source, key=k("host"))
    if guest is None:
        guest = host_s
    guest_s = _check_text(guest, what="a guest name", source=source, key=k("guest"))
    mode_s = _check_mode(mode, source=source, key=k("mode"))
    path = Path(host_s)
    if not path.is_absolute():
        path = Path(base_dir).absolute() / path
    return Preopen(path, guest_s, mode_s)


def _check_layers(layers: Iterable[object], *, source: str | None, key: str | None) -> tuple[str, ...]:
    out: list[str] = []
    for i, layer in enumerate(layers, 1):
        if not isinstance(layer, str):
            raise _error(source, key, f"item {i}: expected a layer name, got {_describe(layer)}")
        if layer not in SANDBOX_LAYERS:
            raise _error(
                source, key, f"unknown layer {layer!r}; valid layers: {', '.join(SANDBOX_LAYERS)}"
            )
        if layer not in out:
            out.append(layer)
    return tuple(out)


@dataclass(frozen=True, slots=True)
class SandboxPolicy:
    """Sandbox layers that must be available; a run fails if one is not.

    ``require`` holds names from :data:`SANDBOX_LAYERS`, without
    duplicates, in the order given. Layers not required are still applied
    when the host provides them; missing ones are reported.
    """

    require: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        req = self.require
        if isinstance(req, str) or not isinstance(req, Iterable):
            raise _error("SandboxPolicy", "require", f"expected a sequence of layer names, got {_describe(req)}")
        object.__setattr__(self, "require", _check_layers(req, source="SandboxPolicy", key="require"))


# --------------------------------------------------------------------------
# env


def _check_env_name(name: object, *, source: str | None, key: str | None) -> str:
    if not isinstance(name, str):
        raise _error(source, key, f"expected a variable name, got {_describe(name)}")
    if name == "":
        raise _error(source, key, "variable name must not be empty")
    if "=" in name or "\0" in name:
        raise _error(source, key, f"variable name must not contain '=' or NUL, got {_describe(name)}")
    return name


def _check_env_value(value: object, *, source: str | None, key: str | None) -> str:
    if not isinstance(value, str):
        raise _error(source, key, f"expected a string, got {_describe(value)}")
    if "\0" in value:
        raise _error(source, key, f"value must not contain NUL, got {_describe(value)}")
    return value


def _merge_env(pairs: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """Last value wins, first position kept."""
    merged: dict[str, str] = {}
    for name, value in pairs:
        merged[name] = value
    return tuple(merged.items())


# --------------------------------------------------------------------------
# the policy


# What path_symlink may create: "confined" refuses every target that,
# resolved lexically from the link's own directory, leaves the preopen (host
# tools that follow links later are never led out); "wasi" creates any
# relative target, as WASI does (the runtime still confines what it follows).
SYMLINK_MODES = ("confined", "wasi")
SymlinkMode = Literal["confined", "wasi"]


def _check_symlinks(value: object, *, source: str | None, key: str | None) -> SymlinkMode:
    if value not in SYMLINK_MODES:
        raise _error(source, key, f"expected one of {', '.join(map(repr, SYMLINK_MODES))}, got {_describe(value)}")
    return value  # type: ignore[return-value]


_TOP_TABLES = ("fs", "env", "limits", "sandbox")
_TABLE_KEYS: dict[str, tuple[str, ...]] = {
    "fs": ("preopen", "symlinks"),
    "env": ("vars", "inherit"),
    "limits": LIMIT_KEYS,
    "sandbox": ("require",),
}
_PREOPEN_KEYS = ("host", "guest", "mode")


def _check_keys(table: Mapping[str, Any], allowed: tuple[str, ...], *, source: str, where: str) -> None:
    """``where`` is how the table is shown, e.g. ``[limits]``."""
    for name, value in table.items():
        if name in allowed:
            continue
        expected = ", ".join(allowed)
        if isinstance(value, dict) and where.startswith("[") and not where.startswith("[["):
            raise _error(source, f"[{where[1:-1]}.{name}]", f"unknown table; expected one of the keys: {expected}")
        raise _error(source, f"{where} {name}", f"unknown key; expected one of: {expected}")


def _toml_string(s: str, *, source: str | None, key: str) -> str:
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif o < 0x20 or o == 0x7F:
            out.append({"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}.get(ch, f"\\u{o:04x}"))
        elif 0xD800 <= o <= 0xDFFF:
            raise _error(source, key, "cannot be written as TOML: not valid Unicode (a non-UTF-8 path?)")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _comment_text(s: str) -> str:
    """``s`` made safe for a TOML comment: control characters and lone
    surrogates are shown as escapes."""
    return "".join(
        f"\\u{ord(ch):04x}" if ord(ch) < 0x20 or ord(ch) == 0x7F or 0xD800 <= ord(ch) <= 0xDFFF else ch
        for ch in s
    )


def _toml_key(s: str, *, source: str | None, key: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9_-]+", s):
        return s
    return _toml_string(s, source=source, key=key)


@dataclass(frozen=True, slots=True)
class Policy:
    """Everything a run is allowed: preopens, environment, limits, sandbox.

    ``Policy()`` grants nothing and limits nothing; :meth:`default` is the
    safe built-in default (the same as ``policies/default.toml``).

    ``env`` holds explicit variables in order (a name given twice: the last
    value wins at the first position); ``inherit_env`` names variables
    copied from the host at run time. A name may be in both: the host value
    is used when the host has it, the explicit one otherwise.
    """

    preopens: tuple[Preopen, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    inherit_env: tuple[str, ...] = ()
    limits: Limits = Limits()
    sandbox: SandboxPolicy = SandboxPolicy()
    source: str | None = None
    symlinks: SymlinkMode = "confined"
    #: Where values came from, for ``policy show``: ("limits.memory", "x.toml"), ("fs.preopen#1", "--dir")...
    #: Values not named here are the built-in default's.
    origins: tuple[tuple[str, str], ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        src = "Policy"
        _check_symlinks(self.symlinks, source=src, key="symlinks")
        preopens = self.preopens
        if not isinstance(preopens, Iterable) or isinstance(preopens, (str, bytes)):
            raise _error(src, "preopens", f"expected a sequence of Preopen, got {_describe(preopens)}")
        preopens = tuple(preopens)
        for p in preopens:
            if not isinstance(p, Preopen):
                raise _error(src, "preopens", f"expected Preopen items, got {_describe(p)}")
        guests = [p.guest for p in preopens]
        for guest in guests:
            if guests.count(guest) > 1:
                raise _error(src, "preopens", f"guest name {guest!r} is granted twice")
        object.__setattr__(self, "preopens", preopens)

        env = self.env
        if isinstance(env, Mapping):
            env = tuple(env.items())
        if not isinstance(env, Iterable) or isinstance(env, (str, bytes)):
            raise _error(src, "env", f"expected (name, value) pairs, got {_describe(env)}")
        pairs: list[tuple[str, str]] = []
        for item in env:
            if not isinstance(item, (tuple, list)) or len(item) != 2:
                raise _error(src, "env", f"expected (name, value) pairs, got {_describe(item)}")
            name = _check_env_name(item[0], source=src, key="env")
            pairs.append((name, _check_env_value(item[1], source=src, key=f"env {name}")))
        object.__setattr__(self, "env", _merge_env(pairs))

        inherit = self.inherit_env
        if not isinstance(inherit, Iterable) or isinstance(inherit, (str, bytes)):
            raise _error(src, "inherit_env", f"expected a sequence of names, got {_describe(inherit)}")
        names: list[str] = []
        for name in inherit:
            name = _check_env_name(name, source=src, key="inherit_env")
            if name not in names:
                names.append(name)
        object.__setattr__(self, "inherit_env", tuple(names))

        if not isinstance(self.limits, Limits):
            raise _error(src, "limits", f"expected Limits, got {_describe(self.limits)}")
        if not isinstance(self.sandbox, SandboxPolicy):
            raise _error(src, "sandbox", f"expected SandboxPolicy, got {_describe(self.sandbox)}")
        if self.source is not None:
            source = self.source
            if isinstance(source, os.PathLike):
                source = os.fspath(source)
            if isinstance(source, bytes):
                source = os.fsdecode(source)
            if not isinstance(source, str):
                raise _error(src, "source", f"expected a string, got {_describe(source)}")
            object.__setattr__(self, "source", source)

    # ---- construction

    @classmethod
    def default(cls) -> Policy:
        """The built-in safe default for untrusted code: the package's
        ``default_policy.toml`` (``policies/default.toml`` links to it, so
        the two are one definition; its comments give the reasoning for each
        value): no preopens, no environment; memory 256MiB, table_elements
        100000, timeout 60s and cpu_time 60s (both counted from the guest's
        start), no fuel limit, output 64MiB per stream, open_files 256,
        file_size 1GiB, disk 4GiB, files 100000, module_size 256MiB,
        compile_timeout 600s; requires seccomp.
        """
        return _builtin_default()

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str]) -> Policy:
        """Load a policy file. Relative preopen hosts resolve against the
        file's folder (made absolute, symlinks not resolved). ``source`` is
        the path as given."""
        raw = os.fspath(path)
        source = os.fsdecode(raw) if isinstance(raw, bytes) else raw
        p = Path(source)
        try:
            data = p.read_bytes()
        except FileNotFoundError:
            raise _error(source, None, "no such file") from None
        except IsADirectoryError:
            raise _error(source, None, "is a directory, not a policy file") from None
        except OSError as e:
            raise _error(source, None, f"cannot read: {e.strerror or e}") from None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise _error(source, None, f"not UTF-8 text (bad byte at offset {e.start})") from None
        return cls.from_toml_text(text, source=source, base_dir=p.absolute().parent)

    @classmethod
    def from_toml_text(cls, text: str, *, source: str, base_dir: Path, defaults: Policy | None = None) -> Policy:
        """Parse policy TOML; ``source`` names it in errors and in the
        result, ``base_dir`` is where relative preopen hosts resolve. A key
        the text leaves out keeps its value in ``defaults`` (by default
        :meth:`default`)."""
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            msg = str(e)
            m = re.fullmatch(r"(.*) \(at line (\d+), column (\d+)\)", msg, re.S)
            if m:
                where = f"line {m.group(2)}, column {m.group(3)}"
                msg = m.group(1)
            else:
                m = re.fullmatch(r"(.*) \(at end of document\)", msg, re.S)
                where = "end of file"
                if m:
                    msg = m.group(1)
            raise _error(source, where, f"invalid TOML: {msg}") from None
        return cls._from_data(data, source=source, base_dir=Path(base_dir).absolute(),
                              defaults=cls.default() if defaults is None else defaults)

    @classmethod
    def _from_data(cls, data: dict[str, Any], *, source: str, base_dir: Path, defaults: Policy) -> Policy:
        for name, value in data.items():
            if name not in _TOP_TABLES:
                tables = ", ".join(f"[{t}]" for t in _TOP_TABLES)
                if isinstance(value, dict) or (
                    isinstance(value, list) and value and all(isinstance(v, dict) for v in value)
                ):
                    raise _error(source, f"[{name}]", f"unknown table; expected one of: {tables}")
                raise _error(source, name, f"unknown key; expected one of the tables {tables}")
            if not isinstance(value, dict):
                raise _error(source, f"[{name}]", f"expected a table, got {_describe(value)}")
            _check_keys(value, _TABLE_KEYS[name], source=source, where=f"[{name}]")

        # [fs]
        preopens: list[Preopen] = []
        fs = data.get("fs", {})
        if "preopen" in fs:
            items = fs["preopen"]
            if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
                raise _error(
                    source, "[fs] preopen", f"expected an array of tables ([[fs.preopen]]), got {_describe(items)}"
                )
            for i, item in enumerate(items, 1):
                where = f"[[fs.preopen]] #{i}"
                _check_keys(item, _PREOPEN_KEYS, source=source, where=where)
                if "host" not in item:
                    raise _error(source, f"{where} host", "required key is missing")
                pre = _make_preopen(
                    item["host"],
                    item.get("guest"),
                    item.get("mode", "rw"),
                    base_dir=base_dir,
                    source=source,
                    key_prefix=where,
                )
                for j, earlier in enumerate(preopens, 1):
                    if earlier.guest == pre.guest:
                        raise _error(source, f"{where} guest",
                                     f"{pre.guest!r} is already granted by [[fs.preopen]] #{j}")
                preopens.append(pre)

        symlinks = _check_symlinks(fs.get("symlinks", defaults.symlinks), source=source, key="[fs] symlinks")

        # [env]
        env_pairs: list[tuple[str, str]] = []
        inherit: list[str] = []
        env = data.get("env", {})
        if "vars" in env:
            vars_ = env["vars"]
            if not isinstance(vars_, dict):
                raise _error(source, "[env] vars", f"expected a table of strings, got {_describe(vars_)}")
            for name, value in vars_.items():
                _check_env_name(name, source=source, key="[env] vars")
                _check_env_value(value, source=source, key=f"[env] vars.{name}")
                env_pairs.append((name, value))
        if "inherit" in env:
            names = env["inherit"]
            if not isinstance(names, list):
                raise _error(source, "[env] inherit", f"expected an array of variable names, got {_describe(names)}")
            for i, name in enumerate(names, 1):
                if not isinstance(name, str):
                    raise _error(source, "[env] inherit", f"item {i}: expected a variable name, got {_describe(name)}")
                _check_env_name(name, source=source, key="[env] inherit")
                if name not in inherit:
                    inherit.append(name)

        # [limits]: a key left out keeps the built-in default's value
        base = defaults
        limits_tbl = data.get("limits", {})
        parsed = {
            name: _parse_limit(name, value, source=source, key=f"[limits] {name}") for name, value in limits_tbl.items()
        }

        # [sandbox]
        require: tuple[str, ...] = base.sandbox.require
        sandbox = data.get("sandbox", {})
        if "require" in sandbox:
            req = sandbox["require"]
            if not isinstance(req, list):
                raise _error(source, "[sandbox] require", f"expected an array of layer names, got {_describe(req)}")
            require = _check_layers(req, source=source, key="[sandbox] require")

        origins = [(f"fs.preopen#{i}", source) for i in range(1, len(preopens) + 1)]
        origins += [(f"env.{key}", source) for key in ("vars", "inherit") if key in env]
        origins += [(f"limits.{name}", source) for name in parsed]
        origins += [("sandbox.require", source)] if "require" in sandbox else []
        origins += [("fs.symlinks", source)] if "symlinks" in fs else []
        return cls(
            preopens=tuple(preopens),
            env=tuple(env_pairs),
            inherit_env=tuple(inherit),
            limits=dataclasses.replace(base.limits, **parsed),
            sandbox=SandboxPolicy(require=require),
            source=source,
            origins=tuple(origins),
            symlinks=symlinks,
        )

    # ---- flags override the file

    def with_preopen(
        self,
        host: str | os.PathLike[str] | Preopen,
        guest: str | None = None,
        *,
        mode: Mode = "rw",
        source: str = "--dir",
    ) -> Policy:
        """Add a preopen (after the existing ones). A relative ``host`` is
        made absolute against the current directory; ``guest`` defaults to
        ``host`` as written. A :class:`Preopen` may be passed as ``host``
        (then ``guest`` must be None and ``mode`` is taken from it).
        A guest name already granted is an error: two grants of one name
        conflict. Errors name ``source`` (default ``--dir``)."""
        if isinstance(host, Preopen):
            if guest is not None:
                raise _error(source, None, "guest must not be given with a Preopen")
            pre = host
        else:
            pre = _make_preopen(host, guest, mode, base_dir=Path.cwd(), source=source, key_prefix=None)
        origins = dict(self.origins)
        for i, earlier in enumerate(self.preopens, 1):
            if earlier.guest == pre.guest:
                by = origins.get(f"fs.preopen#{i}", "the policy")
                raise _error(source, None, f"guest name {pre.guest!r} is already granted (by {by}: {earlier.host})")
        key = f"fs.preopen#{len(self.preopens) + 1}"
        return dataclasses.replace(self, preopens=self.preopens + (pre,), origins=self.origins + ((key, source),))

    def with_symlinks(self, mode: str) -> Policy:
        """Choose what path_symlink may create (one of :data:`SYMLINK_MODES`).
        Errors name ``--symlinks``."""
        return dataclasses.replace(self, symlinks=_check_symlinks(mode, source="--symlinks", key=None),
                                   origins=self.origins + (("fs.symlinks", "--symlinks"),))

    def with_env(self, name: str, value: str | None = None) -> Policy:
        """Set a variable (``value`` given: overrides any inherit of that
        name) or inherit it from the host at run time (``value`` None: an
        explicit value from the file stays as the fallback when the host
        does not have it). Errors name ``--env``."""
        name = _check_env_name(name, source="--env", key=None)
        if value is None:
            if name in self.inherit_env:
                return self
            return dataclasses.replace(self, inherit_env=self.inherit_env + (name,))
        value = _check_env_value(value, source="--env", key=name)
        env = _merge_env(self.env + ((name, value),))
        inherit = tuple(n for n in self.inherit_env if n != name)
        return dataclasses.replace(self, env=env, inherit_env=inherit)

    def with_limits(self, _source: str | None = None, /, **changes: object) -> Policy:
        """Change limits; keys as in :class:`Limits`, values as in the TOML
        file (``"256MiB"``, ``"2s"``, ints, floats for durations) or None /
        ``"unlimited"`` to lift a limit. An unknown key is a PolicyError.
        Errors name the optional positional ``_source`` or, by default, a
        flag spelled from the key (``cpu_time`` -> ``--cpu-time``)."""
        parsed: dict[str, int | float | None] = {}
        for key, value in changes.items():
            if key not in _LIMIT_SPECS:
                raise _error(
                    _source or "limits", key, f"unknown limit; expected one of: {', '.join(LIMIT_KEYS)}"
                )
            if _source is None:
                parsed[key] = _parse_limit(key, value, source="--" + key.replace("_", "-"), key=None)
            else:
                parsed[key] = _parse_limit(key, value, source=_source, key=key)
        origins = self.origins + tuple((f"limits.{key}", _source or "--" + key.replace("_", "-")) for key in parsed)
        return dataclasses.replace(self, limits=dataclasses.replace(self.limits, **parsed), origins=origins)

    def with_require(self, *layers: str) -> Policy:
        """Require more sandbox layers (added after the existing ones,
        duplicates dropped). Unknown names are a PolicyError naming
        ``--require`` and listing the valid layers."""
        flat: list[object] = []
        for layer in layers:
            if isinstance(layer, (list, tuple)):
                flat.extend(layer)
            else:
                flat.append(layer)
        new = _check_layers(flat, source="--require", key=None)
        return dataclasses.replace(
            self, sandbox=SandboxPolicy(require=_check_layers(self.sandbox.require + new, source=None, key=None))
        )

    # ---- use

    def resolved_env(self, host_env: Mapping[str, str]) -> list[tuple[str, str]]:
        """The environment the module gets: explicit variables in order,
        then inherited ones that ``host_env`` has. A name given twice: the
        last value wins, at its first position (so an inherited value
        replaces an explicit one in place)."""
        merged: dict[str, str] = {}
        for name, value in self.env:
            merged[name] = value
        for name in self.inherit_env:
            if name in host_env:
                merged[name] = host_env[name]
        return list(merged.items())

    def to_toml(self) -> str:
        """The effective policy as TOML (for ``wasijail policy show``).
        ``from_toml_text(p.to_toml(), ...)`` gives back ``p`` (apart from
        ``source``). Each value is marked with where it came from: the
        policy file, a flag, or the built-in default."""
        src = self.source
        origins = dict(self.origins)
        default = Policy.default()

        def mark(key: str) -> str:
            origin = origins.get(key)
            if origin is not None:
                return "  # from " + _comment_text(origin)
            if key == "fs.symlinks":
                return "  # built-in default" if self.symlinks == default.symlinks else ""
            table, _, name = key.partition(".")
            ours = self.sandbox.require if table == "sandbox" else getattr(self.limits, name, None)
            theirs = default.sandbox.require if table == "sandbox" else getattr(default.limits, name, None)
            return "  # built-in default" if table in ("limits", "sandbox") and ours == theirs else ""

        lines: list[str] = []
        lines.append("# wasijail policy (effective)")
        if src is not None:
            lines.append("# from: " + _comment_text(src))
        else:
            lines.append("# from: built-in")
        lines.append("")
        lines.append("[fs]")
        lines.append(f'symlinks = "{self.symlinks}"' + mark("fs.symlinks"))
        for i, p in enumerate(self.preopens, 1):
            where = f"[[fs.preopen]] #{i}"
            lines.append("")
            lines.append("[[fs.preopen]]" + mark(f"fs.preopen#{i}"))
            lines.append("host = " + _toml_string(str(p.host), source=src, key=f"{where} host"))
            lines.append("guest = " + _toml_string(p.guest, source=src, key=f"{where} guest"))
            lines.append(f'mode = "{p.mode}"')
        if self.env or self.inherit_env:
            lines.append("")
            lines.append("[env]")
            inherit = ", ".join(_toml_string(n, source=src, key="[env] inherit") for n in self.inherit_env)
            lines.append(f"inherit = [{inherit}]" + mark("env.inherit"))
            if self.env:
                lines.append("")
                lines.append("[env.vars]" + mark("env.vars"))
                for name, value in self.env:
                    k = _toml_key(name, source=src, key="[env] vars")
                    lines.append(f"{k} = " + _toml_string(value, source=src, key=f"[env] vars.{name}"))
        lines.append("")
        lines.append("[limits]")
        for name in LIMIT_KEYS:
            value = getattr(self.limits, name)
            kind = _LIMIT_SPECS[name].kind
            if value is None:
                line = f'{name} = "unlimited"'
            elif kind == "size":
                text = format_size(value)
                line = f"{name} = {text}" if text.isdigit() else f'{name} = "{text}"'
            elif kind == "duration":
                line = f'{name} = "{format_duration(value)}"'
            else:
                line = f"{name} = {value}"
            lines.append(line + mark(f"limits.{name}"))
        lines.append("")
        lines.append("[sandbox]")
        lines.append("require = [" + ", ".join(f'"{layer}"' for layer in self.sandbox.require) + "]"
                     + mark("sandbox.require"))
        return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------
# command-line flags


def _split_mode(parts: list[str], *, flag: str, text: str) -> Mode:
    mode = parts[2]
    if mode not in ("ro", "rw"):
        raise _error(flag, None, f"unknown mode {mode!r} in {text!r}; expected ro or rw")
    return mode  # type: ignore[return-value]


def parse_dir_flag(text: str) -> Preopen:
    """wasmtime's ``--dir``: ``HOST``, ``HOST::GUEST``, ``HOST::GUEST::ro``
    or ``HOST::GUEST::rw``. The guest name defaults to HOST as written (so
    ``--dir=.`` is named ``.``); HOST is made absolute against the current
    directory (symlinks not resolved). Errors name ``--dir``."""
    flag = "--dir"
    if not isinstance(text, str):
        raise _error(flag, None, f"expected HOST[::GUEST[::ro|rw]], got {_describe(text)}")
    parts = text.split("::")
    if len(parts) > 3:
        raise _error(flag, None, f"expected HOST[::GUEST[::ro|rw]], got {text!r}")
    mode: Mode = _split_mode(parts, flag=flag, text=text) if len(parts) == 3 else "rw"
    host = parts[0]
    guest = parts[1] if len(parts) >= 2 else host
    if host == "":
        raise _error(flag, None, f"empty host directory in {text!r}")
    if guest == "":
        raise _error(flag, None, f"empty guest name in {text!r}")
    return _make_preopen(host, guest, mode, base_dir=Path.cwd(), source=flag, key_prefix=None)


def parse_mapdir_flag(text: str) -> Preopen:
    """The WASI tutorial's legacy ``--mapdir GUEST::HOST`` (guest first!),
    optionally with ``::ro`` / ``::rw``. HOST is made absolute against the
    current directory. Errors name ``--mapdir``."""
    flag = "--mapdir"
    if not isinstance(text, str):
        raise _error(flag, None, f"expected GUEST::HOST, got {_describe(text)}")
    parts = text.split("::")
    if len(parts) not in (2, 3):
        raise _error(flag, None, f"expected GUEST::HOST, got {text!r}")
    mode: Mode = _split_mode(parts, flag=flag, text=text) if len(parts) == 3 else "rw"
    guest, host = parts[0], parts[1]
    if guest == "":
        raise _error(flag, None, f"empty guest name in {text!r}")
    if host == "":
        raise _error(flag, None, f"empty host directory in {text!r}")
    return _make_preopen(host, guest, mode, base_dir=Path.cwd(), source=flag, key_prefix=None)


def parse_env_flag(text: str) -> tuple[str, str | None]:
    """``--env NAME=VALUE`` -> ``(NAME, VALUE)``; ``--env NAME`` ->
    ``(NAME, None)`` (copy from the host). The name is split at the first
    '='; an empty name, or NUL anywhere, is an error naming ``--env``."""
    flag = "--env"
    if not isinstance(text, str):
        raise _error(flag, None, f"expected NAME=VALUE or NAME, got {_describe(text)}")
    name, sep, value = text.partition("=")
    if name == "":
        raise _error(flag, None, f"empty variable name in {text!r}")
    _check_env_name(name, source=flag, key=None)
    if not sep:
        return name, None
    _check_env_value(value, source=flag, key=name)
    return name, value


#: ``-W`` option names: wasmtime's own, then ours (Limits keys with dashes).
_W_OPTIONS: dict[str, str] = {
    "max-memory-size": "memory",
    "max-table-elements": "table_elements",
    "timeout": "timeout",
    "fuel": "fuel",
    **{key.replace("_", "-"): key for key in LIMIT_KEYS},
}


def parse_wasmtime_w_flag(text: str) -> dict[str, int | float | None]:
    """wasmtime's ``-W`` spelling of limits: ``"timeout=2s"``,
    ``"max-memory-size=268435456"``, ``"fuel=1000"``, or several separated
    by commas (a later one wins). Accepted options: wasmtime's
    ``max-memory-size``, ``max-table-elements``, ``timeout``, ``fuel`` and
    every Limits key spelled with dashes (``cpu-time``, ``open-files``, ...).
    Returns parsed values keyed by Limits field, ready for
    :meth:`Policy.with_limits`. Errors name ``-W`` and the option."""
    flag = "-W"
    if not isinstance(text, str):
        raise _error(flag, None, f"expected OPTION=VALUE, got {_describe(text)}")
    out: dict[str, int | float | None] = {}
    for item in text.split(","):
        name, sep, value = item.partition("=")
        name = name.strip()
        if name == "":
            raise _error(flag, None, f"expected OPTION=VALUE, got {text!r}")
        if name not in _W_OPTIONS:
            raise _error(flag, None, f"unknown option {name!r}; supported: {', '.join(sorted(_W_OPTIONS))}")
        if not sep:
            raise _error(flag, name, f"expected {name}=VALUE")
        key = _W_OPTIONS[name]
        out[key] = _parse_limit(key, value.strip(), source=flag, key=name)
    return out


@functools.cache
def _builtin_default() -> Policy:
    from importlib import resources

    text = resources.files(__package__).joinpath(DEFAULT_POLICY_FILE).read_text("utf-8")
    # The default itself inherits from nothing: a key it leaves out is not limited.
    policy = Policy.from_toml_text(text, source=DEFAULT_POLICY_FILE, base_dir=Path.cwd(), defaults=Policy())
    return dataclasses.replace(policy, source=None, origins=())
