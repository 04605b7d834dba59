"""The broker's WASI semantics, driven directly with requests, under both resolvers.

What `test_wasi_conformance.py` shows through a module, shown here at the
broker, including requests no honest child would send: a trailing slash
names a directory to act in (as wasmtime does) but never one outside the
preopen, and a symlink's own times are set without ever following it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from wasijail.protocol import broker as wire
from wasijail.broker.handlers import Broker
from wasijail.wasi import Errno, Fstflags, Lookupflags, Oflags, Rights

from helpers import broker_tree

READ = int(Rights.FD_READ)
FOLLOW = int(Lookupflags.SYMLINK_FOLLOW)
BOTH = int(Fstflags.ATIM | Fstflags.MTIM)
T1, T2 = 1_234_567_890_123_456_789, 1_111_111_111_222_222_222


@pytest.fixture
def tree(tmp_path):
    root = broker_tree(tmp_path)
    (root / "dirlink").symlink_to("sub")
    (root / "up").symlink_to("..")
    (root / "link_out").symlink_to("../outside.txt")
    os.utime(tmp_path / "outside.txt", ns=(T2, T2))
    return root


@pytest.fixture
def broker(tree, resolver):
    broker = Broker([(os.open(tree, os.O_RDONLY | os.O_DIRECTORY), False)], resolver=resolver)
    yield broker
    broker.close()


def errno_of(broker: Broker, request: wire.Message) -> int:
    answer = broker.dispatch(request)
    for fd in answer.fds:
        os.close(fd)
    return answer.errno


def outside_untouched(tree: Path) -> bool:
    outside = tree.parent / "outside.txt"
    st = outside.stat()
    return (outside.read_text(), st.st_mtime_ns, sorted(p.name for p in tree.parent.iterdir())) == (
        "secret\n", T2, ["outside.txt", "root"])


@pytest.mark.parametrize("request_,errno", [
    (wire.PathRemoveDirectory(0, b"sub/"), Errno.INVAL),  # rmdir of the directory's "."
    (wire.PathRemoveDirectory(0, b"dirlink/"), Errno.INVAL),
    (wire.PathUnlinkFile(0, b"sub/"), Errno.ISDIR),
    (wire.PathUnlinkFile(0, b"file.txt/"), Errno.NOTDIR),
    (wire.PathUnlinkFile(0, b"missing/"), Errno.NOENT),
    (wire.PathSymlink(0, b"file.txt", b"sub/"), Errno.EXIST),
    (wire.PathSymlink(0, b"file.txt", b"new/"), Errno.NOENT),
    (wire.PathReadlink(0, b"dirlink/"), Errno.INVAL),
    (wire.PathLink(0, 0, 0, b"file.txt", b"sub/"), Errno.EXIST),
    (wire.PathLink(0, 0, 0, b"file.txt/", b"x"), Errno.NOTDIR),
], ids=lambda v: v if isinstance(v, Errno) else f"{type(v).__name__}")
def test_trailing_slash_acts_in_the_directory(tree, broker, request_, errno):
    before = sorted(p.name for p in tree.rglob("*"))
    assert errno_of(broker, request_) == errno
    assert sorted(p.name for p in tree.rglob("*")) == before


@pytest.mark.parametrize("request_", [
    wire.PathRemoveDirectory(0, b"up/"),
    wire.PathRemoveDirectory(0, b"../"),
    wire.PathUnlinkFile(0, b"up/"),
    wire.PathSymlink(0, b"file.txt", b"up/"),
    wire.PathReadlink(0, b"up/"),
    wire.PathLink(0, 0, 0, b"file.txt", b"up/"),
    wire.PathLink(0, 0, 0, b"up/", b"x"),
    wire.PathFilestatSetTimes(0, FOLLOW, T1, T1, BOTH, b"link_out"),
    wire.PathFilestatSetTimes(0, 0, T1, T1, BOTH, b"up/outside.txt"),
], ids=lambda r: type(r).__name__)
def test_a_trailing_slash_or_a_followed_link_never_leaves(tree, broker, request_):
    assert errno_of(broker, request_) == Errno.NOTCAPABLE
    assert outside_untouched(tree)


def test_symlink_times_set_on_the_link_itself(tree, broker):
    assert errno_of(broker, wire.PathFilestatSetTimes(0, 0, T1, T1 + 1, BOTH, b"link_out")) == 0
    st = os.stat(tree / "link_out", follow_symlinks=False)
    assert (st.st_atime_ns, st.st_mtime_ns) == (T1, T1 + 1)
    assert outside_untouched(tree)
    # Only mtime asked for: atime stays.
    assert errno_of(broker, wire.PathFilestatSetTimes(0, 0, 0, T2, int(Fstflags.MTIM), b"link_out")) == 0
    st = os.stat(tree / "link_out", follow_symlinks=False)
    assert (st.st_atime_ns, st.st_mtime_ns) == (T1, T2)
    # ATIM with ATIM_NOW is refused before anything changes.
    bad = int(Fstflags.ATIM | Fstflags.ATIM_NOW)
    assert errno_of(broker, wire.PathFilestatSetTimes(0, 0, 5, 5, bad, b"link_out")) == Errno.INVAL
    assert os.stat(tree / "link_out", follow_symlinks=False).st_atime_ns == T1


def test_symlink_times_refused_under_a_read_only_preopen(tree, resolver):
    broker = Broker([(os.open(tree, os.O_RDONLY | os.O_DIRECTORY), True)], resolver=resolver)
    before = os.stat(tree / "link_out", follow_symlinks=False).st_mtime_ns
    assert errno_of(broker, wire.PathFilestatSetTimes(0, 0, T1, T1, BOTH, b"link_out")) == Errno.PERM
    assert os.stat(tree / "link_out", follow_symlinks=False).st_mtime_ns == before
    broker.close()


@pytest.mark.parametrize("path", [b"dirlink", b"link_out", b"up"])
def test_unfollowed_symlink_opened_as_directory_is_eloop(tree, broker, path):
    request_ = wire.PathOpen(0, 0, int(Oflags.DIRECTORY), 0, READ, 0, path)
    assert errno_of(broker, request_) == Errno.LOOP
    assert outside_untouched(tree)


def test_followed_directory_symlink_opens(broker):
    reply = broker.dispatch(wire.PathOpen(0, FOLLOW, int(Oflags.DIRECTORY), 0, READ, 0, b"dirlink"))
    assert (reply.errno, reply.body.kind, reply.fds) == (0, wire.FileKind.DIRECTORY, ())


@pytest.mark.parametrize("stamp", [2**63 - 1, 2**63, 2**64 - 1])
def test_huge_timestamps_never_break_the_broker(tree, broker, stamp):
    for request_ in (wire.PathFilestatSetTimes(0, 0, stamp, stamp, BOTH, b"file.txt"),
                     wire.PathFilestatSetTimes(0, 0, stamp, stamp, BOTH, b"link_out"),
                     wire.DirFilestatSetTimes(0, stamp, stamp, BOTH)):
        assert errno_of(broker, request_) in (0, Errno.INVAL, Errno.OVERFLOW)
    assert outside_untouched(tree)
    assert errno_of(broker, wire.PathFilestatGet(0, 0, b"file.txt")) == 0
