"""Shared helpers for the test suite: where the programs are, how to run the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PROGRAMS = Path(__file__).parent / "programs"
REPO = Path(__file__).parent.parent


def program(name: str) -> Path:
    path = PROGRAMS / name
    assert path.exists(), f"{path} missing: run scripts/build-test-programs"
    return path


def wasijail(*args: str | os.PathLike, cwd: os.PathLike | None = None, input: bytes | None = None,
             env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run the `wasijail` CLI as a user would, capturing its output as text."""
    return subprocess.run(
        [sys.executable, "-m", "wasijail", *map(str, args)],
        cwd=cwd, input=input, capture_output=True, env=env, timeout=timeout,
    )


def text(out: bytes) -> str:
    return out.decode("utf-8", "replace")


def assert_one_line_error(proc: subprocess.CompletedProcess, status: int = 1) -> str:
    """A user mistake: exactly one line on stderr, no traceback, the given status."""
    err = text(proc.stderr)
    assert proc.returncode == status, (proc.returncode, err)
    assert "Traceback" not in err, err
    assert err.endswith("\n") and err.count("\n") == 1, repr(err)
    return err.strip()


def summary_rows(err: str) -> dict[str, str]:
    """The rows of `wasijail batch`'s closing summary ("  ran  12" -> {"ran": "12"}), from its stderr."""
    block = err[err.rindex("\njobs ") + 1:] if "\njobs " in err else err[err.index("jobs "):]
    rows = {}
    for line in block.splitlines():
        key, _, value = line.strip().partition("  ")
        rows[key] = value.strip()
    return rows
