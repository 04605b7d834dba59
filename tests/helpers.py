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


def alive(pid: int) -> bool:
    """Whether the process runs (a zombie, killed but not reaped, does not count)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


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


def broker_tree(tmp_path: Path) -> Path:
    """A preopen for broker tests: root/ with sub/ and file.txt, and outside.txt beside it."""
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "file.txt").write_text("inside\n")
    (tmp_path / "outside.txt").write_text("secret\n")
    return root


def links_leading_out(root: os.PathLike | str) -> list[str]:
    """Every symlink under `root` that a host tool following it would walk
    out of `root` through (at any step, not only at its end), each as
    "path -> target". Followed as the kernel does, component by component on
    the physical path (os.path.realpath is not faithful for loops); a loop
    leads nowhere."""
    top = os.path.realpath(root)
    out = []
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            if os.path.islink(path) and not _stays_beneath(top, path):
                out.append(f"{os.path.relpath(path, top)} -> {os.readlink(path)}")
    return out


def _stays_beneath(top: str, path: str) -> bool:
    here: list[str] = [c for c in os.path.dirname(path).split("/") if c]
    todo = [os.path.basename(path)]
    links = 0
    while todo:
        name = todo.pop(0)
        if name in ("", "."):
            continue
        if name == "..":
            here = here[:-1]
        else:
            candidate = "/" + "/".join(here + [name])
            if os.path.islink(candidate):
                links += 1
                if links > 40:
                    return True  # ELOOP: the walk ends here
                target = os.readlink(candidate)
                if target.startswith("/"):
                    here = []
                todo = target.split("/") + todo
                continue
            here = here + [name]
        now = "/" + "/".join(here)
        if now != top and not now.startswith(top + "/"):
            return False
    return True


def userns_allowed() -> bool:
    """Whether this host lets this process create a user namespace, from the kernel's own knobs."""

    def read(path: str) -> str | None:
        try:
            return Path(path).read_text().strip()
        except OSError:
            return None

    max_ns = read("/proc/sys/user/max_user_namespaces")
    clone_knob = read("/proc/sys/kernel/unprivileged_userns_clone")
    apparmor = read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns")
    return (max_ns is None or int(max_ns) > 0) and (
        os.getuid() == 0 or (clone_knob in (None, "1") and apparmor in (None, "0")))
