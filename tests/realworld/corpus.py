"""The real-world workloads (workloads.toml) and how to set one up and check it.

Shared by tests/test_realworld.py and scripts/bench, so both run the same
programs with the same folders and expect the same results.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
FETCH = REPO / "scripts" / "fetch-realworld"
STATUS_OFFLINE = 3  # fetch-realworld's exit status when the package index cannot be reached


class CorpusUnavailable(Exception):
    """The network is absent, so the corpus cannot be fetched."""


@dataclass(frozen=True)
class Workload:
    name: str
    about: str
    kind: str  # "start-up", "cpu" or "fs"
    module: str  # path inside the corpus folder
    args: tuple[str, ...]
    stdout: str
    inputs: str | None = None
    dirs: tuple[tuple[str, str], ...] = ()
    files: dict[str, str] = field(default_factory=dict)
    suite: bool = False


@dataclass(frozen=True)
class Prepared:
    """One run's folders: the work folder (also the cwd) and the preopens (host, guest, read-only)."""

    work: Path
    preopens: tuple[tuple[Path, str, bool], ...]


def load_workloads() -> list[Workload]:
    data = tomllib.loads((HERE / "workloads.toml").read_text())
    return [Workload(**{**w, "args": tuple(w["args"]), "dirs": tuple(tuple(d) for d in w.get("dirs", ()))})
            for w in data["workload"]]


def fetch_corpus(programs: tuple[str, ...] = ()) -> Path:
    """The corpus folder, fetched (or verified in place) by scripts/fetch-realworld."""
    proc = subprocess.run([sys.executable, str(FETCH), *programs], capture_output=True, text=True)
    if proc.returncode == STATUS_OFFLINE:
        raise CorpusUnavailable(proc.stderr.strip())
    if proc.returncode != 0:
        raise RuntimeError(f"scripts/fetch-realworld failed: {proc.stderr.strip()}")
    return Path(proc.stdout.strip())


def program_of(workload: Workload) -> str:
    """The fetch-realworld program a workload needs (the first folder of its module)."""
    return workload.module.split("/")[0]


def prepare(workload: Workload, corpus: Path, scratch: Path) -> Prepared:
    """Fresh folders for one run under `scratch` (which must not exist yet)."""
    work = scratch / "work"
    if workload.inputs:
        shutil.copytree(HERE / "inputs" / workload.inputs, work)
    else:
        work.mkdir(parents=True)
    preopens = []
    for index, (host, guest) in enumerate(workload.dirs):
        if host == "work":
            preopens.append((work, guest, False))
        elif host == "tmp":
            tmp = scratch / f"tmp{index}"
            tmp.mkdir()
            preopens.append((tmp, guest, False))
        elif host.startswith("corpus:"):
            preopens.append((corpus / host.removeprefix("corpus:"), guest, True))
        else:
            raise ValueError(f"workload {workload.name}: unknown folder {host!r}")
    return Prepared(work, tuple(preopens))


def dir_flags(prepared: Prepared) -> list[str]:
    """The preopens as wasijail's --dir flags."""
    return [f"--dir={host}::{guest}" + ("::ro" if ro else "") for host, guest, ro in prepared.preopens]


def mismatches(workload: Workload, stdout: bytes, work: Path) -> list[str]:
    """How a run's results differ from the expected ones (empty: they agree)."""
    wrong = []
    if stdout.decode("utf-8", "replace") != workload.stdout:
        wrong.append(f"stdout {stdout[:200]!r}, expected {workload.stdout[:200]!r}")
    for name, expected in workload.files.items():
        path = work / name
        actual = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "missing"
        if actual != expected:
            wrong.append(f"{name}: SHA-256 {actual}, expected {expected}")
    return wrong
