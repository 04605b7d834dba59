"""A guest trying to carry what a read-only grant shows into a writable one.

Through the real supervisor, fork server and locked-down child: tests/programs/
pathops.wasm calls link, linkat (AT_SYMLINK_FOLLOW too), rename and renameat
through wasi-libc, and the host tree is checked afterwards. The broker-level
versions (a child claiming rights it lacks) are in tests/test_broker.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from wasijail.child.wasi import WasiState
from wasijail.policy import Policy
from wasijail.supervisor import open_supervisor
from wasijail.wasi import Rights

from helpers import program


@pytest.fixture
def grants(tmp_path):
    """/r read-only (host ro/), /w writable nested inside it (ro/rw/), /x writable elsewhere."""
    ro = tmp_path / "ro"
    (ro / "rw").mkdir(parents=True)
    (ro / "sub").mkdir()
    (ro / "file.txt").write_text("original\n")
    (ro / "sub" / "inner.txt").write_text("inner\n")
    (ro / "flink").symlink_to("file.txt")
    (ro / "rw" / "own.txt").write_text("own\n")
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "mine.txt").write_text("mine\n")
    (tmp_path / "x" / "minedir").mkdir()
    return tmp_path


def _policy(grants: Path) -> Policy:
    return (Policy().with_preopen(grants / "ro", "/r", mode="ro")
            .with_preopen(grants / "ro" / "rw", "/w").with_preopen(grants / "x", "/x"))


async def pathops(policy: Policy, *ops: str) -> list[str]:
    async with open_supervisor() as supervisor:
        result = await supervisor.run(program("pathops.wasm"), list(ops), policy=policy,
                                      capture_stdout=True, capture_stderr=True)
    assert result.returncode == 0, result.stderr
    return result.stdout.decode().splitlines()


def _tree(root: Path) -> dict:
    return {str(p.relative_to(root)): (os.lstat(p).st_ino, os.lstat(p).st_nlink,
                                       p.read_bytes() if p.is_file() and not p.is_symlink() else None)
            for p in sorted(root.rglob("*"))}


LINKS = [
    ("link", "/r/file.txt", "/x/stolen"),
    ("link", "/r/file.txt", "/w/stolen"),  # into the writable grant nested in the read-only one
    ("linkf", "/r/file.txt", "/x/stolen"),  # AT_SYMLINK_FOLLOW
    ("linkf", "/r/flink", "/x/stolen"),  # ... through a symlink of the read-only grant
    ("link", "/r/flink", "/x/stolen"),  # the symlink itself
    ("linkat", "/r/sub", "inner.txt", "/x/stolen"),  # a directory opened beneath /r
    ("linkat", "/r/sub", "../file.txt", "/w/stolen"),
    ("linkat", "/r/rw", "own.txt", "/x/stolen"),  # /w's own file, reached through /r
    ("link", "/r/sub", "/x/stolen"),  # a directory
]
RENAMES = [
    ("rename", "/r/file.txt", "/x/moved"),  # file, read-only -> writable
    ("rename", "/r/sub", "/x/moved"),  # directory
    ("rename", "/r/rw/own.txt", "/w/moved"),
    ("renameat", "/r/sub", "inner.txt", "/x/moved"),
    ("renameat", "/r/rw", "own.txt", "/w/moved"),
    ("rename", "/x/mine.txt", "/r/planted"),  # file, writable -> read-only
    ("rename", "/x/minedir", "/r/planted"),  # directory
    ("renameto", "/x/mine.txt", "/r/sub", "planted"),  # into a directory opened beneath /r
    ("renameto", "/w/own.txt", "/r/rw", "planted"),
]


async def test_nothing_of_a_read_only_grant_gets_a_writable_name(grants):
    """Every link out of /r and every rename across the boundary is refused,
    and the read-only file cannot be reached for writing afterwards."""
    before = _tree(grants)
    ops = [word for op in LINKS + RENAMES for word in op]
    lines = await pathops(_policy(grants), *ops, "write", "/x/stolen", "changed", "write", "/w/stolen",
                          "changed")
    assert len(lines) == len(LINKS) + len(RENAMES) + 2
    for line in lines[:-2]:
        assert line.endswith(": ERR Capabilities insufficient"), lines
    assert lines[-2:] == ["write /x/stolen changed: ERR No such file or directory",
                          "write /w/stolen changed: ERR No such file or directory"]
    assert _tree(grants) == before
    assert os.stat(grants / "ro" / "file.txt").st_nlink == 1


async def test_a_writable_grant_nested_in_a_read_only_one_keeps_its_own_rights(grants):
    """/w lies inside /r's host folder: /w's own files are writable through /w,
    and linking or moving them within /w is allowed (it gives nothing /w did
    not grant), while the same files reached through /r stay read-only."""
    lines = await pathops(_policy(grants),
                          "link", "/w/own.txt", "/w/again.txt", "rename", "/w/again.txt", "/w/renamed.txt",
                          "write", "/w/renamed.txt", "through w", "read", "/r/rw/own.txt",
                          "write", "/r/rw/own.txt", "through r")
    assert lines == [
        "link /w/own.txt /w/again.txt: ok",
        "rename /w/again.txt /w/renamed.txt: ok",
        "write /w/renamed.txt through w: ok",
        "read /r/rw/own.txt: ok through w",
        "write /r/rw/own.txt through r: ERR Capabilities insufficient",
    ]


async def test_a_read_only_grant_inside_a_writable_one_protects_nothing_of_it(grants):
    """Each grant is its own capability, as in wasmtime: a folder granted
    read-only that is also inside a writable grant is writable through that one."""
    policy = (Policy().with_preopen(grants / "ro", "/all")
              .with_preopen(grants / "ro" / "sub", "/sub", mode="ro"))
    lines = await pathops(policy, "write", "/sub/inner.txt", "no", "link", "/sub/inner.txt", "/all/l",
                          "write", "/all/sub/inner.txt", "yes", "read", "/sub/inner.txt")
    assert lines == [
        "write /sub/inner.txt no: ERR Capabilities insufficient",
        "link /sub/inner.txt /all/l: ERR Capabilities insufficient",
        "write /all/sub/inner.txt yes: ok",
        "read /sub/inner.txt: ok yes",
    ]


def test_a_read_only_preopen_reports_no_right_to_link_or_move_from_it():
    """fd_fdstat_get tells the truth: a read-only preopen, and every directory
    opened beneath it, lacks the rights to name its inodes elsewhere."""
    state = WasiState(args=(), env=(), broker=None, preopens=[(b"/r", True), (b"/w", False)], open_files=16)
    ro, rw = state.fds.get(3), state.fds.get(4)
    for right in (Rights.PATH_LINK_SOURCE, Rights.PATH_LINK_TARGET, Rights.PATH_RENAME_SOURCE,
                  Rights.PATH_RENAME_TARGET):
        assert not ro.rights_base & right and not ro.rights_inheriting & right
        assert rw.rights_base & right
