"""WASI conformance: every function of both snapshots, success and error paths.

`tests/programs/wasi_conf.h` is one C program (raw imports, no libc wrappers
in the way) built twice: `wasi_conf_p1.wasm` imports `wasi_snapshot_preview1`,
`wasi_conf_p0.wasm` imports `wasi_unstable` and reads preview0's own layouts
(56-byte filestat, whence CUR/END/SET, 56-byte subscriptions). Each run covers
one section, in a fresh /sandbox preopen, and its output is compared exactly
with EXPECTED below. Both builds must print the same, but for preview1's
`sock_accept`, which preview0 does not have. `test_differential.py` runs the
preview1 build under wasmtime-py's own WASI and lists where they differ.

Outputs print errno names, values read back, and "yes"/"no" for comparisons
that would otherwise depend on time, inode numbers or fd numbers.
"""

from __future__ import annotations

import os
import socket
from functools import partial
from pathlib import Path

import pytest
import trio
import wasmtime

from wasijail.broker.resolve import Resolver, openat2_available
from wasijail.policy import Policy
from wasijail.supervisor import open_supervisor
from wasijail.wasi import PREVIEW0, PREVIEW1

from helpers import program

SANDBOX = "/sandbox"
STDIN = b"ping\n"
ENV = (("CONF", "1"), ("EMPTY", ""))
PROGRAMS = {"p1": "wasi_conf_p1.wasm", "p0": "wasi_conf_p0.wasm"}
# The sections that go through the broker, run again under the fallback resolver.
BROKERED = ("path", "symlink", "times", "readdir", "renumber", "readonly")


def make_sandbox(base: Path) -> Path:
    """The tree every section starts from (see wasi_conf.h); returns the preopen."""
    box = base / "sandbox"
    box.mkdir()
    (box / "data.txt").write_text("0123456789")
    (base / "outside.txt").write_text("secret")
    (box / "up_link").symlink_to("../outside.txt")
    (box / "abs_link").symlink_to(base / "outside.txt")
    (base / "stdin").write_bytes(STDIN)
    return box


def conf_policy(box: Path, section: str, symlinks: str | None = None) -> Policy:
    """The section's policy; the symlink section runs with WASI's own symlink
    semantics (`symlinks = "wasi"`) unless told otherwise, as it checks WASI."""
    policy = Policy().with_preopen(box, SANDBOX, mode="ro" if section == "readonly" else "rw")
    policy = policy.with_symlinks(symlinks or ("wasi" if section == "symlink" else "confined"))
    for name, value in ENV:
        policy = policy.with_env(name, value)
    return policy


def expected(section: str, snapshot: str) -> str:
    text = EXPECTED[section]
    if snapshot == "p0":  # preview0 has no sock_accept
        text = "".join(ln for ln in text.splitlines(keepends=True) if not ln.startswith("sock_accept"))
    return text


async def run_section(sup, base: Path, snapshot: str, section: str,
                      symlinks: str | None = None) -> tuple[int, str]:
    box = make_sandbox(base)
    stdin = os.open(base / "stdin", os.O_RDONLY)
    try:
        result = await sup.run(program(PROGRAMS[snapshot]), [section],
                               policy=conf_policy(box, section, symlinks), stdin=stdin, capture_stdout=True)
    finally:
        os.close(stdin)
    # Nothing a section does may reach past its preopen.
    assert (base / "outside.txt").read_text() == "secret"
    assert sorted(p.name for p in base.iterdir()) == ["outside.txt", "sandbox", "stdin"]
    return result.returncode, result.stdout.decode()


SECTIONS = ("fd", "stdio", "rights", "path", "symlink", "times", "readdir", "renumber",
            "close_preopen", "misc", "poll", "fault", "invalid", "readonly")


@pytest.mark.parametrize("snapshot", ["p1", "p0"])
@pytest.mark.parametrize("section", SECTIONS)
async def test_section(tmp_path, section, snapshot):
    async with open_supervisor() as sup:
        status, out = await run_section(sup, tmp_path, snapshot, section)
    assert out == expected(section, snapshot)
    assert status == 0


