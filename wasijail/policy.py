"""The policy model: what a module may see and how much it may use.

A :class:`Policy` is a frozen value. Data enters it at four doors: a TOML
policy file (:meth:`Policy.from_toml`; the built-in safe default,
:meth:`Policy.default`, is one), command-line flags (``wasijail.flags`` splits
their text, the ``with_*`` methods merge the values: a flag overrides the
file), a batch manifest's ``limits`` and ``preopens`` (``wasijail.batch``),
and keyword arguments of the embedding API (``Limits(memory="1GiB")``,
``Preopen(...)``, ``Policy(...)``). Every door hands raw values to the same
constructors, whose attrs converters are the one validator of each value;
the door only names where a bad value came from. This module does no I/O
apart from reading the policy file; the host environment is consulted only
by :meth:`Policy.resolved_env`, with a mapping the caller passes in, and
preopened directories are not checked for existence here (the supervisor
checks them when a run starts).

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

    [limits]                  # each key of Limits (LIMITS lists them); absent = the default's value
    memory = "256MiB"
    timeout = "10s"
    fuel = 1000000            # 0 = no fuel at all: the first instruction traps

    [sandbox]
    require = ["seccomp"]     # layers that must be available; [] requires none

Any limit may also be given as the string ``"unlimited"`` (or ``"none"``).

Errors are :class:`PolicyError` with a one-line message naming the file (or
the flag), the key, what was expected and what was found, e.g.
``policies/x.toml: [limits] memory: expected a size such as 256MiB, got 'lots'``.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import math
import os
import re
import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import attrs

from .results import WasijailError
from .sandbox import LAYER_NAMES

__all__ = [
    "PolicyError",
    "Preopen",
    "Limits",
    "LimitSpec",
    "SandboxPolicy",
    "Policy",
    "SANDBOX_LAYERS",
    "SYMLINK_MODES",
    "LIMITS",
    "LIMIT_KEYS",
    "parse_size",
    "parse_duration",
    "format_size",
    "format_duration",
]

Mode = Literal["ro", "rw"]

#: Sandbox layers a policy may require (the registry in wasijail.sandbox);
#: ``wasijail doctor`` reports which of them the host provides.
SANDBOX_LAYERS: tuple[str, ...] = LAYER_NAMES

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
    it does not apply. They are also available as ``.source`` and ``.key``,
    the bare problem as ``.problem``; ``.field`` is the model's field the
    value was for (``memory``, ``host``, ``env``...), and ``.item`` the
    variable name or the preopens' numbers where one applies.
    """

    def __init__(self, message: str, *, source: str | None = None, key: str | None = None,
                 problem: str | None = None, field: str | None = None, item: Any = None):
        super().__init__(message)
        self.source = source
        self.key = key
        self.problem = message if problem is None else problem
        self.field = field
        self.item = item

    def at(self, source: str | None, key: str | None) -> PolicyError:
        """The same problem, named the way the door the value came through names it."""
        return _error(source, key, self.problem, field=self.field, item=self.item)


def _error(source: str | None, key: str | None, problem: str, *, field: str | None = None,
           item: Any = None) -> PolicyError:
    parts = [p for p in (source, key) if p]
    parts.append(problem)
    message = ": ".join(parts).replace("\n", "\\n").replace("\r", "\\r")
    return PolicyError(message, source=source, key=key, problem=problem, field=field, item=item)


@contextlib.contextmanager
def _naming(source: str | None, key: Callable[[PolicyError], str | None]) -> Iterator[None]:
    """Errors of the values checked inside, named by ``source`` and ``key(error)``: how one door (a
    file, a flag, a manifest line) names what the model's one validator found wrong."""
    try:
        yield
    except PolicyError as exc:
        raise exc.at(source, key(exc)) from None


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
# limits: one spec each, declared once as a field of Limits


_YEAR = 365 * 86400.0
_UNITS = {"size": "bytes", "duration": "seconds", "count": "count"}
_METAVARS = {"size": "SIZE", "duration": "DURATION", "count": "N"}


