"""A compromised child cannot change the descriptors its caller handed over.

Status flags (O_NONBLOCK, O_APPEND, ...) belong to the open file
description, which fork and SCM_RIGHTS share: a child holding the caller's own
description could make the caller's stdout non-blocking. Each test hands the
supervisor descriptors of one kind, lets native code in the child set every
flag it can on its stdio (fcntl F_SETFL, ioctl FIONBIO, on the fds and on dups
of them), checks that the child did change *its* descriptions, and checks that
the caller's are as they were.
"""

from __future__ import annotations

import fcntl
import os
import socket
import subprocess
import sys
import textwrap

import pytest

from helpers import program
from wasijail import OutcomeKind

# Runs in the child: set O_NONBLOCK and O_APPEND every way it can, report what it sees.
_FLIP_FLAGS = """
    import fcntl, os, struct, termios
    seen = []
    for fd in (0, 1, 2):
        for target in (fd, os.dup(fd)):
            flags = fcntl.fcntl(target, fcntl.F_GETFL)
            fcntl.fcntl(target, fcntl.F_SETFL, flags | os.O_NONBLOCK | os.O_APPEND)
            fcntl.ioctl(target, termios.FIONBIO, struct.pack("i", 1))
        seen.append(bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_NONBLOCK))
    os.write(1, b"written by the child\\n")
    RESULT = seen
"""


def _flags(fd: int) -> int:
    return fcntl.fcntl(fd, fcntl.F_GETFL)


async def _run_flipping(attempt, **stdio):
    result = await attempt(_FLIP_FLAGS.replace("RESULT = seen", "os.write(2, repr(seen).encode())"),
                           **stdio)
    assert result.outcome.kind is OutcomeKind.EXIT, result
    return result


async def test_pipes_keep_their_flags(attempt):
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    os.close(in_w)
    before = [_flags(fd) for fd in (in_r, out_w, err_w)]
    try:
        await _run_flipping(attempt, stdin=in_r, stdout=out_w, stderr=err_w)
        assert [_flags(fd) for fd in (in_r, out_w, err_w)] == before
        assert all(os.get_blocking(fd) for fd in (in_r, out_w, err_w))
        os.close(out_w)
        os.close(err_w)
        out_w = err_w = -1
        assert os.read(out_r, 100) == b"written by the child\nNone"  # then the harness's repr(RESULT)
        assert os.read(err_r, 100) == b"[True, True, True]"  # the child's own descriptions did change
    finally:
        for fd in (in_r, out_r, out_w, err_r, err_w):
            if fd >= 0:
                os.close(fd)


async def test_a_terminal_keeps_its_flags(attempt):
    master, slave = os.openpty()
    before = _flags(slave)
    try:
        await _run_flipping(attempt, stdin=slave, stdout=slave, capture_stderr=True)
        assert _flags(slave) == before
        assert os.get_blocking(slave)
        assert os.isatty(slave)
    finally:
        os.close(master)
        os.close(slave)


async def test_a_regular_file_keeps_its_flags_and_its_offset(attempt, tmp_path):
    """The child writes at the caller's offset, and the caller goes on after what it wrote."""
    path = tmp_path / "out.txt"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, b"before\n")
        before = _flags(fd)
        # stdout and stderr are one description (2>&1): one offset, nothing overwritten
        result = await attempt("import os\nos.write(1, b'out\\n')\nos.write(2, b'err\\n')\n"
                               + textwrap.dedent(_FLIP_FLAGS),
                               stdin=None, stdout=fd, stderr=fd)
        assert result.outcome.kind is OutcomeKind.EXIT
        assert _flags(fd) == before
        os.write(fd, b"after\n")
    finally:
        os.close(fd)
    assert path.read_bytes() == b"before\nout\nerr\nwritten by the child\n[True, True, True]after\n"


async def test_an_appending_file_stays_appending_only(attempt, tmp_path):
    path = tmp_path / "log.txt"
    path.write_bytes(b"old\n")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        before = _flags(fd)
        await _run_flipping(attempt, stdout=fd, capture_stderr=True)
        assert _flags(fd) == before
    finally:
        os.close(fd)
    assert path.read_bytes() == b"old\nwritten by the child\nNone"


async def test_a_socket_gets_its_flags_back(attempt):
    """A socket has one description (no reopen): shared with the child, its flags restored after."""
    ours, theirs = socket.socketpair()
    with ours, theirs:
        before = _flags(theirs.fileno())
        await _run_flipping(attempt, stdout=theirs.fileno(), capture_stderr=True)
        assert _flags(theirs.fileno()) == before
        theirs.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := ours.recv(100):
            received += chunk
        assert received == b"written by the child\nNone"


async def test_inherited_stdio_keeps_its_flags(attempt):
    """stdio=None hands over the supervisor's own 0, 1, 2 (whatever pytest made them)."""
    before = [_flags(fd) for fd in (0, 1, 2)]
    await _run_flipping(attempt, stdin=None, stdout=None, stderr=None)
    assert [_flags(fd) for fd in (0, 1, 2)] == before


@pytest.mark.parametrize("closed", [0, 1, 2])
def test_closed_stdio_never_becomes_an_internal_descriptor(closed):
    """`wasijail run cat.wasm <&-` (or >&-, 2>&-) behaves as wasmtime: a closed stdin reads
    as end of file, output to a closed stream is lost, and the guest's status is the run's."""
    proc = subprocess.run(
        ["sh", "-c", f'exec "$0" -m wasijail run "$1" {closed}>&-', sys.executable, str(program("cat.wasm"))],
        input=b"hello\n", capture_output=True, timeout=60)
    assert b"Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == b""
    assert proc.stdout == (b"" if closed in (0, 1) else b"hello\n")


def test_closed_stdout_loses_the_tutorial_greeting_quietly():
    proc = subprocess.run(["sh", "-c", 'exec "$0" -m wasijail run "$1" >&-', sys.executable,
                           str(program("demo.wat"))], capture_output=True, timeout=60)
    assert (proc.returncode, proc.stderr) == (0, b"")
