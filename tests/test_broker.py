"""The broker's handlers, driven directly and through the supervisor, under both resolvers.

The child is not trusted: these tests send requests an honest child would
never send (write rights on a read-only preopen, unknown handles) and check
that the broker alone refuses them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from wasijail import protocol
from wasijail.broker.handlers import Broker
from wasijail.policy import Policy
from wasijail.supervisor import RunSpec, open_supervisor
from wasijail.wasi import DIRENT, Errno, Fdflags, Filetype, Oflags, Rights

from helpers import program

READ = int(Rights.FD_READ | Rights.FD_SEEK)
WRITE = int(Rights.FD_WRITE)


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "file.txt").write_text("inside\n")
    (tmp_path / "outside.txt").write_text("secret\n")
    return root


def make_broker(root: Path, resolver, readonly=False, **kw) -> Broker:
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    return Broker([(fd, readonly)], resolver=resolver, **kw)


def test_open_donates_file_with_the_right_mode(tree, resolver):
    broker = make_broker(tree, resolver)
    reply, fds = broker.dispatch(protocol.PathOpen(0, 1, 0, 0, READ, 0, b"file.txt"))
    assert (reply.errno, reply.kind, reply.filetype) == (0, protocol.FileKind.DONATED, Filetype.REGULAR_FILE)
    (fd,) = fds
    assert os.read(fd, 100) == b"inside\n"
    with pytest.raises(OSError):
        os.write(fd, b"x")  # opened O_RDONLY: the kernel enforces it
    os.close(fd)
    broker.close()


def test_open_directory_gives_a_handle_and_readdir_lists_it(tree, resolver):
    broker = make_broker(tree, resolver)
    reply, fds = broker.dispatch(protocol.PathOpen(0, 1, int(Oflags.DIRECTORY), 0, READ, 0, b"sub"))
    assert (reply.errno, reply.kind, fds) == (0, protocol.FileKind.DIRECTORY, [])
    (tree / "sub" / "a").write_text("")
    listing, _ = broker.dispatch(protocol.FdReaddir(reply.handle, 0, 4096))
    names = _dirent_names(listing.data)
    assert names == [b".", b"..", b"a"]
    broker.close()


def _dirent_names(data: bytes) -> list[bytes]:
    names, offset = [], 0
    while offset + DIRENT.size <= len(data):
        _, _, namlen, _ = DIRENT.unpack_from(data, offset)
        names.append(data[offset + DIRENT.size: offset + DIRENT.size + namlen])
        offset += DIRENT.size + namlen
    return names


def test_readdir_cookies_and_partial_last_entry(tree, resolver):
    for i in range(20):
        (tree / "sub" / f"entry{i:02}").write_text("")
    broker = make_broker(tree / "sub", resolver)
    full, _ = broker.dispatch(protocol.FdReaddir(0, 0, protocol.READDIR_CHUNK))
    names = _dirent_names(full.data)
    assert sorted(names) == sorted([b".", b".."] + [f"entry{i:02}".encode() for i in range(20)])
    # Resume after the third entry: the cookie is an index into the same listing.
    rest, _ = broker.dispatch(protocol.FdReaddir(0, 3, protocol.READDIR_CHUNK))
    assert _dirent_names(rest.data) == names[3:]
    # A short buffer gets exactly its size, the last entry cut off.
    short, _ = broker.dispatch(protocol.FdReaddir(0, 0, 40))
    assert short.data == full.data[:40]
    # A cookie past the end: nothing.
    past, _ = broker.dispatch(protocol.FdReaddir(0, 1000, 4096))
    assert (past.errno, past.data) == (0, b"")
    broker.close()


@pytest.mark.parametrize("request_", [
    protocol.PathOpen(0, 1, 0, 0, WRITE, 0, b"file.txt"),
    protocol.PathOpen(0, 1, int(Oflags.CREAT), 0, READ, 0, b"new.txt"),
    protocol.PathOpen(0, 1, int(Oflags.TRUNC), 0, READ, 0, b"file.txt"),
    protocol.PathCreateDirectory(0, b"d"),
    protocol.PathRemoveDirectory(0, b"sub"),
    protocol.PathUnlinkFile(0, b"file.txt"),
    protocol.PathRename(0, 0, b"file.txt", b"moved.txt"),
    protocol.PathLink(0, 0, 0, b"file.txt", b"hard.txt"),
    protocol.PathSymlink(0, b"file.txt", b"sym"),
    protocol.PathFilestatSetTimes(0, 0, 1, 1, 1 | 4, b"file.txt"),
    protocol.DirFilestatSetTimes(0, 1, 1, 1 | 4),
], ids=lambda r: type(r).__name__)
def test_read_only_preopen_refuses_mutation_whatever_the_child_claims(tree, resolver, request_):
    before = _snapshot(tree)
    broker = make_broker(tree, resolver, readonly=True)
    reply, fds = broker.dispatch(request_)
    assert reply.errno == Errno.PERM and fds == []
    assert _snapshot(tree) == before
    broker.close()


def _snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): (p.is_dir(), p.read_bytes() if p.is_file() else None,
                                       p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("path", [b"../outside.txt", b"/etc/passwd", b"sub/../../outside.txt"])
def test_escapes_are_enotcapable(tree, resolver, path):
    broker = make_broker(tree, resolver)
    for request_ in (protocol.PathOpen(0, 1, 0, 0, READ, 0, path), protocol.PathFilestatGet(0, 1, path),
                     protocol.PathUnlinkFile(0, path), protocol.PathReadlink(0, path)):
        reply, fds = broker.dispatch(request_)
        assert reply.errno == Errno.NOTCAPABLE and fds == [], type(request_).__name__
    assert (tree.parent / "outside.txt").read_text() == "secret\n"
    broker.close()


def test_unknown_handle_is_ebadf(tree, resolver):
    broker = make_broker(tree, resolver)
    reply, _ = broker.dispatch(protocol.PathOpen(7, 1, 0, 0, READ, 0, b"file.txt"))
    assert reply.errno == Errno.BADF
    reply, _ = broker.dispatch(protocol.DirClose(7))
    assert reply.errno == Errno.BADF
    broker.close()


def test_handle_count_is_bounded(tree, resolver):
    broker = make_broker(tree, resolver, max_handles=3)
    errnos = [broker.dispatch(protocol.PathOpen(0, 1, int(Oflags.DIRECTORY), 0, READ, 0, b"sub"))[0].errno
              for _ in range(4)]
    assert errnos == [0, 0, Errno.MFILE, Errno.MFILE]
    broker.close()


def test_absolute_symlink_target_is_refused(tree, resolver):
    broker = make_broker(tree, resolver)
    reply, _ = broker.dispatch(protocol.PathSymlink(0, b"/etc/passwd", b"link"))
    assert reply.errno == Errno.PERM
    assert not (tree / "link").is_symlink()
    broker.close()


def test_fifo_never_blocks_the_broker(tree, resolver):
    os.mkfifo(tree / "fifo")
    broker = make_broker(tree, resolver)
    reply, fds = broker.dispatch(protocol.PathOpen(0, 1, 0, 0, READ, 0, b"fifo"))
    assert reply.errno == 0  # opened without a writer, instead of hanging
    for fd in fds:
        os.close(fd)
    reply, fds = broker.dispatch(protocol.PathOpen(0, 1, 0, int(Fdflags.APPEND), WRITE, 0, b"fifo"))
    assert reply.errno == Errno.NXIO and fds == []
    broker.close()


def test_no_fd_leaks_in_the_parent(tree, resolver):
    before = len(os.listdir("/proc/self/fd"))
    broker = make_broker(tree, resolver)
    for _ in range(50):
        for request_ in (protocol.PathFilestatGet(0, 1, b"file.txt"), protocol.PathFilestatGet(0, 1, b"../x"),
                         protocol.PathReadlink(0, b"file.txt"), protocol.FdReaddir(0, 0, 100)):
            broker.dispatch(request_)
        reply, fds = broker.dispatch(protocol.PathOpen(0, 1, 0, 0, READ, 0, b"file.txt"))
        for fd in fds:
            os.close(fd)
    broker.close()
    assert len(os.listdir("/proc/self/fd")) == before


# --- through the supervisor, with the resolver forced ------------------------------


async def test_tutorial_copy_through_supervisor(tmp_path, resolver):
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    (src / "in.txt").write_bytes(b"data" * 5000)
    policy = Policy().with_preopen(src, "/in").with_preopen(dst, "/out")
    async with open_supervisor(resolver=resolver) as supervisor:
        result = await supervisor.run_spec(RunSpec(program("demo.wasm"), ("/in/in.txt", "/out/copy.txt"), policy))
    assert result.returncode == 0
    assert (dst / "copy.txt").read_bytes() == b"data" * 5000
    assert result.usage.brokered_calls >= 2


async def test_escape_through_supervisor(tmp_path, resolver):
    box = tmp_path / "box"
    box.mkdir()
    (box / "link").symlink_to("../secret.txt")
    (tmp_path / "secret.txt").write_text("secret\n")
    policy = Policy().with_preopen(box, "/box")
    async with open_supervisor(resolver=resolver) as supervisor:
        for target in ("/box/link", "/box/../secret.txt"):
            with open(os.devnull, "wb") as null:
                result = await supervisor.run_spec(
                    RunSpec(program("openpath.wasm"), (target, "r"), policy), stdout=null.fileno())
            assert result.returncode == 1
