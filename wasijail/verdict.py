"""Verdicts: does a job's run look like a correct one?

A manifest line may carry

* ``"expect"``: what a correct run produces, compared exactly (or, with
  ``"ignore_trailing_whitespace": true``, ignoring spaces at line ends and
  blank lines at the end)::

      "expect": {"exit": 0, "stdout": "42\\n" | {"file": "expected/s1.txt"},
                 "stderr": ..., "files": {"out/result.txt": {"file": "expected/result.txt"}}}

  ``exit`` defaults to 0 (``null``: any status); the run must have exited
  (not trapped, timed out...) with it. ``files`` keys are files the job
  writes, host paths inside one of its preopens.
* ``"check": ["checker", "args"...]``: a host command run after the job,
  whose exit status decides (0: pass) and whose last stdout line, if a
  number, is the score.
* ``"outputs": ["out/result.txt", ...]``: more files of the job to hand to
  the checker.

Files the job wrote are read beneath their preopen's directory with the
broker's resolver (a link the job planted cannot lead out), regular files
only. The checker runs in a fresh directory of its own, outside every
writable preopen, holding read-only copies: ``stdout``, ``stderr`` and
``files/GUEST-PATH`` for each output file (the path the job wrote it
under); its stdin is the job's stdout, its environment the host's plus
WASIJAIL_ID, WASIJAIL_OUTCOME, WASIJAIL_STATUS, WASIJAIL_STDOUT,
WASIJAIL_STDERR, WASIJAIL_FILES and WASIJAIL_MANIFEST_DIR (where the
grader's own files are). A checker named by a path (``./grade.py``) is
found relative to the manifest's folder. It is killed, with every process it
started, at its timeout.
"""

from __future__ import annotations

import difflib
import hashlib
import math
import os
import posixpath
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .nofollow import open_dir, write_beneath
from .policy import Preopen
from .results import OutcomeKind, RunResult, WasijailError

PASS, FAIL, ERROR = "pass", "fail", "error"
VERDICTS = (PASS, FAIL, ERROR)
# An output or expected file larger than this is not compared (nor copied for the checker).
FILE_LIMIT = 16 * 1024 * 1024
# A diff in a result keeps this many lines and characters.
DIFF_LINES, DIFF_CHARS = 40, 4000
DEFAULT_CHECK_TIMEOUT = 60.0
_EXPECT_KEYS = {"exit", "stdout", "stderr", "files", "ignore_trailing_whitespace"}


class ExpectationError(WasijailError):
    """A manifest's expect/check/outputs entry is malformed (the caller adds where)."""


@dataclass(frozen=True)
class Expected:
    """Expected bytes, given inline or as a file of the grader's."""

    text: str | None = None
    file: Path | None = None

    def load(self) -> bytes:
        if self.file is None:
            return (self.text or "").encode()
        try:  # the grader's own file: links are followed, as the grader laid them out
            with open(self.file, "rb") as f:
                return f.read(FILE_LIMIT + 1)
        except OSError as exc:
            raise WasijailError(f"expected file {self.file}: {exc.strerror or exc}") from None

    def fingerprint(self) -> str:
        try:
            return hashlib.sha256(self.load()).hexdigest()
        except WasijailError as exc:
            return str(exc)


@dataclass(frozen=True)
class OutputFile:
    """A file the job writes: `name` as the manifest wrote it, found beneath preopen `root`."""

    name: str
    root: Path
    rel: str  # beneath root
    guest_path: str  # where the job wrote it, relative: the name of its copy for the checker

    def read(self) -> bytes:
        """The file's bytes, resolved beneath its preopen (no link leads out), regular files only."""
        from .broker.resolve import Resolver

        root = open_dir(self.root)
        try:
            fd = Resolver().open(root, self.rel.encode(), os.O_RDONLY | os.O_NONBLOCK)
        finally:
            os.close(root)
        with os.fdopen(fd, "rb") as f:
            if not _is_regular(f.fileno()):
                raise WasijailError(f"{self.name}: not a regular file")
            data = f.read(FILE_LIMIT + 1)
        if len(data) > FILE_LIMIT:
            raise WasijailError(f"{self.name}: larger than {FILE_LIMIT} bytes")
        return data


def _is_regular(fd: int) -> bool:
    return stat.S_ISREG(os.fstat(fd).st_mode)