# The symlink section under the default policy (`symlinks = "confined"`): the one
# link whose target leaves the preopen ("escape" -> ../outside.txt) is never
# made, so what later uses it finds nothing.
CONFINED_SYMLINKS = {
    "path_symlink escaping target: ok": "path_symlink escaping target: EPERM",
    'path_readlink escaping: ok "../outside.txt" n=14': "path_readlink escaping: ENOENT",
    "path_open escaping link follow: ENOTCAPABLE": "path_open escaping link follow: ENOENT",
    "path_link follow escaping: ENOTCAPABLE": "path_link follow escaping: ENOENT",
    "path_rename symlink: ok": "path_rename symlink: ENOENT",
    'renamed symlink: ok "../outside.txt" n=14': "renamed symlink: ENOENT",
}


@pytest.mark.parametrize("resolver", ["openat2", "fallback"], indirect=True)
async def test_symlink_section_confined(tmp_path, resolver):
    async with open_supervisor(resolver=resolver) as sup:
        status, out = await run_section(sup, tmp_path, "p1", "symlink", symlinks="confined")
    lines = expected("symlink", "p1").splitlines()
    assert set(CONFINED_SYMLINKS) <= set(lines)
    assert (status, out.splitlines()) == (0, [CONFINED_SYMLINKS.get(line, line) for line in lines])


@pytest.mark.parametrize("section", BROKERED)
async def test_section_under_the_fallback_resolver(tmp_path, section):
    """The O_NOFOLLOW walk gives the broker the same answers as openat2."""
    async with open_supervisor(resolver=Resolver(use_openat2=False)) as sup:
        status, out = await run_section(sup, tmp_path, "p1", section)
    assert (status, out) == (0, expected(section, "p1"))


@pytest.mark.skipif(not openat2_available(), reason="openat2 missing on this kernel")
async def test_default_resolver_is_openat2():
    assert Resolver().use_openat2


@pytest.mark.parametrize("snapshot,functions", [("p1", PREVIEW1.functions), ("p0", PREVIEW0.functions)])
def test_every_function_of_the_snapshot_is_called(snapshot, functions):
    """The program imports (and its sections call) every function of its snapshot."""
    module = wasmtime.Module.from_file(wasmtime.Engine(), program(PROGRAMS[snapshot]))
    wasi = {imp.name for imp in module.imports if imp.module == (PREVIEW1 if snapshot == "p1" else PREVIEW0).module}
    assert wasi == set(functions)
    assert len(wasi) == (46 if snapshot == "p1" else 45)


@pytest.mark.parametrize("snapshot", ["p1", "p0"])
async def test_proc_exit(tmp_path, snapshot):
    async with open_supervisor() as sup:
        status, out = await run_section(sup, tmp_path, snapshot, "exit")
    assert (status, out) == (17, "== exit\n")


async def test_stdio_as_pipes(tmp_path):
    """stdin and stdout are pipes: poll_oneoff waits for data, then sees the hangup."""
    box = make_sandbox(tmp_path)
    async with open_supervisor() as sup, trio.open_nursery() as nursery:
        handle = await nursery.start(partial(sup.run, program("wasi_conf_p1.wasm"), ["pipes"],
                                             policy=conf_policy(box, "pipes"), capture_stderr=True))
        seen = bytearray()

        async def read_until(marker: bytes) -> None:
            with trio.fail_after(10):
                while marker not in seen:
                    chunk = await handle.stdout.receive_some()
                    assert chunk, f"end of output before {marker!r}: {bytes(seen)!r}"
                    seen.extend(chunk)

        await read_until(b"stdout pipe writable")
        await trio.sleep(0.05)  # the guest is blocked in poll_oneoff on stdin now
        await handle.send_stdin(b"hello\n")
        await read_until(b'read stdin pipe: ok "hello\\n"\n')
        await handle.stdin.aclose()
        with trio.fail_after(10):
            while chunk := await handle.stdout.receive_some():
                seen.extend(chunk)
        result = await handle.wait()
    assert result.returncode == 0
    assert seen.decode() == """\
== pipes
fdstat 0: ok type=UNKNOWN flags=0 read=yes write=no seek=no tell=no
isatty 0: no
fdstat 1: ok type=UNKNOWN flags=0 read=no write=yes seek=no tell=no
isatty 1: no
fdstat 2: ok type=UNKNOWN flags=0 read=no write=yes seek=no tell=no
isatty 2: no
stdout pipe writable: ok nevents=1 [userdata=71 error=ok type=FD_WRITE]
stdin pipe readable: ok nevents=1 [userdata=72 error=ok type=FD_READ hangup=no]
read stdin pipe: ok "hello\\n"
stdin pipe closed: ok nevents=1 [userdata=73 error=ok type=FD_READ hangup=yes]
read closed stdin pipe: ok ""
"""


