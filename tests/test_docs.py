"""The API documentation: every public name has a docstring, and docs/ builds without a warning."""

from __future__ import annotations

import inspect
import subprocess
import sys

import wasijail

from helpers import REPO


def _public_members(obj: object) -> list[tuple[str, object]]:
    members = []
    for name, value in vars(obj).items():
        if name.startswith("_") or not (inspect.isfunction(value) or isinstance(value, (property, classmethod,
                                                                                          staticmethod))):
            continue
        members.append((name, value))
    return members


def test_every_public_name_has_a_docstring():
    missing = []
    for name in wasijail.__all__:
        value = getattr(wasijail, name)
        if isinstance(value, int):  # PIPE
            continue
        if not (getattr(value, "__doc__", None) or "").strip():
            missing.append(name)
        if inspect.isclass(value):
            for member, attr in _public_members(value):
                func = attr.__func__ if isinstance(attr, (classmethod, staticmethod)) else attr
                doc = func.fget.__doc__ if isinstance(func, property) else getattr(func, "__doc__", None)
                if not (doc or "").strip():
                    missing.append(f"{name}.{member}")
    assert missing == []


def test_docs_build_without_warnings(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "WARNING" not in proc.stderr, proc.stderr
    page = (tmp_path / "site" / "api" / "index.html").read_text()
    for name in ("check_returncode", "open_supervisor", "AsyncioSupervisor", "RunHandle"):
        assert name in page or name in (tmp_path / "site" / "results" / "index.html").read_text()
