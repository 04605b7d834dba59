"""The compromised-child harness (test-only; not part of the package).

`run_locked(body, ...)` starts a fresh ``python -c`` (never a fork of the
test process, which may have threads), which imports
`wasijail.sandbox.lockdown`, runs `setup` (imports, preparation: the last
moment files may be opened), calls `lockdown()` with a report pipe, a
violation pipe and any donated fds kept, then runs `body` as if it were
code a module had smuggled out of wasmtime.  Both snippets see:

    report(key, value)  -- one JSON line to the test on the report pipe
    attempt(fn, *args)  -- ["ok", repr(result)] or [exception type, errno
                           name / message]
    DONATED             -- {name: fd} of fds the test donated
    REPORT_FD, VIOLATION_FD -- the harness's own pipes (kept)
    EXTRA_KEEP          -- a list setup may append fds to keep to

and the harness returns a `ChildResult`: exit status, reported values,
violations named through the violation pipe, stdout/stderr.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

REPO = Path(__file__).resolve().parents[2]

_BOOTSTRAP = r'''
import errno, json, os, sys
REPORT_FD, VIOLATION_FD = int(sys.argv[1]), int(sys.argv[2])
with open(sys.argv[3]) as f:
    SPEC = json.load(f)

def report(key, value=None):
    os.write(REPORT_FD, (key + " " + json.dumps(value) + "\n").encode())

def attempt(fn, *args, **kwargs):
    try:
        return ["ok", repr(fn(*args, **kwargs))]
    except OSError as exc:
        return [type(exc).__name__, errno.errorcode.get(exc.errno, str(exc.errno))]
    except BaseException as exc:
        return [type(exc).__name__, str(exc)]

from wasijail.sandbox import lockdown, seccomp
DONATED = SPEC["donated"]
EXTRA_KEEP = []
g = {"report": report, "attempt": attempt, "seccomp": seccomp, "DONATED": DONATED,
     "EXTRA_KEEP": EXTRA_KEEP, "REPORT_FD": REPORT_FD, "VIOLATION_FD": VIOLATION_FD,
     "__name__": "__escape__", "errno": errno, "os": os}
exec(compile(SPEC["setup"], "<setup>", "exec"), g)
body = compile(SPEC["body"], "<body>", "exec")
cfg = dict(SPEC["config"])
keep = [0, 1, 2, REPORT_FD] + list(DONATED.values()) + EXTRA_KEEP
violation_fd = VIOLATION_FD if cfg.pop("name_violations") else None
try:
    rep = lockdown.lockdown(lockdown.LockdownConfig(
        keep_fds=tuple(keep), violation_fd=violation_fd, **cfg))
except lockdown.LockdownError as exc:
    report("lockdown_error", str(exc))
    sys.exit(3)
report("lockdown", rep.to_dict())
exec(body, g)
report("done")
'''


@dataclass
class ChildResult:
    returncode: int
    values: dict[str, list[Any]] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    violation_bytes: bytes = b""
    stdout: str = ""
    stderr: str = ""

    @property
    def signal(self) -> int | None:
        return -self.returncode if self.returncode < 0 else None

    @property
    def killed_by_sigsys(self) -> bool:
        return self.signal == signal.SIGSYS

    @property
    def lockdown(self) -> dict | None:
        return self.value("lockdown")

    def value(self, key: str) -> Any:
        """The last value reported under `key` (None if never reported)."""
        got = self.values.get(key)
        return got[-1] if got else None

    @property
    def done(self) -> bool:
        return "done" in self.values

    def explain(self) -> str:
        return (f"returncode={self.returncode} values={self.values} "
                f"violations={self.violations}\nstdout:\n{self.stdout}\n"
                f"stderr:\n{self.stderr}")


def run_locked(
    body: str,
    *,
    setup: str = "",
    donate: Mapping[str, int] | None = None,
    name_violations: bool = True,
    timeout: float = 120,
    env: Mapping[str, str] | None = None,
    file_size: int | None = None,
    open_files: int | None = None,
    cpu_time: float | None = None,
    threads: int | None = None,
    namespaces: bool = True,
    landlock: bool = True,
    seccomp: bool = True,
    required: tuple[str, ...] = (),
    artifact: str | None = None,
) -> ChildResult:
    """Run `body` in a fresh, fully locked-down Python child."""
    from wasijail.sandbox.seccomp import parse_violations, syscall_name

    donate = dict(donate or {})
    artifact_fd = -1
    if artifact is not None:
        artifact_fd = os.open(artifact, os.O_RDONLY)
        donate["artifact"] = artifact_fd
    spec = {
        "setup": textwrap.dedent(setup),
        "body": textwrap.dedent(body),
        "donated": donate,
        "config": {
            "file_size": file_size, "open_files": open_files,
            "cpu_time": cpu_time, "threads": threads, "namespaces": namespaces,
            "landlock": landlock, "seccomp": seccomp,
            "required": list(required), "name_violations": name_violations,
            "artifact_fd": artifact_fd if artifact is not None else None,
        },
    }
    report_r, report_w = os.pipe()
    violation_r, violation_w = os.pipe()
    child_env = {k: v for k, v in os.environ.items()
                 if k not in ("RAYON_NUM_THREADS", "TZ", "PYTHONPATH")}
    child_env["PYTHONPATH"] = str(REPO)
    child_env.update(env or {})
    chunks: dict[int, list[bytes]] = {report_r: [], violation_r: []}

    def drain(fd: int) -> None:
        while True:
            data = os.read(fd, 65536)
            if not data:
                break
            chunks[fd].append(data)

    spec_file = tempfile.NamedTemporaryFile("w", suffix=".json", prefix="escape-")
    json.dump(spec, spec_file)
    spec_file.flush()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-c", _BOOTSTRAP, str(report_w), str(violation_w),
             spec_file.name],
            cwd=str(REPO), env=child_env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            pass_fds=(report_w, violation_w, *donate.values()),
        )
        os.close(report_w)
        os.close(violation_w)
        report_w = violation_w = -1
        readers = [threading.Thread(target=drain, args=(fd,), daemon=True)
                   for fd in (report_r, violation_r)]
        for t in readers:
            t.start()
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
        for t in readers:
            t.join(timeout=10)
    finally:
        spec_file.close()
        for fd in (report_r, violation_r, report_w, violation_w, artifact_fd):
            if fd >= 0:
                os.close(fd)

    values: dict[str, list[Any]] = {}
    for line in b"".join(chunks[report_r]).decode(errors="replace").splitlines():
        key, _, payload = line.partition(" ")
        values.setdefault(key, []).append(json.loads(payload) if payload else None)
    raw_violations = b"".join(chunks[violation_r])
    return ChildResult(
        returncode=proc.returncode,
        values=values,
        violations=[syscall_name(nr) for nr in parse_violations(raw_violations)],
        violation_bytes=raw_violations,
        stdout=stdout.decode(errors="replace"),
        stderr=stderr.decode(errors="replace"),
    )
