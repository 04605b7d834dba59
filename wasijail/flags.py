"""The command line's grammar for policy values: ``--dir``, ``--mapdir``, ``--env`` and ``-W``.

Each function splits a flag's text into the values the policy model takes;
the model's constructors validate them (once), and errors name the flag.
Batch manifests write preopens in ``--dir``'s grammar, so wasijail.batch
uses :func:`parse_dir_flag` too.
"""

from __future__ import annotations

import os
from pathlib import Path

from .policy import LIMITS, Preopen, _error, _naming, limit_flag

__all__ = ["parse_dir_flag", "parse_mapdir_flag", "parse_env_flag", "W_LIMITS", "parse_w_limit"]


def _mode(parts: list[str], *, flag: str, text: str) -> str:
    if len(parts) < 3:
        return "rw"
    if parts[2] not in ("ro", "rw"):
        raise _error(flag, None, f"unknown mode {parts[2]!r} in {text!r}; expected ro or rw")
    return parts[2]


def _preopen(flag: str, base_dir: str | os.PathLike[str] | None, host: str, guest: str, mode: str) -> Preopen:
    with _naming(flag, lambda e: None):
        return Preopen.under(Path.cwd() if base_dir is None else base_dir, host, guest, mode)


def parse_dir_flag(text: str, *, base_dir: str | os.PathLike[str] | None = None, flag: str = "--dir") -> Preopen:
    """wasmtime's ``--dir``: ``HOST``, ``HOST::GUEST``, ``HOST::GUEST::ro``
    or ``HOST::GUEST::rw``. The guest name defaults to HOST as written (so
    ``--dir=.`` is named ``.``); a relative HOST resolves against ``base_dir``
    (default: the current directory; symlinks not resolved). Errors name ``flag``."""
    parts = text.split("::")
    if len(parts) > 3:
        raise _error(flag, None, f"expected HOST[::GUEST[::ro|rw]], got {text!r}")
    mode = _mode(parts, flag=flag, text=text)
    host = parts[0]
    guest = parts[1] if len(parts) >= 2 else host
    if host == "":
        raise _error(flag, None, f"empty host directory in {text!r}")
    if guest == "":
        raise _error(flag, None, f"empty guest name in {text!r}")
    return _preopen(flag, base_dir, host, guest, mode)


def parse_mapdir_flag(text: str) -> Preopen:
    """The WASI tutorial's legacy ``--mapdir GUEST::HOST`` (guest first!),
    optionally with ``::ro`` / ``::rw``. HOST is made absolute against the
    current directory. Errors name ``--mapdir``."""
    flag = "--mapdir"
    parts = text.split("::")
    if len(parts) not in (2, 3):
        raise _error(flag, None, f"expected GUEST::HOST, got {text!r}")
    mode = _mode(parts, flag=flag, text=text)
    guest, host = parts[0], parts[1]
    if guest == "":
        raise _error(flag, None, f"empty guest name in {text!r}")
    if host == "":
        raise _error(flag, None, f"empty host directory in {text!r}")
    return _preopen(flag, None, host, guest, mode)


def parse_env_flag(text: str) -> tuple[str, str | None]:
    """``--env NAME=VALUE`` -> ``(NAME, VALUE)``; ``--env NAME`` ->
    ``(NAME, None)`` (copy from the host), for :meth:`Policy.with_env`, which
    checks them. The name is split at the first '='."""
    name, sep, value = text.partition("=")
    if name == "":
        raise _error("--env", None, f"empty variable name in {text!r}")
    return name, (value if sep else None)


#: ``-W`` option names of limits: wasmtime's own, then every limit's name with dashes.
W_LIMITS: dict[str, str] = {
    **{spec.wasmtime: name for name, spec in LIMITS.items() if spec.wasmtime},
    **{limit_flag(name)[2:]: name for name in LIMITS},
}


def parse_w_limit(option: str, value: str | None) -> str:
    """The limit a ``-W OPTION=VALUE`` item sets (``max-memory-size`` -> ``memory``); its value
    goes to :meth:`Policy.with_limits`. Errors name ``-W`` and the option."""
    if option == "":
        raise _error("-W", None, "expected OPTION=VALUE, got ''")
    if option not in W_LIMITS:
        raise _error("-W", None, f"unknown option {option!r}; supported: {', '.join(sorted(W_LIMITS))}")
    if value is None:
        raise _error("-W", option, f"expected {option}=VALUE")
    return W_LIMITS[option]