SOCKETS_OUTPUT = """\
== sockets
pong
sock_recv peek: ok "ping" flags=0
sock_recv: ok "ping" flags=0
sock_send: ok n=5
sock_send on stdin: EBADF
sock_recv on stdout: EBADF
sock_shutdown how 0: EINVAL
sock_shutdown stdin RD: ok
sock_recv after shutdown: ok n=0
sock_accept stdin: ENOTSUP
fdstat 0: ok type=UNKNOWN flags=0 read=yes write=no seek=no tell=no
"""


@pytest.mark.parametrize("snapshot", ["p1", "p0"])
async def test_stdio_as_sockets(tmp_path, snapshot):
    """stdin and stdout are connected sockets: sock_recv, sock_send and sock_shutdown work on them
    (wasijail grants no sockets of its own; "pong" comes first: libc buffers the rest)."""
    box = make_sandbox(tmp_path)
    stdin_child, stdin_peer = socket.socketpair()
    stdout_child, stdout_peer = socket.socketpair()
    with stdin_child, stdin_peer, stdout_child, stdout_peer:
        stdin_peer.sendall(b"ping")
        async with open_supervisor() as sup:
            result = await sup.run(program(PROGRAMS[snapshot]), ["sockets"], policy=conf_policy(box, "sockets"),
                                   stdin=stdin_child.fileno(), stdout=stdout_child.fileno(), capture_stderr=True)
        stdout_child.close()
        out = b""
        while chunk := stdout_peer.recv(4096):
            out += chunk
    assert (result.returncode, result.stderr) == (0, b"")
    expected_out = SOCKETS_OUTPUT if snapshot == "p1" else SOCKETS_OUTPUT.replace("sock_accept stdin: ENOTSUP\n", "")
    assert out.decode() == expected_out


async def test_isatty_on_a_terminal(tmp_path):
    """A terminal is a character device without seek rights: wasi-libc's isatty() says yes."""
    box = make_sandbox(tmp_path)
    master, slave = os.openpty()
    try:
        async with open_supervisor() as sup:
            result = await sup.run(program("wasi_conf_p1.wasm"), ["tty"], policy=conf_policy(box, "tty"),
                                   stdin=slave, stdout=slave, capture_stderr=True)
        os.set_blocking(master, False)
        out = b""
        try:
            while chunk := os.read(master, 4096):
                out += chunk
        except BlockingIOError:
            pass
    finally:
        os.close(master)
        os.close(slave)
    assert result.returncode == 0
    assert out.decode().replace("\r\n", "\n") == """\
== tty
fdstat 0: ok type=CHARACTER_DEVICE flags=0 read=yes write=no seek=no tell=no
isatty 0: yes
fdstat 1: ok type=CHARACTER_DEVICE flags=0 read=no write=yes seek=no tell=no
isatty 1: yes
fdstat 2: ok type=UNKNOWN flags=0 read=no write=yes seek=no tell=no
isatty 2: no
"""


# --- what each section prints (preview1; preview0 prints the same but sock_accept) ---

