"""Path resolution beneath a preopen: wasijail.broker.resolve.

Every case runs under both implementations (openat2 and the fallback walk).
The `tree` fixture builds root/ (the preopen) next to outside/ and checks on
teardown that nothing under outside/ was created, removed or changed; every
fd a test gets back is checked to live beneath root/.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import shutil
import stat
import sys
import tempfile
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wasijail.broker import resolve
from wasijail.broker.resolve import EscapeError, Resolver, openat2_available

RD = os.O_RDONLY
WR_CREAT = os.O_WRONLY | os.O_CREAT


# --------------------------------------------------------------------------
# fixtures and helpers


@pytest.fixture(params=["openat2", "fallback"])
def resolver(request) -> Resolver:
    if request.param == "openat2":
        if not openat2_available():
            pytest.skip("openat2 is not available on this kernel")
        return Resolver(use_openat2=True)
    return Resolver(use_openat2=False)


def snapshot(top: str) -> dict:
    """Every entry under `top`: kind plus content or link target."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, top)
            st_ = os.lstat(p)
            if stat.S_ISLNK(st_.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISDIR(st_.st_mode):
                out[rel] = ("dir", None)
            else:
                out[rel] = ("file", Path(p).read_bytes(), stat.S_IMODE(st_.st_mode))
    return out


def build_tree(base: str, tmp_target: str) -> tuple[str, str]:
    """root/ and outside/ under `base`; returns their real paths."""
    base = os.path.realpath(base)
    root, outside = os.path.join(base, "root"), os.path.join(base, "outside")
    os.makedirs(os.path.join(root, "a/b/c"))
    os.makedirs(os.path.join(root, "sub"))
    os.makedirs(os.path.join(outside, "dir"))
    files = {
        "root/file": b"inside-file",
        "root/a/f": b"a-f",
        "root/a/b/c/deep": b"deep",
        "root/sub/s": b"sub-s",
        "outside/secret": b"SECRET",
        "outside/dir/secret": b"SECRET2",
    }
    for rel, data in files.items():
        Path(base, rel).write_bytes(data)
    links = {
        "link_file": "file",
        "link_a_f": "a/f",
        "chain1": "chain2",
        "chain2": "chain3",
        "chain3": "a/b",
        "link_to_sub": "sub",
        "a/link_up": "..",
        "a/b/link_root_file": "../../file",
        "link_dir_slash": "sub/",
        "link_abs": "/etc/passwd",
        "link_abs_out": os.path.join(outside, "secret"),
        "link_out": "../outside/secret",
        "link_outdir": "../outside",
        "chain_out": "chain_out2",
        "chain_out2": "link_out",
        "a/link_up2": "../..",
        "loop_a": "loop_b",
        "loop_b": "loop_a",
        "self": "self",
        "dang_in": "newfile_in",
        "dang_in_dir": "a/newfile_in2",
        "dang_out": "../outside/newfile",
        "dang_out_abs": os.path.join(outside, "newfile_abs"),
        "dang_tmp": tmp_target,  # e.g. /tmp/x, which must never appear
    }
    for rel, target in links.items():
        os.symlink(target, os.path.join(root, rel))
    return root, outside


@dataclass
class Tree:
    root: str
    outside: str
    root_fd: int

    def open(self, r: Resolver, path: bytes, flags: int = RD, mode: int = 0o644,
             **kw) -> int:
        """Open and check the fd lives beneath root (or names a link there)."""
        fd = r.open(self.root_fd, path, flags, mode, **kw)
        assert_beneath(fd, self.root)
        return fd

    def read(self, r: Resolver, path: bytes, **kw) -> bytes:
        fd = self.open(r, path, RD, **kw)
        try:
            return os.read(fd, 1000)
        finally:
            os.close(fd)

    def where(self, r: Resolver, path: bytes, flags: int = os.O_PATH, **kw) -> str:
        """Path of what `path` opened, relative to root ("." for root)."""
        fd = self.open(r, path, flags, **kw)
        try:
            return os.path.relpath(fd_path(fd), self.root)
        finally:
            os.close(fd)

    def fails(self, r: Resolver, path: bytes, err: int, flags: int = RD, **kw):
        with pytest.raises(OSError) as info:
            fd = r.open(self.root_fd, path, flags, 0o644, **kw)
            os.close(fd)
        assert info.value.errno == err, (path, errno.errorcode[info.value.errno])
        assert not isinstance(info.value, EscapeError)

    def escapes(self, r: Resolver, path: bytes, flags: int = RD, **kw):
        with pytest.raises(EscapeError) as info:
            fd = r.open(self.root_fd, path, flags, 0o644, **kw)
            os.close(fd)
        assert info.value.errno == errno.EXDEV


def fd_path(fd: int) -> str:
    return os.readlink(f"/proc/self/fd/{fd}")


def assert_beneath(fd: int, root: str) -> None:
    p = fd_path(fd)
    assert p == root or p.startswith(root + "/"), f"fd {fd} -> {p} is outside {root}"


@pytest.fixture
def tree(tmp_path):
    tmp_target = os.path.join(tempfile.gettempdir(), f"wasijail-resolve-{uuid.uuid4().hex}")
    root, outside = build_tree(str(tmp_path), tmp_target)
    before = snapshot(outside)
    root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield Tree(root, outside, root_fd)
    finally:
        os.close(root_fd)
    created_in_tmp = os.path.lexists(tmp_target)
    if created_in_tmp:
        os.unlink(tmp_target)
    assert not created_in_tmp, f"{tmp_target} was created"
    assert snapshot(outside) == before, "something under outside/ changed"


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


# --------------------------------------------------------------------------
# the API itself


def test_escape_error_is_an_oserror():
    e = EscapeError(b"../x")
    assert isinstance(e, OSError)
    assert e.errno == errno.EXDEV
    assert e.filename == b"../x"
    assert "path escapes its preopen" in str(e)


def test_autodetect_matches_probe():
    assert isinstance(openat2_available(), bool)
    assert Resolver().use_openat2 == openat2_available()
    assert Resolver(use_openat2=False).use_openat2 is False


def test_returned_fd_is_cloexec(resolver, tree):
    fd = tree.open(resolver, b"file")
    try:
        assert not os.get_inheritable(fd)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------
# plain paths


# Paths that stay inside, plain and through links, and what they open.
INSIDE = [
    (b"file", b"inside-file"),
    (b"a/f", b"a-f"),
    (b"a/b/c/deep", b"deep"),
    (b"./a/./b/./c/deep", b"deep"),
    (b"a//b///c/deep", b"deep"),
    (b"a/../file", b"inside-file"),
    (b"a/b/../../sub/s", b"sub-s"),
    (b"a/b/c/../../f", b"a-f"),
    # symlinks that stay inside
    (b"link_file", b"inside-file"),
    (b"link_a_f", b"a-f"),
    (b"chain1/c/deep", b"deep"),
    (b"a/link_up/file", b"inside-file"),
    (b"a/link_up/a/link_up/a/f", b"a-f"),
    (b"a/b/link_root_file", b"inside-file"),
    (b"link_to_sub/s", b"sub-s"),
    (b"link_to_sub/../file", b"inside-file"),  # ".." of the target, not lexical
    (b"link_dir_slash/s", b"sub-s"),
]


@pytest.mark.parametrize("path, where", [
    (b".", "."),
    (b"./", "."),
    (b"a/", "a"),
    (b"a/b/", "a/b"),
    (b"a//", "a"),
    (b"a/.", "a"),
    (b"a/..", "."),
    (b"a/b/c/../..", "a"),
])
def test_directories(resolver, tree, path, where):
    assert tree.where(resolver, path) == where
    assert tree.where(resolver, path, os.O_RDONLY | os.O_DIRECTORY) == where


@pytest.mark.parametrize("path, err, flags", [
    (b"file/", errno.ENOTDIR, RD),
    (b"file/.", errno.ENOTDIR, RD),
    (b"file/..", errno.ENOTDIR, RD),
    (b"a/f/x", errno.ENOTDIR, RD),
    (b"file", errno.ENOTDIR, os.O_DIRECTORY),
    (b"missing", errno.ENOENT, RD),
    (b"missing/", errno.ENOENT, RD),
    (b"missing/x", errno.ENOENT, RD),
    (b"a/missing/../f", errno.ENOENT, RD),
    (b"", errno.ENOENT, RD),
    (b"a", errno.EISDIR, os.O_WRONLY),
    (b"fi\0le", errno.EINVAL, RD),
    (b"x" * 256, errno.ENAMETOOLONG, RD),
    (b"a/" * 2048, errno.ENAMETOOLONG, RD),
])
def test_plain_errors(resolver, tree, path, err, flags):
    tree.fails(resolver, path, err, flags)


# --------------------------------------------------------------------------
# escapes through ".." and absolute paths


ESCAPES = [
    b"..",                                    # depth 0
    b"../outside/secret",
    b"./../outside/secret",
    b"a/../..",                               # depth 1
    b"a/../../outside/secret",
    b"a/b/../../..",                          # depth 2
    b"a/b/../../../outside/secret",
    b"a/b/c/../../../..",                     # depth 3
    b"a/b/c/../../../../outside/dir/secret",
    b"a/b/c/../../../../root/file",           # out and back in: still refused
    b"../",
    b"/etc/passwd",
    b"/",
    b"//etc/passwd",
]


@pytest.mark.parametrize("path, err", [
    (b"missing/../../outside/secret", errno.ENOENT),  # the walk meets ENOENT first
    (b"file/../../outside/secret", errno.ENOTDIR),
    (b"self/../..", errno.ELOOP),
])
def test_errors_come_in_walk_order(resolver, tree, path, err):
    tree.fails(resolver, path, err)


# --------------------------------------------------------------------------
# symlinks




@pytest.mark.parametrize("path, content", INSIDE)
def test_reads_inside(resolver, tree, path, content):
    """Plain paths and links that stay inside, ".." and all, open what they name."""
    assert tree.read(resolver, path) == content


SYMLINKS_OUT = [
    b"link_abs",
    b"link_abs_out",
    b"link_out",
    b"chain_out",
    b"link_outdir/secret",
    b"link_outdir/",
    b"link_to_sub/../../outside/secret",
    b"a/link_up2/outside/secret",
    b"a/link_up/a/link_up2",
    b"dang_out",
    b"dang_out_abs",
    b"dang_tmp",
]


@pytest.mark.parametrize("path", ESCAPES + SYMLINKS_OUT)
def test_escapes(resolver, tree, path):
    """Plain paths that climb out, and links that lead out, whatever opens them."""
    tree.escapes(resolver, path)
    tree.escapes(resolver, path, os.O_PATH)


@pytest.mark.parametrize("path", [b"loop_a", b"loop_b", b"self", b"loop_a/x", b"self/",
                                  b"a/../self"])
def test_symlink_loops(resolver, tree, path):
    tree.fails(resolver, path, errno.ELOOP)


def test_symlink_limit_is_40(resolver, tree):
    # l1 -> l2 -> ... -> l41 -> file: from l2 that is 40 links, from l1 41.
    for i in range(1, 41):
        os.symlink(f"l{i + 1}", os.path.join(tree.root, f"l{i}"))
    os.symlink("file", os.path.join(tree.root, "l41"))
    assert tree.read(resolver, b"l2") == b"inside-file"
    tree.fails(resolver, b"l1", errno.ELOOP)


@pytest.mark.parametrize("flags, err", [
    (RD, errno.ELOOP),
    (os.O_WRONLY, errno.ELOOP),
    (os.O_RDONLY | os.O_DIRECTORY, errno.ENOTDIR),
    (WR_CREAT, errno.ELOOP),
    (WR_CREAT | os.O_EXCL, errno.EEXIST),
])
@pytest.mark.parametrize("path", [b"link_file", b"link_to_sub", b"link_out", b"dang_out"])
def test_nofollow_final_symlink(resolver, tree, path, flags, err):
    tree.fails(resolver, path, err, flags, follow=False)
    tree.fails(resolver, path, err, flags | os.O_NOFOLLOW)  # the same thing


@pytest.mark.parametrize("flags, follow", [(os.O_PATH, False),
                                           (os.O_PATH | os.O_NOFOLLOW, True)])
def test_nofollow_opath_opens_the_link_itself(resolver, tree, flags, follow):
    fd = tree.open(resolver, b"link_out", flags, follow=follow)
    try:
        assert stat.S_ISLNK(os.fstat(fd).st_mode)
        assert fd_path(fd) == os.path.join(tree.root, "link_out")
    finally:
        os.close(fd)


def test_nofollow_still_follows_intermediate_and_trailing_slash(resolver, tree):
    assert tree.read(resolver, b"link_to_sub/s", follow=False) == b"sub-s"
    assert tree.where(resolver, b"link_to_sub/", follow=False) == "sub"
    tree.escapes(resolver, b"link_outdir/", follow=False)


def test_follow_opath_follows(resolver, tree):
    assert tree.where(resolver, b"link_file") == "file"
    assert tree.where(resolver, b"chain1") == "a/b"


# --------------------------------------------------------------------------
# creation


def test_create_plain(resolver, tree):
    fd = tree.open(resolver, b"a/new", WR_CREAT, 0o640)
    try:
        os.write(fd, b"hello")
    finally:
        os.close(fd)
    assert Path(tree.root, "a/new").read_bytes() == b"hello"
    tree.fails(resolver, b"a/new", errno.EEXIST, WR_CREAT | os.O_EXCL)


@pytest.mark.parametrize("path", [b"dang_out", b"dang_out_abs", b"dang_tmp",
                                  b"link_outdir/newfile", b"../outside/newfile",
                                  b"link_to_sub/../../outside/newfile"])
@pytest.mark.parametrize("flags", [WR_CREAT, WR_CREAT | os.O_TRUNC, os.O_RDWR | os.O_CREAT])
def test_create_through_link_out_is_refused(resolver, tree, path, flags):
    tree.escapes(resolver, path, flags)  # the fixture checks outside/ is untouched


@pytest.mark.parametrize("path, created", [(b"dang_in", "newfile_in"),
                                           (b"dang_in_dir", "a/newfile_in2")])
def test_create_through_dangling_link_inside(resolver, tree, path, created):
    os.close(tree.open(resolver, path, WR_CREAT))
    assert os.path.isfile(os.path.join(tree.root, created))


def test_create_exclusive_never_follows(resolver, tree):
    tree.fails(resolver, b"dang_in", errno.EEXIST, WR_CREAT | os.O_EXCL)
    tree.fails(resolver, b"dang_out", errno.EEXIST, WR_CREAT | os.O_EXCL)
    assert not os.path.lexists(os.path.join(tree.root, "newfile_in"))


def test_create_nofollow_on_symlink(resolver, tree):
    tree.fails(resolver, b"dang_in", errno.ELOOP, WR_CREAT, follow=False)
    assert not os.path.lexists(os.path.join(tree.root, "newfile_in"))


@pytest.mark.parametrize("path, flags, err", [
    (b"new/", WR_CREAT, errno.EISDIR),          # trailing slash + O_CREAT
    (b"file/", WR_CREAT, errno.EISDIR),
    (b"a/", WR_CREAT | os.O_EXCL, errno.EISDIR),
    (b"link_outdir/", WR_CREAT, errno.EISDIR),  # not even looked up
    (b"link_dir_slash", WR_CREAT, errno.EISDIR),
    (b"a", WR_CREAT, errno.EISDIR),
    (b"a/..", WR_CREAT, errno.EISDIR),
    (b"a/..", WR_CREAT | os.O_EXCL, errno.EEXIST),
    (b".", WR_CREAT | os.O_EXCL, errno.EEXIST),
    (b"new", os.O_CREAT | os.O_DIRECTORY, errno.EINVAL),
    (b"../x", os.O_CREAT | os.O_DIRECTORY, errno.EINVAL),  # checked before the walk
    (b"missing/new", WR_CREAT, errno.ENOENT),
    (b"a", os.O_TMPFILE | os.O_RDONLY, errno.EINVAL),
])
def test_create_errors(resolver, tree, path, flags, err):
    tree.fails(resolver, path, err, flags)
    assert not os.path.lexists(os.path.join(tree.root, "new"))


def test_tmpfile(resolver, tree):
    fd = tree.open(resolver, b"link_to_sub", os.O_TMPFILE | os.O_WRONLY)
    os.close(fd)
    tree.escapes(resolver, b"link_outdir", os.O_TMPFILE | os.O_WRONLY)


def test_flags_are_normalized_like_open(resolver, tree):
    # open(2) drops what O_PATH ignores and unknown bits; openat2 alone would
    # answer EINVAL. Mode bits beyond 07777 are masked.
    os.close(tree.open(resolver, b"file", os.O_PATH | os.O_RDWR | os.O_TRUNC))
    os.close(tree.open(resolver, b"file", RD | 0x8000_0000))
    os.close(tree.open(resolver, b"a/m", WR_CREAT, 0o170644))
    assert Path(tree.root, "file").read_bytes() == b"inside-file"


# --------------------------------------------------------------------------
# magic links


def test_magic_links_are_never_followed(resolver, tmp_path):
    secret = tmp_path / "secret"
    secret.write_bytes(b"SECRET")
    secret_fd = os.open(secret, os.O_RDONLY | os.O_CLOEXEC)
    root_fd = os.open("/proc/self", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for path in (f"fd/{secret_fd}".encode(), b"cwd/.", b"root/etc/passwd"):
            with pytest.raises(OSError) as info:
                os.close(resolver.open(root_fd, path, RD))
            assert info.value.errno == errno.ELOOP
        # Not following it is fine: an O_PATH fd on the link itself.
        fd = resolver.open(root_fd, f"fd/{secret_fd}".encode(), os.O_PATH, follow=False)
        assert stat.S_ISLNK(os.fstat(fd).st_mode)
        os.close(fd)
    finally:
        os.close(root_fd)
        os.close(secret_fd)


# --------------------------------------------------------------------------
# parent()


@pytest.mark.parametrize("path, where, name", [
    (b"file", ".", b"file"),
    (b"new", ".", b"new"),
    (b"a/b/c/deep", "a/b/c", b"deep"),
    (b"a/b/c/missing", "a/b/c", b"missing"),
    (b"a/b/", "a", b"b"),
    (b"a//b//", "a", b"b"),
    (b"./a/./f", "a", b"f"),
    (b".", ".", b"."),
    (b"./", ".", b"."),
    (b"a/.", "a", b"."),
    (b"a/./", "a", b"."),
    (b"a/..", ".", b"."),
    (b"a/b/..", "a", b"."),
    (b"a/b/../", "a", b"."),
    (b"a/b/c/../..", "a", b"."),
    (b"link_to_sub", ".", b"link_to_sub"),    # the final symlink is not followed
    (b"link_out", ".", b"link_out"),
    (b"dang_out", ".", b"dang_out"),
    (b"link_outdir/", ".", b"link_outdir"),   # slash stripped, still not followed
    (b"link_to_sub/s", "sub", b"s"),
    (b"chain1/c/deep", "a/b/c", b"deep"),
    (b"link_to_sub/../a/..", ".", b"."),
    (b"a/link_up/a", ".", b"a"),
])
def test_parent(resolver, tree, path, where, name):
    fd, got = resolver.parent(tree.root_fd, path)
    try:
        assert got == name
        assert fd != tree.root_fd
        assert_beneath(fd, tree.root)
        assert os.path.relpath(fd_path(fd), tree.root) == where
        fl = fcntl.fcntl(fd, fcntl.F_GETFL)
        assert fl & os.O_PATH and not os.get_inheritable(fd)
    finally:
        os.close(fd)


@pytest.mark.parametrize("path", [b"..", b"../", b"../x", b"a/../..", b"a/b/../../../x",
                                  b"/x", b"/", b"link_outdir/secret", b"link_outdir/.",
                                  b"link_to_sub/../../x", b"a/link_up2/x", b"link_abs/x",
                                  b"a/link_up/.."])  # a/link_up is root
def test_parent_escapes(resolver, tree, path):
    with pytest.raises(EscapeError):
        resolver.parent(tree.root_fd, path)


@pytest.mark.parametrize("path, err", [
    (b"", errno.ENOENT), (b"missing/x", errno.ENOENT), (b"file/x", errno.ENOTDIR),
    (b"a\0/x", errno.EINVAL), (b"self/x", errno.ELOOP), (b"file/..", errno.ENOTDIR),
])
def test_parent_errors(resolver, tree, path, err):
    with pytest.raises(OSError) as info:
        resolver.parent(tree.root_fd, path)
    assert info.value.errno == err and not isinstance(info.value, EscapeError)


def test_parent_with_at_calls(resolver, tree):
    """The intended use: *at() calls with AT_SYMLINK_NOFOLLOW on the name."""
    fd, name = resolver.parent(tree.root_fd, b"link_to_sub/../a/newdir")
    try:
        os.mkdir(name, dir_fd=fd)
    finally:
        os.close(fd)
    assert os.path.isdir(os.path.join(tree.root, "a/newdir"))
    fd, name = resolver.parent(tree.root_fd, b"link_out")
    try:  # lstat of the link itself, never of its target
        assert stat.S_ISLNK(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode)
        os.unlink(name, dir_fd=fd)
    finally:
        os.close(fd)
    assert not os.path.lexists(os.path.join(tree.root, "link_out"))


# --------------------------------------------------------------------------
# the fallback under EAGAIN, races, fd leaks




def _eagain_forever(monkeypatch) -> list:
    """openat2 answers EAGAIN every time, as under a rename storm that never ends."""
    calls = []

    def always_eagain(*args):
        calls.append(args)
        raise OSError(errno.EAGAIN, "racing rename")

    monkeypatch.setattr(resolve, "_openat2", always_eagain)
    return calls


@pytest.mark.parametrize("path, content", INSIDE)
def test_exhausted_eagain_falls_back_to_the_walk_never_to_a_refusal(tree, monkeypatch, path, content):
    if not openat2_available():
        pytest.skip("openat2 is not available on this kernel")
    calls = _eagain_forever(monkeypatch)
    r = Resolver(use_openat2=True)
    assert tree.read(r, path) == content
    assert tree.where(r, path, os.O_PATH, follow=False) == tree.where(Resolver(use_openat2=False), path,
                                                                       os.O_PATH, follow=False)
    assert len(calls) == 2 * resolve._EAGAIN_RETRIES
    tree.escapes(r, b"link_out")  # the walk still refuses what leaves


def _renameat2_exchange():
    libc = ctypes.CDLL(None, use_errno=True)
    if not hasattr(libc, "renameat2"):
        pytest.skip("libc has no renameat2")
    fn = libc.renameat2
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                   ctypes.c_uint]

    def exchange(a: bytes, b: bytes) -> None:
        if fn(-100, a, -100, b, 2) != 0:  # AT_FDCWD, RENAME_EXCHANGE
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
    return exchange


def _walking(resolver: Resolver, monkeypatch) -> Resolver:
    """The resolver, forced onto the walk (openat2 exhausting its retries)."""
    if resolver.use_openat2:
        _eagain_forever(monkeypatch)
    return resolver


def _swap_when_an_open_fails(monkeypatch, name: bytes, a: str, b: str) -> list:
    """Exchange a and b right after the first failed open of `name`: a rename
    landing between the walk's open of a name and its second look at it."""
    exchange = _renameat2_exchange()
    real_open = os.open
    swapped = []

    def open_then_swap(path, flags, *args, **kw):
        try:
            return real_open(path, flags, *args, **kw)
        except OSError:
            if path == name and not swapped:
                exchange(a.encode(), b.encode())
                swapped.append(flags)
            raise

    monkeypatch.setattr(resolve.os, "open", open_then_swap)
    return swapped


def test_walk_enters_a_symlink_swapped_for_a_directory_mid_step(resolver, tree, monkeypatch):
    """d is a symlink when the walk steps into it and a directory when it looks
    again: the walk enters what is there, instead of failing with ENOTDIR."""
    os.mkdir(os.path.join(tree.root, "real"))
    Path(tree.root, "real", "secret").write_bytes(b"via-link")
    os.symlink("real", os.path.join(tree.root, "d"))
    os.mkdir(os.path.join(tree.root, "d_dir"))
    Path(tree.root, "d_dir", "secret").write_bytes(b"via-dir")
    r = _walking(resolver, monkeypatch)
    swapped = _swap_when_an_open_fails(monkeypatch, b"d", os.path.join(tree.root, "d"),
                                       os.path.join(tree.root, "d_dir"))
    assert tree.read(r, b"d/secret") == b"via-dir"
    assert swapped


@pytest.mark.parametrize("flags", [RD, os.O_RDONLY | os.O_DIRECTORY], ids=["file", "directory"])
def test_walk_opens_a_symlink_swapped_for_the_real_thing_at_the_last_name(resolver, tree, monkeypatch,
                                                                          flags):
    """The last name is a symlink when opened with O_NOFOLLOW and the real
    thing when looked at again: the walk opens it again instead of failing."""
    is_dir = bool(flags & os.O_DIRECTORY)
    os.symlink("sub" if is_dir else "file", os.path.join(tree.root, "f"))
    if is_dir:
        os.mkdir(os.path.join(tree.root, "f_real"))
    else:
        Path(tree.root, "f_real").write_bytes(b"plain")
    r = _walking(resolver, monkeypatch)
    swapped = _swap_when_an_open_fails(monkeypatch, b"f", os.path.join(tree.root, "f"),
                                       os.path.join(tree.root, "f_real"))
    fd = tree.open(r, b"f", flags)
    try:
        if is_dir:
            assert os.listdir(fd) == []
        else:
            assert os.read(fd, 100) == b"plain"
    finally:
        os.close(fd)
    assert swapped


def _flip_while(exchange, a: str, b: str, opens: int, attempt) -> dict:
    """Exchange a and b in a loop on another thread while `attempt()` runs `opens` times."""
    stop = threading.Event()

    def flipper():
        while not stop.is_set():
            exchange(a.encode(), b.encode())

    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    thread = threading.Thread(target=flipper)
    thread.start()
    outcomes: dict = {}
    try:
        for _ in range(opens):
            outcome = attempt()
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
    finally:
        stop.set()
        thread.join()
        sys.setswitchinterval(old_interval)
    return outcomes


def test_race_dir_swapped_for_symlink(resolver, tree):
    """root/d flips between a real directory and a symlink to ../outside while
    we open d/secret: each open gets the inside secret or is refused as an
    escape (what d was at that moment), never the outside one, never another error."""
    exchange = _renameat2_exchange()
    d, other = os.path.join(tree.root, "d"), os.path.join(tree.root, "d_other")
    os.mkdir(d)
    Path(d, "secret").write_bytes(b"inside")
    os.symlink("../outside", other)

    def attempt():
        try:
            fd = resolver.open(tree.root_fd, b"d/secret", RD)
        except EscapeError:
            return "escape"
        except OSError as e:
            return errno.errorcode[e.errno]
        try:
            assert_beneath(fd, tree.root)
            return os.read(fd, 100).decode()
        finally:
            os.close(fd)

    outcomes = _flip_while(exchange, d, other, 2000, attempt)
    assert set(outcomes) <= {"inside", "escape"}, outcomes


@pytest.mark.parametrize("path", [b"d/secret", b"sub/../d/secret", b"d/../d/secret"])
def test_legitimate_opens_never_fail_under_a_rename_storm(resolver, tree, path):
    """Liveness: root/d flips between a directory and a symlink that stays inside
    (through a "..", where openat2 answers EAGAIN while renames are in flight):
    every one of the opens succeeds, under openat2 (retries, then the walk) and
    the walk alike."""
    exchange = _renameat2_exchange()
    d, other = os.path.join(tree.root, "d"), os.path.join(tree.root, "d_other")
    os.makedirs(os.path.join(tree.root, "twin"))
    Path(tree.root, "twin", "secret").write_bytes(b"inside")
    os.mkdir(d)
    Path(d, "secret").write_bytes(b"inside")
    os.symlink("a/../twin", other)

    def attempt():
        try:
            fd = resolver.open(tree.root_fd, path, RD)
        except OSError as e:
            return f"{type(e).__name__} {errno.errorcode.get(e.errno)}"
        try:
            assert_beneath(fd, tree.root)
            return os.read(fd, 100).decode()
        finally:
            os.close(fd)

    assert _flip_while(exchange, d, other, 1000, attempt) == {"inside": 1000}


def test_no_fd_leaks(tree):
    resolvers = [Resolver(use_openat2=False)]
    if openat2_available():
        resolvers.append(Resolver(use_openat2=True))
    paths = [b"file", b"a/b/c/deep", b"chain1/c/deep", b"link_to_sub/../a/f", b"a/",
             b"missing/x", b"link_out", b"loop_a", b"a/b/c/../../../..", b"file/x",
             b"dang_out", b"link_to_sub/../../outside/secret", b"/x", b"", b"self/x"]
    # Warm up anything that allocates an fd once (the probe, libc handles).
    for r in resolvers:
        for p in paths:
            try:
                os.close(r.open(tree.root_fd, p, os.O_PATH))
            except OSError:
                pass
    before = open_fds()
    for _ in range(20):
        for r in resolvers:
            for p in paths:
                for call in (lambda: r.open(tree.root_fd, p, RD),
                             lambda: r.open(tree.root_fd, p, os.O_PATH, follow=False),
                             lambda: r.open(tree.root_fd, p, WR_CREAT | os.O_EXCL),
                             lambda: r.parent(tree.root_fd, p)[0]):
                    try:
                        os.close(call())
                    except OSError:
                        pass
    assert open_fds() == before


# --------------------------------------------------------------------------
# property: random paths never escape, and both implementations agree

COMPONENTS = [b"a", b"b", b"..", b".", b"link_out", b"link_in", b"loop", b"",
              b"new", b"dang"]
FLAG_CHOICES = [
    (RD, True), (RD, False), (os.O_PATH, True), (os.O_PATH, False),
    (os.O_DIRECTORY, True), (os.O_DIRECTORY, False), (os.O_WRONLY, True),
    (WR_CREAT, True), (WR_CREAT, False), (WR_CREAT | os.O_EXCL, True),
    (os.O_RDWR | os.O_TRUNC, True), (os.O_TMPFILE | os.O_WRONLY, True),
]


def build_property_tree(base: str) -> tuple[str, str]:
    base = os.path.realpath(base)
    root, outside = os.path.join(base, "root"), os.path.join(base, "outside")
    os.makedirs(os.path.join(root, "a/a"))
    os.makedirs(outside)
    Path(outside, "secret").write_bytes(b"SECRET")
    Path(root, "b").write_bytes(b"b")
    Path(root, "a/b").write_bytes(b"a/b")
    for rel, target in {
        "link_in": "a", "link_out": "../outside", "loop": "loop", "dang": "new",
        "a/link_in": "../a/a", "a/link_out": "../../outside/secret", "a/loop": "../loop",
        "a/dang": "../../outside/new", "a/a/link_in": "..", "a/a/dang": "/tmp/x",
    }.items():
        os.symlink(target, os.path.join(root, rel))
    return root, outside


def outcome(r: Resolver, base: str, path: bytes, flags: int, follow: bool):
    """Run one open in a fresh tree: (result, tree afterwards)."""
    root, outside = build_property_tree(base)
    before = snapshot(outside)
    root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            fd = r.open(root_fd, path, flags, 0o644, follow=follow)
        except EscapeError:
            result = ("escape",)
        except OSError as e:
            result = ("error", errno.errorcode.get(e.errno, e.errno))
        else:
            try:
                assert_beneath(fd, root)
                real = fd_path(fd)
                kind = stat.S_IFMT(os.fstat(fd).st_mode)
                if flags & os.O_TMPFILE == os.O_TMPFILE:  # "dir/#123 (deleted)"
                    real = os.path.dirname(real)
                result = ("ok", os.path.relpath(real, root), kind)
            finally:
                os.close(fd)
        pr = parent_outcome(r, root_fd, path)
    finally:
        os.close(root_fd)
    assert snapshot(outside) == before
    return result, pr, snapshot(root)


def parent_outcome(r: Resolver, root_fd: int, path: bytes):
    try:
        fd, name = r.parent(root_fd, path)
    except EscapeError:
        return ("escape",)
    except OSError as e:
        return ("error", errno.errorcode.get(e.errno, e.errno))
    try:
        return ("ok", fd_path(fd), name)
    finally:
        os.close(fd)


@settings(max_examples=600, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(parts=st.lists(st.sampled_from(COMPONENTS), min_size=1, max_size=8),
       flags_follow=st.sampled_from(FLAG_CHOICES))
def test_property_never_escapes_and_implementations_agree(parts, flags_follow):
    path = b"/".join(parts)
    flags, follow = flags_follow
    impls = [Resolver(use_openat2=False)]
    if openat2_available():
        impls.insert(0, Resolver(use_openat2=True))
    results = []
    for r in impls:
        base = tempfile.mkdtemp(prefix="wasijail-resolve-")
        try:
            res, pres, after = outcome(r, base, path, flags, follow)
            # parent() answers in paths under this base: make them comparable
            if pres[0] == "ok":
                pres = ("ok", os.path.relpath(pres[1], os.path.realpath(base)), pres[2])
            results.append((res, pres, after))
        finally:
            shutil.rmtree(base)
    assert all(x == results[0] for x in results), (path, flags, follow, results)