@attrs.frozen
class LimitSpec:
    """What one limit is: its kind (a size in bytes, a duration in seconds or a count), its bounds
    (inclusive), what it caps (``doc``, the text of ``--help``, of :class:`Limits`' docstring and of
    ``-W help``), and wasmtime's ``-W`` name for it, if wasmtime has the limit too.
    ``None`` (absent) always means "not limited"."""

    kind: Literal["size", "duration", "count"]
    minimum: int | float
    maximum: int | float
    doc: str
    why_min: str = ""  # why the minimum is what it is, shown in its error
    wasmtime: str | None = None

    @property
    def metavar(self) -> str:
        """How ``--help`` shows the value: SIZE, DURATION or N."""
        return _METAVARS[self.kind]

    def format(self, value: int | float) -> str:
        """A value as a policy file writes it: ``256MiB``, ``10s``, ``1000``."""
        if self.kind == "size":
            return format_size(int(value))
        if self.kind == "duration":
            return format_duration(float(value))
        return str(value)

    def bounds(self) -> str:
        """``64KiB to 256TiB``: the accepted range, as :meth:`format` writes it."""
        return f"{self.format(self.minimum)} to {self.format(self.maximum)}"

    def parse(self, value: object, *, source: str | None, key: str | None) -> int | float | None:
        """The one validator of this limit's values: a TOML value, a flag's text or an API
        argument (``"256MiB"``, ``"2s"``, ints, floats for durations; None, ``"unlimited"`` or
        ``"none"`` lift it) -> int bytes, float seconds, int count or None."""
        if value is None or (isinstance(value, str) and value.strip().lower() in ("unlimited", "none")):
            return None
        parsed: int | float
        if self.kind == "size":
            parsed = parse_size(value, key=key or "", source=source or "")
        elif self.kind == "duration":
            parsed = parse_duration(value, key=key or "", source=source or "")
        else:
            parsed = _parse_count(value, key=key or "", source=source or "")
        if parsed < self.minimum:
            raise _error(source, key, f"must be at least {self.format(self.minimum)}{self.why_min}, "
                                      f"got {_describe(value)}")
        if parsed > self.maximum:
            raise _error(source, key, f"must be at most {self.format(self.maximum)}, got {_describe(value)}")
        return parsed


def _convert_limit(value: object, field: attrs.Attribute[Any]) -> Any:
    try:
        return field.metadata["limit"].parse(value, source="Limits", key=field.name)
    except PolicyError as exc:
        raise _error("Limits", field.name, exc.problem, field=field.name) from None


def _limit(kind: Literal["size", "duration", "count"], minimum: int | float, maximum: int | float, doc: str,
           why_min: str = "", wasmtime: str | None = None) -> Any:
    """A field of Limits, and its spec: the one place a limit is defined."""
    return attrs.field(default=None, converter=attrs.Converter(_convert_limit, takes_field=True),
                       metadata={"limit": LimitSpec(kind, minimum, maximum, doc, why_min, wasmtime)})


@attrs.frozen
class Limits:
    """Resource limits; ``None`` means not limited.

    Sizes and durations are stored as int bytes and float seconds; the
    constructor also accepts the string forms of :func:`parse_size` and
    :func:`parse_duration` and ``"unlimited"``, and normalizes them. A value
    outside a limit's bounds (inclusive) is a :class:`PolicyError`.
    :data:`LIMITS` holds each limit's spec (kind, bounds, what it caps);
    ``help(Limits)``, ``wasijail run --help`` and README's table of limits
    list them all.
    """

    memory: int | None = _limit("size", 64 * KiB, 2**48, "linear memory per store; memory.grow returns -1 past it",
                                " (one wasm page)", wasmtime="max-memory-size")
    table_elements: int | None = _limit("count", 1, 2**32, "elements per table; table.grow fails past it",
                                        wasmtime="max-table-elements")
    timeout: float | None = _limit("duration", 0.001, _YEAR, "wall-clock deadline of the guest's run (from its "
                                   "start); the child is killed at it", wasmtime="timeout")
    cpu_time: float | None = _limit("duration", 0.001, _YEAR, "CPU time of the guest before it is stopped (from its "
                                    "start; enforced with RLIMIT_CPU, rounded up to whole seconds)")
    fuel: int | None = _limit("count", 0, 2**63 - 1, "wasm fuel units; 0 is none at all: the first instruction "
                              "traps, as in wasmtime", wasmtime="fuel")
    output: int | None = _limit("size", 1, 2**40, "bytes captured per output stream")
    open_files: int | None = _limit("count", 4, 2**20, "descriptors open at once (RLIMIT_NOFILE-like)",
                                    " (stdin, stdout, stderr and one more)")
    file_size: int | None = _limit("size", 1, 2**60, "largest file the module may write")
    disk: int | None = _limit("size", 1, 2**60, "bytes the module may write to files of writable preopens in one "
                              "run; past it writes fail with EDQUOT")
    files: int | None = _limit("count", 1, 2**40, "directory entries (files, directories, links) the module may "
                               "create in one run; past it creating fails with EDQUOT")
    module_size: int | None = _limit("size", 8, 2**40, "largest module accepted (.wasm or .wat bytes)",
                                     " (the smallest module: magic and version)")
    compile_timeout: float | None = _limit("duration", 0.001, _YEAR, "wall-clock deadline for compiling the "
                                           "module (or loading it from the cache)")