@dataclass(frozen=True)
class Expect:
    exit: int | None = 0
    stdout: Expected | None = None
    stderr: Expected | None = None
    files: tuple[tuple[OutputFile, Expected], ...] = ()
    ignore_trailing_whitespace: bool = False

    def fingerprint(self) -> dict:
        def fp(e: Expected | None):
            return None if e is None else e.fingerprint()

        return {"exit": self.exit, "stdout": fp(self.stdout), "stderr": fp(self.stderr),
                "files": [[f.name, fp(e)] for f, e in self.files], "ws": self.ignore_trailing_whitespace}


@dataclass(frozen=True)
class Check:
    argv: tuple[str, ...]  # the program made absolute when named by a path
    base: Path  # the manifest's folder (WASIJAIL_MANIFEST_DIR)


def _expected(value: Any, key: str, base: Path) -> Expected:
    if isinstance(value, str):
        return Expected(text=value)
    if isinstance(value, dict) and set(value) == {"file"} and isinstance(value["file"], str) and value["file"]:
        return Expected(file=base / value["file"])
    raise ExpectationError(f"{key}: expected a string or {{\"file\": PATH}}")


def output_file(name: Any, key: str, base: Path, preopens: tuple[Preopen, ...]) -> OutputFile:
    """`name` (a host path, relative to the manifest's folder) as a file beneath one of `preopens`."""
    if not isinstance(name, str) or not name:
        raise ExpectationError(f"{key}: expected a file path")
    host = os.path.abspath(os.path.join(base, name))
    for index, pre in enumerate(preopens):
        root = os.path.abspath(pre.host)
        if host.startswith(root.rstrip("/") + "/"):
            rel = host[len(root.rstrip("/")) + 1:]
            guest = posixpath.normpath(posixpath.join(pre.guest, rel)).lstrip("/")
            if guest.startswith("..") or guest in ("", "."):
                guest = f"preopen{index}/{rel}"
            return OutputFile(name, Path(root), rel, guest)
    raise ExpectationError(f"{key}: {name} is not inside any of the job's preopens, so the job cannot write it")


def parse_expect(value: Any, base: Path, preopens: tuple[Preopen, ...]) -> Expect:
    if not isinstance(value, dict):
        raise ExpectationError("expect: expected an object")
    unknown = set(value) - _EXPECT_KEYS
    if unknown:
        raise ExpectationError(f"expect: unknown key {sorted(unknown)[0]!r} (known: {', '.join(sorted(_EXPECT_KEYS))})")
    status = value.get("exit", 0)
    if status is not None and (not isinstance(status, int) or isinstance(status, bool) or not 0 <= status < 256):
        raise ExpectationError("expect.exit: expected an exit status (0-255) or null")
    ws = value.get("ignore_trailing_whitespace", False)
    if not isinstance(ws, bool):
        raise ExpectationError("expect.ignore_trailing_whitespace: expected true or false")
    files = value.get("files", {})
    if not isinstance(files, dict):
        raise ExpectationError("expect.files: expected an object of file: expected content")
    return Expect(
        exit=status,
        stdout=_expected(value["stdout"], "expect.stdout", base) if "stdout" in value else None,
        stderr=_expected(value["stderr"], "expect.stderr", base) if "stderr" in value else None,
        files=tuple((output_file(name, f"expect.files[{name!r}]", base, preopens),
                     _expected(want, f"expect.files[{name!r}]", base)) for name, want in files.items()),
        ignore_trailing_whitespace=ws)


def parse_check(value: Any, base: Path) -> Check:
    """The checker's command; a program named with a slash is relative to the manifest's folder."""
    if not isinstance(value, list) or not value or not all(isinstance(a, str) and a for a in value):
        raise ExpectationError("check: expected a command, a list of non-empty strings")
    program = value[0]
    if "/" in program:  # the checker runs in a folder of its own: name the program absolutely
        program = os.path.abspath(os.path.join(base, program))
    return Check((program, *value[1:]), Path(os.path.abspath(base)))


def parse_outputs(value: Any, base: Path, preopens: tuple[Preopen, ...]) -> tuple[OutputFile, ...]:
    if not isinstance(value, list):
        raise ExpectationError("outputs: expected a list of file paths")
    return tuple(output_file(name, f"outputs[{i}]", base, preopens) for i, name in enumerate(value))


# -- judging -------------------------------------------------------------------------------------------