EXPECTED = {
    "fd": r"""== fd
path_open create: ok
fd_write 2 iovecs: ok n=12
fd_write 0 iovecs: ok n=0
fd_tell: ok 12
fd_seek SET 0: ok 0
fd_read 5: ok "hello"
fd_read 2 iovecs: ok n=7
fd_seek END -6: ok 6
fd_seek CUR +2: ok 8
fd_read after seek: ok "rld\n"
fd_read at end: ok ""
fd_seek SET -1: EINVAL
fd_seek CUR -100: EINVAL
fd_seek past the end: ok 100
fd_pread 5 at 6: ok "world"
fd_pwrite 5 at 0: ok n=5
fd_tell after pread/pwrite: ok 100
content: ok "HELLO world\n"
fd_filestat_get: ok type=REGULAR_FILE size=12 nlink=1
fd_filestat_set_size 5: ok
content after shrink: ok "HELLO"
fd_filestat_set_size 8: ok
grown bytes are zero: ok n=8 yes
fd_advise NORMAL: ok
fd_advise DONTNEED: ok
fd_allocate 100: ok size=100
fd_datasync: ok
fd_sync: ok
fd_fdstat_get rw file: ok type=REGULAR_FILE flags=0 read=yes write=yes seek=yes tell=yes
fd_fdstat_set_flags APPEND: ok
fdstat after APPEND: ok type=REGULAR_FILE flags=1 read=yes write=yes seek=yes tell=yes
fd_write in append mode: ok
content after append: ok "HELLO\x00\x00\x00END"
fd_fdstat_set_flags 0: ok
fdstat after clearing: ok type=REGULAR_FILE flags=0 read=yes write=yes seek=yes tell=yes
fd_fdstat_set_flags SYNC: EINVAL
fd_fdstat_set_flags NONBLOCK: ok
fdstat after NONBLOCK: ok type=REGULAR_FILE flags=4 read=yes write=yes seek=yes tell=yes
fd_close: ok
fd_close again: EBADF
fd_read closed: EBADF
fd_filestat_get closed: EBADF
path_open APPEND: ok
fdstat opened with APPEND: ok type=REGULAR_FILE flags=1 read=yes write=yes seek=yes tell=yes
write opened with APPEND: ok
content after APPEND open: ok "HELLO\x00\x00\x00END!"
path_open read-only: ok
fdstat read-only: ok type=REGULAR_FILE flags=0 read=yes write=no seek=yes tell=yes
fd_write read-only: EBADF
fd_pwrite read-only: EBADF
fd_filestat_set_size read-only: EINVAL
fd_read read-only: ok "0123"
path_open write-only: ok
fdstat write-only: ok type=REGULAR_FILE flags=0 read=no write=yes seek=yes tell=yes
fd_read write-only: EBADF
fd_pread write-only: EBADF
data.txt unchanged: ok "0123456789"
path_open dir: ok
fd_read dir: EBADF
fd_write dir: EBADF
fd_pread dir: EBADF
fd_pwrite dir: EBADF
fd_seek dir: EBADF
fd_tell dir: EBADF
fd_filestat_set_size dir: EBADF
fd_advise dir: EBADF
fd_allocate dir: EBADF
fd_datasync dir: EBADF
fd_sync dir: ok
fd_fdstat_set_flags dir: EBADF
fd_filestat_get dir: ok type=DIRECTORY
fd_filestat_get preopen: ok type=DIRECTORY
fd_write bad fd: EBADF
fd_seek bad fd: EBADF
fd_fdstat_get bad fd: EBADF
fd_sync bad fd: EBADF
fd_close bad fd: EBADF
""",
    "stdio": r"""== stdio
fdstat 0: ok type=UNKNOWN flags=0 read=yes write=no seek=no tell=no
isatty 0: no
fdstat 1: ok type=UNKNOWN flags=0 read=no write=yes seek=no tell=no
isatty 1: no
fdstat 2: ok type=UNKNOWN flags=0 read=no write=yes seek=no tell=no
isatty 2: no
fd_filestat_get stdout: ok type=UNKNOWN size=0 ino=0
fd_seek stdin: ESPIPE
fd_tell stdout: ESPIPE
fd_pread stdin: ESPIPE
fd_pwrite stdout: ESPIPE
fd_write stdin: EBADF
fd_read stdout: EBADF
fd_filestat_set_size stdout: EBADF
fd_filestat_set_times stdout: EBADF
fd_advise stdout: EBADF
fd_allocate stdout: EBADF
fd_datasync stdout: EBADF
fd_sync stdout: EBADF
fd_fdstat_set_flags stdout: EBADF
fd_readdir stdout: EBADF
path_open under stdout: EBADF
fd_read stdin: ok "ping\n"
written to stdout
fd_write stdout: ok
""",
    "rights": r"""== rights
preopen: ok type=DIRECTORY flags=0 readdir=yes path_open=yes seek=no
path_open sub dir: ok
path_open dir: ok
opened dir: ok type=DIRECTORY flags=0 readdir=yes path_open=yes seek=no
path_open file: ok
file: ok type=REGULAR_FILE flags=0 read=yes write=yes seek=yes tell=yes
file rights include directory rights: no
drop FD_WRITE: ok
after dropping FD_WRITE: ok type=REGULAR_FILE flags=0 read=yes write=no seek=yes tell=yes
fd_write without FD_WRITE: ENOTCAPABLE
fd_read still allowed: ok "0123"
drop FD_READ and FD_SEEK: ok
fd_read without FD_READ: ENOTCAPABLE
fd_seek without FD_SEEK: ENOTCAPABLE
fd_tell still allowed: ok
add FD_WRITE back: ENOTCAPABLE
fd_fdstat_set_rights bad fd: EBADF
drop PATH_OPEN on dir: ok
dir after dropping PATH_OPEN: ok type=DIRECTORY flags=0 readdir=yes path_open=no seek=no
path_open without PATH_OPEN: ENOTCAPABLE
drop FD_READDIR on dir: ok
fd_readdir without FD_READDIR: ENOTCAPABLE
data.txt unchanged: ok "0123456789"
""",
    "path": r"""== path
path_create_directory d: ok
path_create_directory d again: EEXIST
path_create_directory d/sub: ok
path_create_directory missing/x: ENOENT
path_create_directory trailing slash: ok
path_create_directory on a file: EEXIST
path_create_directory data.txt/x: ENOTDIR
create d/file: ok
path_remove_directory non-empty: ENOTEMPTY
path_remove_directory a file: ENOTDIR
path_remove_directory missing: ENOENT
path_remove_directory trailing slash: EINVAL
path_remove_directory e: ok
path_remove_directory .: EINVAL
path_unlink_file a dir: EISDIR
path_unlink_file dir with slash: EISDIR
path_unlink_file file with slash: ENOTDIR
path_unlink_file missing: ENOENT
path_unlink_file d/file: ok
path_unlink_file d/file again: ENOENT
path_remove_directory d (d/sub is left): ENOTEMPTY
path_rename file to new: ok
stat old name: ENOENT
new name: ok "A"
path_rename file over file: ok
replaced: ok "A"
path_rename file over dir: EISDIR
path_rename dir over file: ENOTDIR
path_rename dir over non-empty dir: ENOTEMPTY
path_rename dir over empty dir: ok
path_rename dir into itself: EINVAL
path_rename missing: ENOENT
path_rename file/ to x: ENOTDIR
path_rename file to x/: ENOTDIR
path_rename dir/ to dir3/: ok
path_rename dir to dir4/: ok
stat dir4: ok type=DIRECTORY
path_rename to escape: ENOTCAPABLE
path_link: ok
nlink after path_link: ok 2
path_link onto existing: EEXIST
path_link a dir: EPERM
path_link missing: ENOENT
path_link file/: ENOTDIR
path_link to x/: ENOENT
path_link to escape: ENOTCAPABLE
path_filestat_get file: ok type=REGULAR_FILE size=1
path_filestat_get dir: ok type=DIRECTORY
path_filestat_get dir/: ok type=DIRECTORY
path_filestat_get file/: ENOTDIR
path_filestat_get missing: ENOENT
path_filestat_get .: ok type=DIRECTORY
path_filestat_get dir4/..: ok type=DIRECTORY
path_filestat_get ..: ENOTCAPABLE
path_filestat_get /: ENOTCAPABLE
path_filestat_get empty: ENOENT
path_open missing: ENOENT
path_open CREAT|EXCL existing: EEXIST
path_open DIRECTORY on a file: ENOTDIR
path_open file/: ENOTDIR
path_open dir for writing: EISDIR
path_open CREAT on new/: EISDIR
path_open CREAT on a dir: EISDIR
path_open ../outside.txt: ENOTCAPABLE
path_open dir4/../../outside.txt: ENOTCAPABLE
path_open absolute: ENOTCAPABLE
path_open dir4/../data.txt: ok "0123456789"
path_open ./data.txt: ok "0123456789"
path_open TRUNC: ok
size after TRUNC: ok 0
path_open under a file: ENOTDIR
path_open under a closed fd: EBADF
path_create_directory under a file: EBADF
path_filestat_get under a file: EBADF
path_open NUL byte: EINVAL
path_open invalid UTF-8: EILSEQ
path_create_directory invalid UTF-8: EILSEQ
path_unlink_file NUL byte: EINVAL
""",
    "symlink": r"""== symlink
path_symlink: ok
path_symlink dir: ok
path_symlink existing: EEXIST
path_symlink over a file: EEXIST
path_symlink dangling: ok
path_symlink loop a: ok
path_symlink loop b: ok
path_symlink self: ok
path_symlink escaping target: ok
path_symlink absolute target: EPERM
path_symlink new/: ENOENT
path_symlink link/: ENOTDIR
path_symlink in missing dir: ENOENT
path_symlink empty target: ENOENT
path_readlink: ok "target.txt" n=10
path_readlink short buffer: ok "tar" n=3
path_readlink zero buffer: ok "" n=0
path_readlink a file: EINVAL
path_readlink missing: ENOENT
path_readlink link/: EINVAL
path_readlink escaping: ok "../outside.txt" n=14
path_open follow: ok "TARGET"
path_open nofollow: ELOOP
path_open nofollow DIRECTORY: ELOOP
path_open dirlink follow DIRECTORY: ok
path_open dirlink nofollow DIRECTORY: ELOOP
path_open dirlink/ nofollow: ok
path_open through dirlink/x CREAT: ok
dir/x exists: ok type=REGULAR_FILE size=0
path_open dangling follow: ENOENT
path_open dangling nofollow: ELOOP
path_open loop follow: ELOOP
path_open self follow: ELOOP
path_open loop/x: ELOOP
path_open escaping link follow: ENOTCAPABLE
path_open host up_link follow: ENOTCAPABLE
path_open host abs_link follow: ENOTCAPABLE
path_open host abs_link nofollow: ELOOP
path_filestat_get link nofollow: ok type=SYMBOLIC_LINK size=10
path_filestat_get link follow: ok type=REGULAR_FILE size=6
path_filestat_get dirlink/ nofollow: ok type=DIRECTORY
path_filestat_get dangling nofollow: ok type=SYMBOLIC_LINK size=7
path_filestat_get dangling follow: ENOENT
path_filestat_get loop follow: ELOOP
path_filestat_get abs_link nofollow: ok type=SYMBOLIC_LINK
path_filestat_get abs_link follow: ENOTCAPABLE
path_filestat_get up_link follow: ENOTCAPABLE
path_link nofollow: ok
hard link to the symlink: ok type=SYMBOLIC_LINK size=10
path_link follow: ok
hard link to the target: ok type=REGULAR_FILE size=6
path_link follow escaping: ENOTCAPABLE
path_remove_directory dirlink: ENOTDIR
path_remove_directory dirlink/: EINVAL
path_unlink_file dirlink/: EISDIR
path_unlink_file link/: ENOTDIR
path_unlink_file link: ok
target kept: ok "TARGET"
path_unlink_file dangling: ok
path_unlink_file dirlink: ok
dir kept: ok type=DIRECTORY
path_rename symlink: ok
renamed symlink: ok "../outside.txt" n=14
path_rename loop_a/: ENOTDIR
""",
    "times": r"""== times
path_open: ok
fd_filestat_set_times ATIM|MTIM: ok
fd_filestat_get: atim=1234567890123456789 mtim=1111111111222222222
fd_filestat_set_times MTIM only: ok
atim kept: atim=1234567890123456789 mtim=1234567890123456789
fd_filestat_set_times ATIM only: ok
mtim kept: atim=1111111111222222222 mtim=1234567890123456789
fd_filestat_set_times nothing: ok
unchanged: atim=1111111111222222222 mtim=1234567890123456789
ATIM|ATIM_NOW: EINVAL
MTIM|MTIM_NOW: EINVAL
unchanged after errors: atim=1111111111222222222 mtim=1234567890123456789
MTIM_NOW: ok
mtim is now: yes, atim kept: yes
ATIM_NOW|MTIM: ok
atim is now: yes, mtim set: yes
fd_filestat_set_times closed: EBADF
path_filestat_set_times: ok
path_filestat_get: atim=1111111111222222222 mtim=1234567890123456789
path_filestat_set_times symlink nofollow: ok
the link itself: atim=1234567890123456789 mtim=1234567890123456789
its target untouched: atim=1111111111222222222 mtim=1234567890123456789
path_filestat_set_times symlink follow: ok
the target: atim=42 mtim=43
the link's mtim untouched: ok yes
path_filestat_set_times dir: ok
dir: atim=1234567890123456789 mtim=1111111111222222222
path_filestat_set_times missing: ENOENT
path_filestat_set_times bad flags: EINVAL
path_filestat_set_times escape: ENOTCAPABLE
path_open tdir: ok
fd_filestat_set_times opened dir: ok
opened dir: atim=1111111111222222222 mtim=1234567890123456789
""",
    "readdir": r"""== readdir
path_open rd: ok
fd_readdir: ok entries=7 partial=no
d_next counts 1..n: yes
first two: . ..
  . DIRECTORY
  .. DIRECTORY
  a REGULAR_FILE
  bb REGULAR_FILE
  ccc REGULAR_FILE
  ln SYMBOLIC_LINK
  sub DIRECTORY
from cookie 2: ok entries=5 same bytes as the full listing: yes
from cookie n: ok used=0
from cookie n+5: ok used=0
from a huge cookie: ok used=0
buf_len 0: ok used=0 prefix matches=yes untouched after=yes
buf_len 1: ok used=1 prefix matches=yes untouched after=yes
buf_len 10: ok used=10 prefix matches=yes untouched after=yes
buf_len 24: ok used=24 prefix matches=yes untouched after=yes
buf_len 25: ok used=25 prefix matches=yes untouched after=yes
buf_len 30: ok used=30 prefix matches=yes untouched after=yes
buf_len 49: ok used=49 prefix matches=yes untouched after=yes
buf_len 50: ok used=50 prefix matches=yes untouched after=yes
buf_len 51: ok used=51 prefix matches=yes untouched after=yes
piecewise: ok entries=7
after adding a file: ok entries=8
300 long names: ok entries=302 bytes=44451 names=yes
fd_readdir preopen: ok has data.txt=yes first=.
fd_readdir on a file: EBADF
fd_readdir bad fd: EBADF
""",
    "renumber": r"""== renumber
fd_renumber a onto b: ok
read b: ok "AAA"
fd_close a: EBADF
fd_renumber onto a closed fd: EBADF
b still open: ok ""
fd_renumber from a closed fd: EBADF
fd_renumber closed onto stdout: EBADF
fd_renumber onto itself: ok
fd_renumber stdout onto itself: ok
stdout ok
stdout still works: ok
fd_renumber file onto stderr: ok
write to fd 2: ok
err.txt: ok "to the file"
fd_renumber preopen onto a file fd: ok
fd_prestat_get old number: EBADF
fd_prestat_get new number: ok len=8
open through the moved preopen: ok "BBB"
fd_renumber a dir over the preopen: ok
fd_prestat_get after: EBADF
fd_filestat_get: ok type=DIRECTORY
fd_close it: ok
fd_prestat_get closed: EBADF
path_open under closed: EBADF
""",
    "close_preopen": r"""== close_preopen
fd_close preopen: ok
fd_prestat_get: EBADF
path_open: EBADF
fd_readdir: EBADF
fd_close again: EBADF
""",
    "misc": r"""== misc
args_sizes_get: ok
argc=2 size=23
args_get: ok
argv[1]=misc
args packed: yes
environ_sizes_get: ok
envc=2 size=14
environ_get: ok
env[0]=CONF=1
env[1]=EMPTY=
clock_res_get REALTIME: ok positive=yes at most 1ms=yes
clock_time_get REALTIME: ok nondecreasing=yes
clock_res_get MONOTONIC: ok positive=yes at most 1ms=yes
clock_time_get MONOTONIC: ok nondecreasing=yes
clock_res_get PROCESS_CPUTIME_ID: ok positive=yes at most 1ms=yes
clock_time_get PROCESS_CPUTIME_ID: ok nondecreasing=yes
clock_res_get THREAD_CPUTIME_ID: ok positive=yes at most 1ms=yes
clock_time_get THREAD_CPUTIME_ID: ok nondecreasing=yes
realtime after 2020: yes
random_get: ok
random bytes mostly nonzero: yes
random_get 0 bytes: ok
sched_yield: ok
proc_raise SIGUSR1: ENOTSUP
sock_accept stdin: ENOTSOCK
sock_accept bad fd: EBADF
sock_accept preopen: ENOTSOCK
sock_recv stdin: ENOTSOCK
sock_recv bad fd: EBADF
sock_send stdout: ENOTSOCK
sock_send bad fd: EBADF
sock_shutdown stdout: ENOTSOCK
sock_shutdown preopen: ENOTSOCK
sock_shutdown bad fd: EBADF
fd_prestat_get: ok tag=0 len=8
fd_prestat_dir_name: ok "/sandbox"
fd_prestat_dir_name short buffer: ENAMETOOLONG untouched=yes
fd_prestat_dir_name zero buffer: ENAMETOOLONG
fd_prestat_get stdin: EBADF
fd_prestat_get bad fd: EBADF
fd_prestat_dir_name stdout: ENOTDIR
fd_prestat_dir_name bad fd: EBADF
fd_prestat_get opened dir: EBADF
fd_prestat_dir_name opened dir: ENOTDIR
""",
    "poll": r"""== poll
poll_oneoff no subscriptions: EINVAL
relative 20ms: ok nevents=1 [userdata=11 error=ok type=CLOCK]
waited 20ms: yes
absolute monotonic +20ms: ok nevents=1 [userdata=12 error=ok type=CLOCK]
waited until then: yes
absolute monotonic in the past: ok nevents=1 [userdata=13 error=ok type=CLOCK]
absolute realtime in the past: ok nevents=1 [userdata=14 error=ok type=CLOCK]
relative realtime 10ms: ok nevents=1 [userdata=15 error=ok type=CLOCK]
waited 10ms: yes
two clocks: only the earlier fires: ok nevents=1 [userdata=22 error=ok type=CLOCK]
did not wait for the later: yes
zero timeout: ok nevents=1 [userdata=31 error=ok type=CLOCK]
cpu-time clock: EINVAL
file readable at once: ok nevents=1 [userdata=41 error=ok type=FD_READ hangup=no]
no wait: yes
file at its end: ok nevents=1 [userdata=43 error=ok type=FD_READ hangup=yes]
stdout writable: ok nevents=1 [userdata=51 error=ok type=FD_WRITE]
stdin readable: ok nevents=1 [userdata=52 error=ok type=FD_READ hangup=no]
stdin readable, stderr writable: ok nevents=2 [userdata=53 error=ok type=FD_READ hangup=no] [userdata=54 error=ok type=FD_WRITE]
read stdin: ok "ping\n"
bad fd: EBADF
a directory: EBADF
""",
    "fault": r"""== fault
fd_write bad iovs: EFAULT
fd_write bad buffer: EFAULT
fd_write bad nwritten: EFAULT
fd_read bad buffer: EFAULT
fd_fdstat_get bad result: EFAULT
fd_filestat_get bad result: EFAULT
clock_time_get bad result: EFAULT
clock_res_get bad result: EFAULT
args_sizes_get bad result: EFAULT
args_get bad argv: EFAULT
environ_get bad environ: EFAULT
random_get bad buffer: EFAULT
random_get wrapping length: EFAULT
path_open bad path: EFAULT
path_open bad result: EFAULT
path_filestat_get bad result: EFAULT
path_create_directory bad path: EFAULT
path_readlink bad path: EFAULT
fd_readdir bad buffer: EFAULT
fd_prestat_get bad result: EFAULT
fd_prestat_dir_name bad buffer: EFAULT
poll_oneoff bad subscriptions: EFAULT
poll_oneoff huge count: EFAULT
fd_seek bad result: EFAULT
fd_tell bad result: EFAULT
fd_pread bad iovs: EFAULT
fd_pread bad buffer: EFAULT
still alive: ok
""",
    "invalid": r"""== invalid
fd_seek whence 7: EINVAL
fd_advise 9: EINVAL
path_open oflags 16: EINVAL
path_open fdflags 32: EINVAL
path_open lookupflags 2: EINVAL
path_filestat_get lookupflags 2: EINVAL
fd_filestat_set_times fstflags 16: EINVAL
fd_fdstat_set_flags 32: EINVAL
clock_res_get 4: EINVAL
clock_time_get 4: EINVAL
sock_shutdown how 4: ENOTSOCK
poll_oneoff unknown clock: EINVAL
poll_oneoff unknown event type: EINVAL
checks: 13
""",
    "readonly": r"""== readonly
preopen: ok type=DIRECTORY flags=0 readdir=yes path_open=yes seek=no
path_open for reading: ok
file: ok type=REGULAR_FILE flags=0 read=yes write=no seek=yes tell=yes
fd_read: ok "0123"
fd_write: EBADF
path_open for writing: ENOTCAPABLE
path_open CREAT: ENOTCAPABLE
path_open TRUNC: ENOTCAPABLE
path_create_directory: ENOTCAPABLE
path_unlink_file: ENOTCAPABLE
path_rename: ENOTCAPABLE
path_symlink: ENOTCAPABLE
path_link: ENOTCAPABLE
path_filestat_set_times: ENOTCAPABLE
fd_filestat_set_times preopen: ENOTCAPABLE
path_filestat_get: ok type=REGULAR_FILE size=10
path_readlink: ok "../outside.txt" n=14
fd_readdir: ok entries=5
fd_filestat_get preopen: ok type=DIRECTORY
data.txt unchanged: ok "0123456789"
""",
}