#: Each limit's spec, by name, in the order of :class:`Limits`' fields.
LIMITS: dict[str, LimitSpec] = {field.name: field.metadata["limit"] for field in attrs.fields(Limits)}

#: The limit names, in the order of :class:`Limits`' fields.
LIMIT_KEYS: tuple[str, ...] = tuple(LIMITS)

Limits.__doc__ = (Limits.__doc__ or "") + "\n    Each limit, its unit, what it caps and its bounds:\n\n" + "".join(
    f"    - ``{name}`` ({_UNITS[spec.kind]}): {spec.doc}; {spec.bounds()}.\n" for name, spec in LIMITS.items())


def limit_flag(name: str) -> str:
    """The command-line flag of a limit: ``cpu_time`` -> ``--cpu-time``."""
    return "--" + name.replace("_", "-")


# --------------------------------------------------------------------------
# preopens, sandbox


def _text(value: object, *, what: str, field: str, owner: str) -> str:
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if isinstance(value, bytes):
        value = os.fsdecode(value)
    if not isinstance(value, str):
        raise _error(owner, field, f"expected {what}, got {_describe(value)}", field=field)
    if value == "":
        raise _error(owner, field, f"expected {what}, got an empty string", field=field)
    if "\0" in value:
        raise _error(owner, field, f"must not contain NUL, got {_describe(value)}", field=field)
    return value


def _host(value: object) -> Path:
    return Path(_text(value, what="a directory path", field="host", owner="Preopen")).absolute()


def _guest(value: object) -> str:
    return _text(value, what="a guest name", field="guest", owner="Preopen")


def _mode(value: object) -> Mode:
    if not isinstance(value, str) or value not in ("ro", "rw"):
        raise _error("Preopen", "mode", f'expected "ro" or "rw", got {_describe(value)}', field="mode")
    return value  # type: ignore[return-value]


@attrs.frozen
class Preopen:
    """A host directory offered to the module under a guest name.

    ``host`` is absolute (relative paths are made absolute against the
    current directory; :meth:`under` resolves them against another folder)
    but symlinks are not resolved and the directory need not exist yet: the
    supervisor checks it when a run starts. ``guest`` is the name the module
    sees (non-empty, no NUL). ``mode`` is ``"ro"`` or ``"rw"``.
    """

    host: Path = attrs.field(converter=_host)
    guest: str = attrs.field(converter=_guest)
    mode: Mode = attrs.field(default="rw", converter=_mode)

    @classmethod
    def under(cls, base_dir: str | os.PathLike[str], host: object, guest: object = None, mode: object = "rw") -> Preopen:
        """A preopen whose relative ``host`` resolves against ``base_dir`` (a policy file's or a
        manifest's folder); ``guest`` defaults to ``host`` as written."""
        if isinstance(host, os.PathLike):
            host = os.fspath(host)
        if guest is None:
            guest = host
        if isinstance(host, str) and host and "\0" not in host:  # text that joins; the rest is the converter's
            host = os.path.join(base_dir, host)
        return cls(host, guest, mode)

    @property
    def readonly(self) -> bool:
        """Whether the preopen is read-only (mode "ro")."""
        return self.mode == "ro"