@dataclass
class Verdict:
    verdict: str
    why: list[str]
    score: float | None = None
    diffs: dict[str, str] | None = None
    check: dict | None = None

    def fields(self) -> dict:
        """The verdict's fields in a results record."""
        out: dict[str, Any] = {"verdict": self.verdict}
        if self.score is not None:
            out["score"] = self.score
        if self.why:
            out["why"] = "; ".join(self.why)
        if self.diffs:
            out["diff"] = self.diffs
        if self.check is not None:
            out["check"] = self.check
        return out


def _normalize(data: bytes, ignore_ws: bool) -> bytes:
    if not ignore_ws:
        return data
    lines = [line.rstrip() for line in data.split(b"\n")]
    while lines and not lines[-1]:
        lines.pop()
    return b"\n".join(lines)


def short_diff(want: bytes, got: bytes, name: str) -> str:
    """A unified diff of expected and actual, cut to DIFF_LINES lines."""
    try:
        a, b = want.decode(), got.decode()
    except UnicodeDecodeError:
        return f"binary contents differ ({len(want)} bytes expected, {len(got)} bytes written)\n"
    lines = list(difflib.unified_diff(a.splitlines(keepends=True), b.splitlines(keepends=True),
                                      f"expected {name}", f"actual {name}", n=2))
    lines = [line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines]
    text = "".join(lines[:DIFF_LINES])
    if len(lines) > DIFF_LINES:
        text += f"... ({len(lines) - DIFF_LINES} more diff lines)\n"
    if len(text) > DIFF_CHARS:
        text = text[:DIFF_CHARS] + "\n... (cut)\n"
    return text


class LiveCheckers:
    """The checker processes running now, so an interrupted batch can kill them (and theirs)."""

    def __init__(self) -> None:
        self._procs: set[subprocess.Popen] = set()
        self._lock = threading.Lock()
        self.closed = False

    def add(self, proc: subprocess.Popen) -> None:
        with self._lock:
            if self.closed:
                _kill_group(proc)
            self._procs.add(proc)

    def discard(self, proc: subprocess.Popen) -> None:
        with self._lock:
            self._procs.discard(proc)

    def kill_all(self) -> None:
        with self._lock:
            self.closed = True
            for proc in self._procs:
                _kill_group(proc)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # its own session: the checker and whatever it started
    except ProcessLookupError:
        pass


