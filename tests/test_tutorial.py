"""Every step of the WASI tutorial, replayed with `wasijail` in place of `wasmtime`.

Each test works in its own temporary directory, as the tutorial's reader would
in a fresh folder, and checks exact output, exit status and file contents.
"""

from __future__ import annotations

import shutil

import pytest
import wasmtime

from helpers import program, text, wasijail

CONTENT = b"hello, tutorial\n" * 100


@pytest.fixture(params=["demo.wasm", "demo_rs.wasm"], ids=["c", "rust"])
def demo(request, tmp_path):
    """The copy program (C or Rust build) in a fresh folder with a test.txt beside it."""
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(program(request.param), work / request.param)
    (work / "test.txt").write_bytes(CONTENT)
    return work, request.param


def test_usage_message_without_arguments(demo):
    work, name = demo
    proc = wasijail(name, cwd=work)
    assert text(proc.stderr) == f"usage: {name} <from> <to>\n"
    assert proc.stdout == b""
    # The C program exits 1; the tutorial's Rust port returns normally.
    assert proc.returncode == (1 if name == "demo.wasm" else 0)


def test_copy_without_dir_is_refused(demo, tmp_path):
    work, name = demo
    proc = wasijail(name, "test.txt", tmp_path / "out.txt", cwd=work)
    if name == "demo.wasm":
        assert text(proc.stderr) == "error opening input test.txt: Capabilities insufficient\n"
        assert proc.returncode == 1
    else:
        assert text(proc.stderr) == (
            "error opening input test.txt: failed to find a pre-opened file descriptor"
            ' through which "test.txt" could be opened\n')
    assert not (tmp_path / "out.txt").exists()


def test_copy_with_dir(demo, tmp_path):
    work, name = demo
    dest = tmp_path / "dest"
    dest.mkdir()
    proc = wasijail("run", "--dir=.", f"--dir={dest}", name, "test.txt", dest / "somewhere.txt", cwd=work)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, b"", b"")
    assert (dest / "somewhere.txt").read_bytes() == CONTENT


def test_dir_given_as_absolute_path_does_not_match_relative_name(demo, tmp_path):
    work, name = demo
    proc = wasijail("run", f"--dir={work}", name, "test.txt", "copy.txt", cwd=work)
    assert not (work / "copy.txt").exists()
    if name == "demo.wasm":
        assert text(proc.stderr) == "error opening input test.txt: Capabilities insufficient\n"
        assert proc.returncode == 1


def test_escape_with_dotdot_is_refused(demo, tmp_path):
    work, name = demo
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    before = sorted(p.name for p in tmp_path.iterdir())
    target = f"{sandbox}/../escaped.txt"
    proc = wasijail("run", "--dir=.", f"--dir={sandbox}", name, "test.txt", target, cwd=work)
    if name == "demo.wasm":
        assert text(proc.stderr) == f"error opening output {target}: Capabilities insufficient\n"
        assert proc.returncode == 1
    else:
        assert "Capabilities insufficient" in text(proc.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert not (tmp_path / "escaped.txt").exists()


def test_escape_to_etc_passwd_is_refused(demo, tmp_path):
    work, name = demo
    passwd = open("/etc/passwd", "rb").read()
    proc = wasijail("run", "--dir=.", "--dir=/tmp", name, "test.txt", "/tmp/../etc/passwd", cwd=work)
    assert "Capabilities insufficient" in text(proc.stderr)
    assert open("/etc/passwd", "rb").read() == passwd


def test_mapdir_lands_file_in_the_mapped_dir(demo, tmp_path):
    work, name = demo
    other = tmp_path / "other"
    other.mkdir()
    proc = wasijail("run", "--dir=.", f"--mapdir=/tmp::{other}", name, "test.txt", "/tmp/somewhere.txt", cwd=work)
    assert (proc.returncode, proc.stderr) == (0, b"")
    assert (other / "somewhere.txt").read_bytes() == CONTENT


def test_dir_with_guest_name(demo, tmp_path):
    work, name = demo
    other = tmp_path / "other"
    other.mkdir()
    proc = wasijail("run", "--dir=.", f"--dir={other}::/out", name, "test.txt", "/out/copy.txt", cwd=work)
    assert (proc.returncode, proc.stderr) == (0, b"")
    assert (other / "copy.txt").read_bytes() == CONTENT


def test_demo_wat_runs_directly(tmp_path):
    shutil.copy(program("demo.wat"), tmp_path / "demo.wat")
    proc = wasijail("demo.wat", cwd=tmp_path)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, b"hello world\n", b"")


def test_demo_wat_after_wat2wasm(tmp_path):
    binary = wasmtime.wat2wasm(program("demo.wat").read_text())
    (tmp_path / "demo.wasm").write_bytes(binary)
    proc = wasijail("run", "demo.wasm", cwd=tmp_path)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, b"hello world\n", b"")


def test_preview1_hello_world(tmp_path):
    proc = wasijail(program("demo_p1.wasm"))
    assert (proc.returncode, proc.stdout) == (0, b"hello world\n")