def _names(value: object, *, owner: str, field: str, noun: str, check: Callable[[str], object]) -> tuple[str, ...]:
    """A sequence (not one string) of names, each a string that ``check`` accepts; duplicates
    dropped, order kept. Errors say ``noun`` (``layer name``...)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise _error(owner, field, f"expected a sequence of {noun}s, got {_describe(value)}", field=field)
    out: list[str] = []
    for i, name in enumerate(value, 1):
        if not isinstance(name, str):
            raise _error(owner, field, f"item {i}: expected a {noun}, got {_describe(name)}", field=field)
        check(name)
        if name not in out:
            out.append(name)
    return tuple(out)


def _known_layer(layer: str) -> None:
    if layer not in SANDBOX_LAYERS:
        raise _error("SandboxPolicy", "require", f"unknown layer {layer!r}; valid layers: {', '.join(SANDBOX_LAYERS)}",
                     field="require")


def _layers(value: object) -> tuple[str, ...]:
    return _names(value, owner="SandboxPolicy", field="require", noun="layer name", check=_known_layer)


@attrs.frozen
class SandboxPolicy:
    """Sandbox layers that must be available; a run fails if one is not.

    ``require`` holds names from :data:`SANDBOX_LAYERS`, without
    duplicates, in the order given. Layers not required are still applied
    when the host provides them; missing ones are reported.
    """

    require: tuple[str, ...] = attrs.field(default=(), converter=_layers)


# --------------------------------------------------------------------------
# the policy's own fields


def _env_name(name: object, *, field: str) -> str:
    if not isinstance(name, str):
        raise _error("Policy", field, f"expected a variable name, got {_describe(name)}", field=field)
    if name == "":
        raise _error("Policy", field, "variable name must not be empty", field=field)
    if "=" in name or "\0" in name:
        raise _error("Policy", field, f"variable name must not contain '=' or NUL, got {_describe(name)}",
                     field=field)
    return name


def _env(value: object) -> tuple[tuple[str, str], ...]:
    """Explicit variables: a mapping or (name, value) pairs; a name given twice: the last value
    wins, at the first position."""
    if isinstance(value, Mapping):
        value = tuple(value.items())
    if not isinstance(value, Iterable) or isinstance(value, (str, bytes)):
        raise _error("Policy", "env", f"expected (name, value) pairs, got {_describe(value)}", field="env")
    merged: dict[str, str] = {}
    for pair in value:
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise _error("Policy", "env", f"expected (name, value) pairs, got {_describe(pair)}", field="env")
        name, text = _env_name(pair[0], field="env"), pair[1]
        if not isinstance(text, str):
            raise _error("Policy", f"env {name}", f"expected a string, got {_describe(text)}", field="env", item=name)
        if "\0" in text:
            raise _error("Policy", f"env {name}", f"value must not contain NUL, got {_describe(text)}", field="env",
                         item=name)
        merged[name] = text
    return tuple(merged.items())


def _inherit(value: object) -> tuple[str, ...]:
    return _names(value, owner="Policy", field="inherit_env", noun="variable name",
                  check=functools.partial(_env_name, field="inherit_env"))


def _preopens(value: object) -> tuple[Preopen, ...]:
    """Preopens in order; a guest name is granted once (``.item`` of the error: the two numbers)."""
    if not isinstance(value, Iterable) or isinstance(value, (str, bytes)):
        raise _error("Policy", "preopens", f"expected a sequence of Preopen, got {_describe(value)}",
                     field="preopens")
    preopens = tuple(value)
    first: dict[str, int] = {}
    for i, pre in enumerate(preopens, 1):
        if not isinstance(pre, Preopen):
            raise _error("Policy", "preopens", f"expected Preopen items, got {_describe(pre)}", field="preopens")
        if pre.guest in first:
            raise _error("Policy", "preopens", f"guest name {pre.guest!r} is granted twice", field="preopens",
                         item=(first[pre.guest], i))
        first[pre.guest] = i
    return preopens


# What path_symlink may create: "confined" refuses every target that,
# resolved lexically from the link's own directory, leaves the preopen (host
# tools that follow links later are never led out); "wasi" creates any
# relative target, as WASI does (the runtime still confines what it follows).
SYMLINK_MODES = ("confined", "wasi")
SymlinkMode = Literal["confined", "wasi"]


def _symlinks(value: object) -> SymlinkMode:
    if value not in SYMLINK_MODES:
        raise _error("Policy", "symlinks",
                     f"expected one of {', '.join(map(repr, SYMLINK_MODES))}, got {_describe(value)}",
                     field="symlinks")
    return value  # type: ignore[return-value]


def _source(value: object) -> str | None:
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if isinstance(value, bytes):
        value = os.fsdecode(value)
    if value is not None and not isinstance(value, str):
        raise _error("Policy", "source", f"expected a string, got {_describe(value)}", field="source")
    return value


def _instance(kind: type) -> Callable[[Any, attrs.Attribute[Any], object], None]:
    def check(_: Any, field: attrs.Attribute[Any], value: object) -> None:
        if not isinstance(value, kind):
            raise _error("Policy", field.name, f"expected {kind.__name__}, got {_describe(value)}", field=field.name)
    return check


# --------------------------------------------------------------------------
# the policy file's shape


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


def _toml_text(s: str, *, source: str | None, key: str) -> str:
    """``s``, refused when TOML cannot hold it (a lone surrogate: a path that is not UTF-8)."""
    if any(0xD800 <= ord(ch) <= 0xDFFF for ch in s):
        raise _error(source, key, "cannot be written as TOML: not valid Unicode (a non-UTF-8 path?)")
    return s


def _comment_text(s: str) -> str:
    """``s`` made safe for a TOML comment: control characters and lone
    surrogates are shown as escapes."""
    return "".join(
        f"\\u{ord(ch):04x}" if ord(ch) < 0x20 or ord(ch) == 0x7F or 0xD800 <= ord(ch) <= 0xDFFF else ch
        for ch in s
    )


def _marked(item: Any, mark: str | None) -> Any:
    """A TOML item with ``# mark`` after it, two spaces out."""
    if mark:
        item.comment(mark)
        item.trivia.comment_ws = "  "
    return item