@dataclass(frozen=True)
class Judge:
    """How this batch judges its jobs: where checkers run and for how long."""

    scratch: Path | None  # a private folder outside every writable preopen (made when a job has a checker)
    timeout: float = DEFAULT_CHECK_TIMEOUT
    live: LiveCheckers | None = None

    def judge(self, job_id: str, expect: Expect | None, check: Check | None, outputs: tuple[OutputFile, ...],
              result: RunResult) -> Verdict | None:
        """The job's verdict, or None when the manifest asks for none."""
        if expect is None and check is None:
            return None
        verdicts: list[Verdict] = []
        if expect is not None:
            verdicts.append(compare(expect, result))
        if check is not None:
            files = outputs + tuple(f for f, _ in (expect.files if expect else ()) if f not in outputs)
            verdicts.append(self._run_checker(job_id, check, files, result))
        if len(verdicts) == 1:
            return verdicts[0]
        worst = ERROR if any(v.verdict == ERROR for v in verdicts) else (
            FAIL if any(v.verdict == FAIL for v in verdicts) else PASS)
        return Verdict(worst, verdicts[0].why + verdicts[1].why, verdicts[1].score, verdicts[0].diffs,
                       verdicts[1].check)

    def _run_checker(self, job_id: str, check: Check, files: tuple[OutputFile, ...],
                     result: RunResult) -> Verdict:
        private = Path(tempfile.mkdtemp(prefix=f"{job_id}.", dir=self.scratch))
        try:
            workdir = private / "job"  # the checker's: nothing of ours beside its inputs
            workdir.mkdir()
            self._copy_inputs(workdir, files, result)
            return self._checker_in(workdir, private / "output", job_id, check, result)
        finally:
            shutil.rmtree(private, ignore_errors=True)

    @staticmethod
    def _copy_inputs(workdir: Path, files: tuple[OutputFile, ...], result: RunResult) -> None:
        """The checker's inputs, read-only: stdout, stderr and files/GUEST-PATH for each output file."""
        fd = open_dir(workdir)
        try:
            write_beneath(fd, "stdout", result.stdout or b"", 0o444)
            write_beneath(fd, "stderr", result.stderr or b"", 0o444)
            os.close(open_dir("files", dir_fd=fd, create=True))
        finally:
            os.close(fd)
        for output in files:
            try:
                data = output.read()
            except (OSError, WasijailError):
                continue  # the job did not write it: the checker sees it missing
            folder, name = posixpath.split(output.guest_path)
            target = workdir / "files" / folder
            target.mkdir(parents=True, exist_ok=True)
            fd = open_dir(target)
            try:
                write_beneath(fd, name, data, 0o444)
            finally:
                os.close(fd)

    def _checker_in(self, workdir: Path, output: Path, job_id: str, check: Check, result: RunResult) -> Verdict:
        env = {**os.environ, "WASIJAIL_ID": job_id, "WASIJAIL_OUTCOME": result.outcome.kind.value,
               "WASIJAIL_STATUS": str(result.returncode), "WASIJAIL_STDOUT": str(workdir / "stdout"),
               "WASIJAIL_STDERR": str(workdir / "stderr"), "WASIJAIL_FILES": str(workdir / "files"),
               "WASIJAIL_MANIFEST_DIR": str(check.base)}
        argv = list(check.argv)
        with open(workdir / "stdout", "rb") as stdin, open(output, "w+b") as out:
            try:
                proc = subprocess.Popen(argv, cwd=workdir, stdin=stdin, stdout=out, stderr=subprocess.STDOUT,
                                        env=env, start_new_session=True)
            except OSError as exc:
                return Verdict(ERROR, [f"checker {argv[0]} cannot start: {exc.strerror or exc}"])
            if self.live is not None:
                self.live.add(proc)
            try:
                status = proc.wait(self.timeout)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                proc.wait()
                return Verdict(ERROR, [f"checker timed out after {self.timeout:g} s"],
                               check={"status": None, "output": _tail(out)})
            finally:
                if self.live is not None:
                    self.live.discard(proc)
            text = _tail(out)
        score = _score(text)
        record = {"status": status, "output": text}
        if status < 0:
            return Verdict(ERROR, [f"checker killed by signal {-status}"], check=record)
        if status != 0:
            return Verdict(FAIL, [f"checker exited with status {status}"], score, check=record)
        return Verdict(PASS, [], score, check=record)


def _tail(out, size: int = 2048) -> str:
    """The last lines of the checker's output (stdout and stderr together), at most `size` bytes."""
    out.flush()
    length = out.seek(0, os.SEEK_END)
    out.seek(max(0, length - size))
    data = out.read().decode("utf-8", "replace")
    if length > size:
        data = data.split("\n", 1)[-1]
    return data


def _score(output: str) -> float | None:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    if not lines:
        return None
    try:
        value = float(lines[-1])
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def compare(expect: Expect, result: RunResult) -> Verdict:
    """The run against the expectation: what differs, with short diffs; ERROR if an expected file is missing."""
    why: list[str] = []
    diffs: dict[str, str] = {}
    if expect.exit is not None:
        kind = result.outcome.kind
        if kind is not OutcomeKind.EXIT:
            why.append(f"{kind.value} instead of exit {expect.exit}")
        elif result.returncode != expect.exit:
            why.append(f"exit {result.returncode}, expected {expect.exit}")
    pairs: list[tuple[str, Expected, bytes | None]] = []
    for name in ("stdout", "stderr"):
        want = getattr(expect, name)
        if want is not None:
            pairs.append((name, want, getattr(result, name) or b""))
    for output, want in expect.files:
        try:
            got: bytes | None = output.read()
        except FileNotFoundError:
            why.append(f"{output.name}: not written")
            continue
        except (OSError, WasijailError) as exc:
            why.append(f"{output.name}: cannot be read ({getattr(exc, 'strerror', None) or exc})")
            continue
        pairs.append((output.name, want, got))
    for name, want, got in pairs:
        try:
            expected = want.load()
        except WasijailError as exc:
            return Verdict(ERROR, [str(exc)])
        if len(expected) > FILE_LIMIT:
            return Verdict(ERROR, [f"expected {name} is larger than {FILE_LIMIT} bytes"])
        ws = expect.ignore_trailing_whitespace
        a, b = _normalize(expected, ws), _normalize(got, ws)
        if a != b:
            why.append(f"{name} differs")
            diffs[name] = short_diff(a, b, name)
    return Verdict(FAIL if why else PASS, why, diffs=diffs or None)