def _toml_error(exc: tomllib.TOMLDecodeError, source: str) -> PolicyError:
    msg = str(exc)
    m = re.fullmatch(r"(.*) \(at line (\d+), column (\d+)\)", msg, re.S)
    if m:
        where = f"line {m.group(2)}, column {m.group(3)}"
        msg = m.group(1)
    else:
        m = re.fullmatch(r"(.*) \(at end of document\)", msg, re.S)
        where = "end of file"
        if m:
            msg = m.group(1)
    return _error(source, where, f"invalid TOML: {msg}")


# --------------------------------------------------------------------------
# the policy


@attrs.frozen
class Policy:
    """Everything a run is allowed: preopens, environment, limits, sandbox.

    ``Policy()`` grants nothing and limits nothing; :meth:`default` is the
    safe built-in default (the same as ``policies/default.toml``). Copies
    with changes: the ``with_*`` methods, or ``attrs.evolve(policy, ...)``.

    ``env`` holds explicit variables in order (a name given twice: the last
    value wins at the first position); ``inherit_env`` names variables
    copied from the host at run time. A name may be in both: the host value
    is used when the host has it, the explicit one otherwise.
    """

    preopens: tuple[Preopen, ...] = attrs.field(default=(), converter=_preopens)
    env: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=_env)
    inherit_env: tuple[str, ...] = attrs.field(default=(), converter=_inherit)
    limits: Limits = attrs.field(default=Limits(), validator=_instance(Limits))
    sandbox: SandboxPolicy = attrs.field(default=SandboxPolicy(), validator=_instance(SandboxPolicy))
    source: str | None = attrs.field(default=None, converter=_source)
    symlinks: SymlinkMode = attrs.field(default="confined", converter=_symlinks)
    #: Where values came from, for ``policy show``: ("limits.memory", "x.toml"), ("fs.preopen#1", "--dir")...
    #: Values not named here are the built-in default's.
    origins: tuple[tuple[str, str], ...] = attrs.field(default=(), eq=False)

    # ---- construction

    @classmethod
    def default(cls) -> Policy:
        """The built-in safe default for untrusted code: the package's
        ``default_policy.toml`` (``policies/default.toml`` links to it, so
        the two are one definition; its comments give the reasoning for each
        value, ``wasijail policy show`` prints the values): no preopens, no
        environment, every limit set but fuel; requires seccomp.
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
            raise _toml_error(e, source) from None
        return cls._from_data(data, source=source, base_dir=Path(base_dir).absolute(),
                              defaults=cls.default() if defaults is None else defaults)

    @classmethod
    def _from_data(cls, data: dict[str, Any], *, source: str, base_dir: Path, defaults: Policy) -> Policy:
        """The file's shape is checked here (tables, keys, arrays); its values by the model's
        constructors, whose errors are named as the file names them."""
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
        fs, env, sandbox = data.get("fs", {}), data.get("env", {}), data.get("sandbox", {})
        limits_tbl: dict[str, Any] = data.get("limits", {})

        preopens: list[Preopen] = []
        items = fs.get("preopen", [])
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise _error(source, "[fs] preopen", f"expected an array of tables ([[fs.preopen]]), got {_describe(items)}")
        for i, item in enumerate(items, 1):
            where = f"[[fs.preopen]] #{i}"
            _check_keys(item, _PREOPEN_KEYS, source=source, where=where)
            if "host" not in item:
                raise _error(source, f"{where} host", "required key is missing")
            with _naming(source, lambda e: f"{where} {e.field}"):
                preopens.append(Preopen.under(base_dir, item["host"], item.get("guest"), item.get("mode", "rw")))
        vars_ = env.get("vars", {})
        if not isinstance(vars_, dict):
            raise _error(source, "[env] vars", f"expected a table of strings, got {_describe(vars_)}")
        inherit = env.get("inherit", [])
        if not isinstance(inherit, list):
            raise _error(source, "[env] inherit", f"expected an array of variable names, got {_describe(inherit)}")
        require = sandbox.get("require", defaults.sandbox.require)
        if not isinstance(require, (list, tuple)):
            raise _error(source, "[sandbox] require", f"expected an array of layer names, got {_describe(require)}")

        origins = [(f"fs.preopen#{i}", source) for i in range(1, len(preopens) + 1)]
        origins += [(f"env.{key}", source) for key in ("vars", "inherit") if key in env]
        origins += [(f"limits.{name}", source) for name in limits_tbl]
        origins += [("sandbox.require", source)] if "require" in sandbox else []
        origins += [("fs.symlinks", source)] if "symlinks" in fs else []

        def key(exc: PolicyError) -> str | None:
            if exc.field == "env":
                return "[env] vars" if exc.item is None else f"[env] vars.{exc.item}"
            if exc.field == "preopens" and isinstance(exc.item, tuple):
                first, again = exc.item
                exc.problem = f"{preopens[again - 1].guest!r} is already granted by [[fs.preopen]] #{first}"
                return f"[[fs.preopen]] #{again} guest"
            return {"inherit_env": "[env] inherit", "symlinks": "[fs] symlinks", "require": "[sandbox] require"
                    }.get(exc.field or "", f"[limits] {exc.field}")

        with _naming(source, key):
            return cls(
                preopens=preopens,
                env=vars_,
                inherit_env=inherit,
                limits=attrs.evolve(defaults.limits, **limits_tbl),  # a key left out keeps the default's value
                sandbox=SandboxPolicy(require),
                source=source,
                origins=tuple(origins),
                symlinks=fs.get("symlinks", defaults.symlinks),
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
            with _naming(source, lambda e: None):
                pre = Preopen.under(Path.cwd(), host, guest, mode)
        try:
            return attrs.evolve(self, preopens=self.preopens + (pre,),
                                origins=self.origins + ((f"fs.preopen#{len(self.preopens) + 1}", source),))
        except PolicyError as exc:
            if exc.field != "preopens" or not isinstance(exc.item, tuple):
                raise
            earlier = self.preopens[exc.item[0] - 1]
            by = dict(self.origins).get(f"fs.preopen#{exc.item[0]}", "the policy")
            raise _error(source, None, f"guest name {pre.guest!r} is already granted (by {by}: {earlier.host})"
                         ) from None

    def with_symlinks(self, mode: str) -> Policy:
        """Choose what path_symlink may create (one of :data:`SYMLINK_MODES`).
        Errors name ``--symlinks``."""
        with _naming("--symlinks", lambda e: None):
            return attrs.evolve(self, symlinks=mode, origins=self.origins + (("fs.symlinks", "--symlinks"),))

    def with_env(self, name: str, value: str | None = None) -> Policy:
        """Set a variable (``value`` given: overrides any inherit of that
        name) or inherit it from the host at run time (``value`` None: an
        explicit value from the file stays as the fallback when the host
        does not have it). Errors name ``--env``."""
        with _naming("--env", lambda e: e.item):
            if value is None:
                if name in self.inherit_env:
                    return self
                return attrs.evolve(self, inherit_env=self.inherit_env + (name,))
            return attrs.evolve(self, env=self.env + ((name, value),),
                                inherit_env=tuple(n for n in self.inherit_env if n != name))

    def with_limits(self, _source: str | None = None, /, **changes: object) -> Policy:
        """Change limits; keys as in :class:`Limits`, values as in the TOML
        file (``"256MiB"``, ``"2s"``, ints, floats for durations) or None /
        ``"unlimited"`` to lift a limit. An unknown key is a PolicyError.
        Errors name the optional positional ``_source`` or, by default, a
        flag spelled from the key (``cpu_time`` -> ``--cpu-time``)."""
        for key in changes:
            if key not in LIMITS:
                raise _error(_source or "limits", key, f"unknown limit; expected one of: {', '.join(LIMIT_KEYS)}")
        values: dict[str, Any] = changes  # the converters take any value; they say what is wrong with it
        try:
            limits = attrs.evolve(self.limits, **values)
        except PolicyError as exc:
            raise (exc.at(_source, exc.field) if _source else exc.at(limit_flag(exc.field or ""), None)) from None
        origins = self.origins + tuple((f"limits.{key}", _source or limit_flag(key)) for key in changes)
        return attrs.evolve(self, limits=limits, origins=origins)

    def with_require(self, *layers: str | Iterable[str]) -> Policy:
        """Require more sandbox layers (added after the existing ones,
        duplicates dropped). Unknown names are a PolicyError naming
        ``--require`` and listing the valid layers."""
        flat: list[object] = []
        for layer in layers:
            flat.extend(layer) if isinstance(layer, (list, tuple)) else flat.append(layer)
        with _naming("--require", lambda e: None):
            return attrs.evolve(self, sandbox=SandboxPolicy(self.sandbox.require + tuple(flat)))

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

    def to_toml(self, template: str | None = None) -> str:
        """The effective policy as TOML (for ``wasijail policy show``).
        ``from_toml_text(p.to_toml(), ...)`` gives back ``p`` (apart from
        ``source``). Each value is marked with where it came from: the
        policy file, a flag, or the built-in default.

        ``template``: the text of the policy file the policy was loaded from
        (:func:`default_policy_text` for the built-in default); the result is
        then that file with its comments and layout kept, each value set to
        the effective one and marked, and what the file lacks added."""
        import tomlkit  # here, not at the top: only `policy show` writes TOML (7 ms of every run)

        src = self.source
        origins = dict(self.origins)
        default = Policy.default()

        def mark(key: str, built_in: bool = False) -> str | None:
            origin = origins.get(key)
            if origin is not None:
                return "from " + _comment_text(origin)
            return "built-in default" if built_in else None

        doc = tomlkit.document()
        doc.add(tomlkit.comment("wasijail policy (effective)"))
        doc.add(tomlkit.comment("from: " + (_comment_text(src) if src is not None else "built-in")))
        doc.add(tomlkit.nl())
        fs = tomlkit.table()
        fs.add("symlinks", _marked(tomlkit.item(self.symlinks),
                                   mark("fs.symlinks", self.symlinks == default.symlinks)))
        if self.preopens:
            shelf = tomlkit.aot()
            for i, p in enumerate(self.preopens, 1):
                where = f"[[fs.preopen]] #{i}"
                table = _marked(tomlkit.table(), mark(f"fs.preopen#{i}"))
                table.add("host", _toml_text(str(p.host), source=src, key=f"{where} host"))
                table.add("guest", _toml_text(p.guest, source=src, key=f"{where} guest"))
                table.add("mode", p.mode)
                shelf.append(table)
            fs.add("preopen", shelf)
        doc.add("fs", fs)
        if self.env or self.inherit_env:
            env = tomlkit.table()
            names = [_toml_text(n, source=src, key="[env] inherit") for n in self.inherit_env]
            env.add("inherit", _marked(tomlkit.item(names), mark("env.inherit")))
            if self.env:
                vars_ = _marked(tomlkit.table(), mark("env.vars"))
                for name, value in self.env:
                    vars_.add(_toml_text(name, source=src, key="[env] vars"),
                              _toml_text(value, source=src, key=f"[env] vars.{name}"))
                env.add("vars", vars_)
            doc.add("env", env)
        limits = tomlkit.table()
        for name, spec in LIMITS.items():
            value = getattr(self.limits, name)
            text = "unlimited" if value is None else spec.format(value)
            written = int(text) if text.isdigit() else text  # whole numbers as TOML integers
            limits.add(name, _marked(tomlkit.item(written),
                                     mark(f"limits.{name}", value == getattr(default.limits, name))))
        doc.add("limits", limits)
        sandbox = tomlkit.table()
        sandbox.add("require", _marked(tomlkit.item(list(self.sandbox.require)),
                                       mark("sandbox.require", self.sandbox.require == default.sandbox.require)))
        doc.add("sandbox", sandbox)
        if template is None:
            return tomlkit.dumps(doc)
        return _onto_template(doc, template)


_SHOWN_HEADER = "# wasijail policy (effective)\n"


def _onto_template(effective: Any, template: str) -> str:
    """The effective document's values written into ``template`` (a policy file's text, already
    loaded): its comments and layout stay; keys are replaced where they stand (the comments above them
    stay), preopens and [env] as a whole; tables it lacks are added at the end."""
    import tomlkit

    if template.startswith(_SHOWN_HEADER):  # a shown policy shown again: one header, not two
        template = template.split("\n", 3)[3] if template.count("\n") >= 3 else ""
    doc = tomlkit.parse(template)
    for name in _TOP_TABLES:
        fresh, table = effective.get(name), doc.get(name)
        if fresh is None:
            doc.pop(name, None)
        elif table is None:
            doc.add(name, fresh)
        elif name == "env" or not isinstance(table, tomlkit.items.Table):
            doc[name] = fresh  # in its place
        else:
            if "preopen" not in fresh:
                table.pop("preopen", None)
            for key, item in fresh.items():
                table[key] = item
    header = tomlkit.dumps(effective).split("\n", 2)
    # One blank line before each table, none doubled, as a table added or replaced at the end may leave them
    # (every value is written anew, so no multi-line string is left for a line to be part of).
    lines: list[str] = []
    for line in f"{header[0]}\n{header[1]}\n\n{tomlkit.dumps(doc)}".split("\n"):  # not splitlines: a value may hold U+0085
        if line.startswith("[") and lines and lines[-1] != "":
            lines.append("")
        if line or (lines and lines[-1] != ""):
            lines.append(line)
    return "\n".join(lines).rstrip("\n") + "\n"


def default_policy_text() -> str:
    """The text of the built-in default policy (``default_policy.toml``, with its comments).

    Read beside this module (package data, always installed as a file) rather than through
    importlib.resources, whose import (tempfile, random, ...) costs ~5-8 ms of every run's start.
    """
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), DEFAULT_POLICY_FILE),
              encoding="utf-8") as file:
        return file.read()


@functools.cache
def _builtin_default() -> Policy:
    text = default_policy_text()
    # The default itself inherits from nothing: a key it leaves out is not limited.
    policy = Policy.from_toml_text(text, source=DEFAULT_POLICY_FILE, base_dir=Path.cwd(), defaults=Policy())
    return attrs.evolve(policy, source=None, origins=())


#: The built-in default policy, shipped in the package (policies/default.toml links to it).
DEFAULT_POLICY_FILE = "default_policy.toml"
