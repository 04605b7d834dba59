"""The broker's handlers, driven directly and through the supervisor, under both resolvers.

The child is not trusted: these tests send requests an honest child would
never send (write rights on a read-only preopen, unknown handles) and check
that the broker alone refuses them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from wasijail.protocol import broker as wire
from wasijail.broker.handlers import Broker
from wasijail.policy import Policy
from wasijail.supervisor import RunSpec, open_supervisor
from wasijail.wasi import DIRENT, Errno, Fdflags, Filetype, Oflags, Rights

from helpers import broker_tree, links_leading_out, program

READ = int(Rights.FD_READ | Rights.FD_SEEK)
WRITE = int(Rights.FD_WRITE)


@pytest.fixture
def tree(tmp_path):
    return broker_tree(tmp_path)


def make_broker(root: Path, resolver, readonly=False, **kw) -> Broker:
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    return Broker([(fd, readonly)], resolver=resolver, **kw)


def test_open_donates_file_with_the_right_mode(tree, resolver):
    broker = make_broker(tree, resolver)
    reply = broker.dispatch(wire.PathOpen(0, 1, 0, 0, READ, 0, b"file.txt"))
    assert (reply.errno, reply.body.kind, reply.body.filetype) == (0, wire.FileKind.DONATED, Filetype.REGULAR_FILE)
    (fd,) = reply.fds
    assert os.read(fd, 100) == b"inside\n"
    with pytest.raises(OSError):
        os.write(fd, b"x")  # opened O_RDONLY: the kernel enforces it
    os.close(fd)
    broker.close()


def test_open_directory_gives_a_handle_and_readdir_lists_it(tree, resolver):
    broker = make_broker(tree, resolver)
    reply = broker.dispatch(wire.PathOpen(0, 1, int(Oflags.DIRECTORY), 0, READ, 0, b"sub"))
    assert (reply.errno, reply.body.kind, reply.fds) == (0, wire.FileKind.DIRECTORY, ())
    (tree / "sub" / "a").write_text("")
    listing = broker.dispatch(wire.FdReaddir(reply.body.handle, 0, 4096))
    names = _dirent_names(listing.body.data)
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
    full = broker.dispatch(wire.FdReaddir(0, 0, wire.READDIR_CHUNK))
    names = _dirent_names(full.body.data)
    assert sorted(names) == sorted([b".", b".."] + [f"entry{i:02}".encode() for i in range(20)])
    # Resume after the third entry: the cookie is an index into the same listing.
    rest = broker.dispatch(wire.FdReaddir(0, 3, wire.READDIR_CHUNK))
    assert _dirent_names(rest.body.data) == names[3:]
    # A short buffer gets exactly its size, the last entry cut off.
    short = broker.dispatch(wire.FdReaddir(0, 0, 40))
    assert short.body.data == full.body.data[:40]
    # A cookie past the end: nothing.
    past = broker.dispatch(wire.FdReaddir(0, 1000, 4096))
    assert (past.errno, past.body.data) == (0, b"")
    broker.close()


@pytest.mark.parametrize("request_", [
    wire.PathOpen(0, 1, 0, 0, WRITE, 0, b"file.txt"),
    wire.PathOpen(0, 1, int(Oflags.CREAT), 0, READ, 0, b"new.txt"),
    wire.PathOpen(0, 1, int(Oflags.TRUNC), 0, READ, 0, b"file.txt"),
    wire.PathCreateDirectory(0, b"d"),
    wire.PathRemoveDirectory(0, b"sub"),
    wire.PathUnlinkFile(0, b"file.txt"),
    wire.PathRename(0, 0, b"file.txt", b"moved.txt"),
    wire.PathLink(0, 0, 0, b"file.txt", b"hard.txt"),
    wire.PathSymlink(0, b"file.txt", b"sym"),
    wire.PathFilestatSetTimes(0, 0, 1, 1, 1 | 4, b"file.txt"),
    wire.DirFilestatSetTimes(0, 1, 1, 1 | 4),
], ids=lambda r: type(r).__name__)
def test_read_only_preopen_refuses_mutation_whatever_the_child_claims(tree, resolver, request_):
    before = _snapshot(tree)
    broker = make_broker(tree, resolver, readonly=True)
    reply = broker.dispatch(request_)
    assert reply.errno == Errno.PERM and reply.fds == ()
    assert _snapshot(tree) == before
    broker.close()


def _snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): (p.is_dir(), p.read_bytes() if p.is_file() else None,
                                       p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("path", [b"../outside.txt", b"/etc/passwd", b"sub/../../outside.txt"])
def test_escapes_are_enotcapable(tree, resolver, path):
    broker = make_broker(tree, resolver)
    for request_ in (wire.PathOpen(0, 1, 0, 0, READ, 0, path), wire.PathFilestatGet(0, 1, path),
                     wire.PathUnlinkFile(0, path), wire.PathReadlink(0, path)):
        reply = broker.dispatch(request_)
        assert reply.errno == Errno.NOTCAPABLE and reply.fds == (), type(request_).__name__
    assert (tree.parent / "outside.txt").read_text() == "secret\n"
    broker.close()


def test_stat_of_a_plain_name_follows_no_link_out(tree, resolver):
    # A name right under the root is lstat'ed there in one call (no resolution); a link
    # there is followed only through the confined resolution, which refuses one leading out.
    (tree / "out").symlink_to(tree.parent / "outside.txt")
    (tree / "in").symlink_to("file.txt")
    broker = make_broker(tree, resolver)
    answers = {(name, follow): broker.dispatch(wire.PathFilestatGet(0, follow, name))
               for name, follow in ((b"out", 0), (b"out", 1), (b"in", 0), (b"in", 1), (b"file.txt", 0))}
    broker.close()
    assert answers[b"out", 1].errno == Errno.NOTCAPABLE  # followed out: refused, not stat'ed
    kinds = {key: (answer.errno, answer.body.filetype, answer.body.ino)
             for key, answer in answers.items() if key != (b"out", 1)}
    file_ino = (tree / "file.txt").stat().st_ino
    assert kinds == {
        (b"out", 0): (0, Filetype.SYMBOLIC_LINK, (tree / "out").lstat().st_ino),  # the link itself
        (b"in", 0): (0, Filetype.SYMBOLIC_LINK, (tree / "in").lstat().st_ino),
        (b"in", 1): (0, Filetype.REGULAR_FILE, file_ino),  # followed, inside
        (b"file.txt", 0): (0, Filetype.REGULAR_FILE, file_ino),
    }


def test_unknown_handle_is_ebadf(tree, resolver):
    broker = make_broker(tree, resolver)
    reply = broker.dispatch(wire.PathOpen(7, 1, 0, 0, READ, 0, b"file.txt"))
    assert reply.errno == Errno.BADF
    reply = broker.dispatch(wire.DirClose(7))
    assert reply.errno == Errno.BADF
    broker.close()


def test_handle_count_is_bounded(tree, resolver):
    broker = make_broker(tree, resolver, max_handles=3)
    errnos = [broker.dispatch(wire.PathOpen(0, 1, int(Oflags.DIRECTORY), 0, READ, 0, b"sub")).errno
              for _ in range(4)]
    assert errnos == [0, 0, Errno.MFILE, Errno.MFILE]
    broker.close()


def test_absolute_symlink_target_is_refused(tree, resolver):
    broker = make_broker(tree, resolver)
    reply = broker.dispatch(wire.PathSymlink(0, b"/etc/passwd", b"link"))
    assert reply.errno == Errno.PERM
    assert not (tree / "link").is_symlink()
    broker.close()


def test_fifo_never_blocks_the_broker(tree, resolver):
    os.mkfifo(tree / "fifo")
    broker = make_broker(tree, resolver)
    reply = broker.dispatch(wire.PathOpen(0, 1, 0, 0, READ, 0, b"fifo"))
    assert reply.errno == 0  # opened without a writer, instead of hanging
    for fd in reply.fds:
        os.close(fd)
    reply = broker.dispatch(wire.PathOpen(0, 1, 0, int(Fdflags.APPEND), WRITE, 0, b"fifo"))
    assert reply.errno == Errno.NXIO and reply.fds == ()
    broker.close()


def test_no_fd_leaks_in_the_parent(tree, resolver):
    before = len(os.listdir("/proc/self/fd"))
    broker = make_broker(tree, resolver)
    for _ in range(50):
        for request_ in (wire.PathFilestatGet(0, 1, b"file.txt"), wire.PathFilestatGet(0, 1, b"../x"),
                         wire.PathReadlink(0, b"file.txt"), wire.FdReaddir(0, 0, 100)):
            broker.dispatch(request_)
        reply = broker.dispatch(wire.PathOpen(0, 1, 0, 0, READ, 0, b"file.txt"))
        for fd in reply.fds:
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


# --- read-only grants stay read-only across link and rename -------------------------
# Rights belong to the handle: the source of a link and both sides of a rename
# need a writable one, whatever the child claims and whatever else reaches the inode.


@pytest.fixture
def grants(tmp_path):
    """ro/ granted read-only, ro/rw/ (inside it) and elsewhere/ granted writable."""
    ro = tmp_path / "ro"
    (ro / "rw").mkdir(parents=True)
    (ro / "sub" / "deeper").mkdir(parents=True)
    (ro / "file.txt").write_text("original\n")
    (ro / "sub" / "inner.txt").write_text("inner\n")
    (ro / "flink").symlink_to("file.txt")
    (ro / "rw" / "own.txt").write_text("own\n")
    (tmp_path / "elsewhere").mkdir()
    return tmp_path


def _grant_broker(grants: Path, resolver) -> Broker:
    """Handle 0: ro/ read-only; 1: ro/rw/ writable (nested in 0); 2: elsewhere/ writable."""
    return Broker([(os.open(grants / "ro", os.O_RDONLY | os.O_DIRECTORY), True),
                   (os.open(grants / "ro" / "rw", os.O_RDONLY | os.O_DIRECTORY), False),
                   (os.open(grants / "elsewhere", os.O_RDONLY | os.O_DIRECTORY), False)],
                  resolver=resolver)


def _open_dir(broker: Broker, handle: int, path: bytes) -> int:
    reply = broker.dispatch(wire.PathOpen(handle, 1, int(Oflags.DIRECTORY), 0, READ, 0, path))
    assert reply.errno == 0 and reply.body.kind == wire.FileKind.DIRECTORY
    return reply.body.handle


_FOLLOW = 1  # Lookupflags.SYMLINK_FOLLOW


@pytest.mark.parametrize("source, follow", [
    ((0, b"file.txt"), 0),
    ((0, b"file.txt"), _FOLLOW),
    ((0, b"flink"), _FOLLOW),  # the symlink followed: its target, under the read-only grant
    ((0, b"flink"), 0),  # the symlink itself
    ((0, b"sub/inner.txt"), 0),
    ((0, b"sub"), 0),  # a directory
    ((0, b"rw/own.txt"), 0),  # through the read-only route to a file the writable grant also has
    (("sub", b"inner.txt"), 0),  # a directory handle opened beneath the read-only preopen
    (("sub", b"inner.txt"), _FOLLOW),
    (("sub", b"../file.txt"), 0),
    (("sub/deeper", b"../../file.txt"), _FOLLOW),
    (("rw", b"own.txt"), 0),  # ro/rw opened through ro/ is read-only, though preopen 1 is ro/rw
], ids=str)
@pytest.mark.parametrize("target", [1, 2], ids=["into-nested-rw", "into-other-rw"])
def test_link_source_beneath_a_read_only_grant_is_refused(grants, resolver, source, follow, target):
    broker = _grant_broker(grants, resolver)
    handle, path = source
    if isinstance(handle, str):
        handle = _open_dir(broker, 0, handle.encode())
    before = _snapshot(grants)
    reply = broker.dispatch(wire.PathLink(handle, follow, target, path, b"stolen"))
    assert (reply.errno, reply.fds) == (Errno.PERM, ())
    assert _snapshot(grants) == before
    assert os.stat(grants / "ro" / "file.txt").st_nlink == 1
    broker.close()


@pytest.mark.parametrize("old, new", [
    ((0, b"file.txt"), (2, b"moved")),  # read-only -> writable: a file
    ((0, b"sub"), (2, b"moved")),  # ... a directory
    ((0, b"rw/own.txt"), (1, b"moved")),  # through the read-only route, into the grant that has it
    (("sub", b"inner.txt"), (2, b"moved")),  # from a handle opened beneath the read-only preopen
    (("rw", b"own.txt"), (1, b"moved")),
    ((2, b"mine"), (0, b"planted")),  # writable -> read-only: a file
    ((2, b"minedir"), (0, b"planted")),  # ... a directory
    ((2, b"mine"), ("sub", b"planted")),
    ((1, b"own.txt"), (0, b"planted")),
], ids=str)
def test_rename_needs_a_writable_handle_on_both_sides(grants, resolver, old, new):
    (grants / "elsewhere" / "mine").write_text("mine\n")
    (grants / "elsewhere" / "minedir").mkdir()
    broker = _grant_broker(grants, resolver)
    sides = []
    for handle, path in (old, new):
        sides.append(_open_dir(broker, 0, handle.encode()) if isinstance(handle, str) else handle)
    before = _snapshot(grants)
    reply = broker.dispatch(wire.PathRename(sides[0], sides[1], old[1], new[1]))
    assert reply.errno == Errno.PERM
    assert _snapshot(grants) == before
    broker.close()


def test_link_and_rename_within_a_writable_grant_nested_in_a_read_only_one(grants, resolver):
    """The writable grant already writes everything it reaches: a new name for
    one of its own inodes, or a move inside it, gives nothing the grant did not."""
    broker = _grant_broker(grants, resolver)
    reply = broker.dispatch(wire.PathLink(1, 0, 1, b"own.txt", b"again.txt"))
    assert reply.errno == 0
    reply = broker.dispatch(wire.PathRename(1, 1, b"again.txt", b"renamed.txt"))
    assert reply.errno == 0
    assert os.path.samefile(grants / "ro" / "rw" / "own.txt", grants / "ro" / "rw" / "renamed.txt")
    broker.close()


# --- [fs] symlinks: what a link may say -------------------------------------------
# "confined" (the default): a relative target that climbs (leading "..") no
# higher than the preopen, checked where the link really lies; "wasi": any
# relative target, as WASI allows.


@pytest.fixture
def deep(tree):
    (tree / "sub" / "deeper").mkdir()
    (tree / "sub" / "deeper" / "f").write_text("deep\n")
    (tree / "dirlink").symlink_to("sub/deeper")
    return tree


@pytest.mark.parametrize("where, target, answer", [
    (b"", b"../outside.txt", Errno.PERM),
    (b"", b"..", Errno.PERM),
    (b"", b"./..", Errno.PERM),
    (b"", b"./../root", Errno.PERM),  # back inside, but only through the outside
    (b"", b"sub/../../outside.txt", Errno.PERM),
    (b"", b"sub/../file.txt", Errno.PERM),  # ".." after a name: depends on what sub is
    (b"", b"sub/..", Errno.PERM),
    (b"", b"file.txt", 0),
    (b"", b"./sub/./", 0),
    (b"", b".", 0),
    (b"", b"...", 0),  # a name
    (b"", b"missing/../x", Errno.PERM),
    (b"sub", b"../file.txt", 0),
    (b"sub", b"..", 0),
    (b"sub", b"./../sub", 0),
    (b"sub", b"../..", Errno.PERM),
    (b"sub", b"../../outside.txt", Errno.PERM),
    (b"sub/deeper", b"../../file.txt", 0),
    (b"sub/deeper", b"../../../outside.txt", Errno.PERM),
    (b"dirlink", b"../../file.txt", 0),  # dirlink leads two levels down: counted where it lies
    (b"dirlink", b"../../../outside.txt", Errno.PERM),
    (b"sub/../sub/deeper", b"../../file.txt", 0),
], ids=str)
@pytest.mark.parametrize("how", ["path", "handle"])
def test_confined_symlink_targets(deep, resolver, where, target, answer, how):
    broker = make_broker(deep, resolver)
    if how == "handle" and where:
        handle, path = _open_dir(broker, 0, where), b"link"
    else:
        handle, path = 0, (where + b"/link" if where else b"link")
    reply = broker.dispatch(wire.PathSymlink(handle, target, path))
    assert reply.errno == answer
    assert os.path.islink(os.path.realpath(deep / os.fsdecode(where)) + "/link") == (answer == 0)
    assert links_leading_out(deep) == []
    broker.close()


@pytest.mark.parametrize("where, target", [(b"link", b"../outside.txt"), (b"link", b".."),
                                           (b"sub/link", b"../../outside.txt"),
                                           (b"link", b"sub/../../outside.txt")])
def test_wasi_symlinks_are_made_as_asked(deep, resolver, where, target):
    broker = make_broker(deep, resolver, symlinks="wasi")
    reply = broker.dispatch(wire.PathSymlink(0, target, where))
    assert reply.errno == 0
    assert os.readlink(deep / os.fsdecode(where)) == os.fsdecode(target)
    reply = broker.dispatch(wire.PathSymlink(0, b"/etc/passwd", b"abs"))
    assert reply.errno == Errno.PERM  # absolute: never, in either mode
    reply = broker.dispatch(wire.PathOpen(0, 1, 0, 0, READ, 0, where))
    assert reply.errno in (Errno.NOTCAPABLE, Errno.ISDIR, 0)  # resolution still confines it
    assert reply.errno != 0 or b"outside" not in target
    broker.close()


@pytest.mark.parametrize("request_, answer", [
    (wire.PathRename(0, 0, b"sub/link", b"link"), Errno.PERM),  # the link itself, one level up
    (wire.PathLink(0, 0, 0, b"sub/link", b"link"), Errno.PERM),
    (wire.PathRename(0, 0, b"sub/link", b"sub/deeper/link"), 0),  # deeper: still inside
    (wire.PathLink(0, 0, 0, b"sub/link", b"sub/deeper/link"), 0),
    (wire.PathLink(0, 1, 0, b"sub/link", b"hard"), 0),  # SYMLINK_FOLLOW links the file itself
    (wire.PathRename(0, 0, b"sub/deeper", b"top"), Errno.XDEV),  # its link would climb out
    (wire.PathRename(0, 0, b"sub", b"top"), 0),  # as deep as before
    (wire.PathRename(0, 0, b"sub/deeper", b"sub/other"), 0),
    (wire.PathRename(0, 0, b"sub", b"sub2"), 0),
], ids=str)
def test_confined_links_stay_inside_when_moved(deep, resolver, request_, answer):
    (deep / "sub" / "link").symlink_to("../file.txt")
    (deep / "sub" / "deeper" / "up").symlink_to("../../file.txt")
    broker = make_broker(deep, resolver)
    before = _snapshot(deep)
    reply = broker.dispatch(request_)
    assert reply.errno == answer
    if answer:
        assert _snapshot(deep) == before
    assert links_leading_out(deep) == []
    broker.close()


def test_moving_a_directory_into_another_preopen_carries_its_links(tmp_path, resolver):
    (tmp_path / "a" / "d").mkdir(parents=True)
    (tmp_path / "a" / "d" / "up").symlink_to("../x")
    (tmp_path / "b").mkdir()
    broker = Broker([(os.open(tmp_path / "a", os.O_RDONLY | os.O_DIRECTORY), False),
                     (os.open(tmp_path / "b", os.O_RDONLY | os.O_DIRECTORY), False)], resolver=resolver)
    reply = broker.dispatch(wire.PathRename(0, 1, b"d", b"d"))  # b/d/up -> b/x: inside b
    assert reply.errno == 0
    (tmp_path / "b" / "d" / "deeper").mkdir()
    (tmp_path / "b" / "d" / "deeper" / "up2").symlink_to("../../x")
    reply = broker.dispatch(wire.PathRename(1, 0, b"d/deeper", b"deeper"))  # would climb out of a
    assert reply.errno == Errno.XDEV
    assert links_leading_out(tmp_path / "a") == links_leading_out(tmp_path / "b") == []
    broker.close()


def test_a_directory_too_large_to_scan_is_not_moved_up(deep, resolver, monkeypatch):
    from wasijail.broker import symlinks

    monkeypatch.setattr(symlinks, "SCAN_LIMIT", 3)
    for i in range(4):
        (deep / "sub" / "deeper" / f"n{i}").write_text("")
    broker = make_broker(deep, resolver)
    reply = broker.dispatch(wire.PathRename(0, 0, b"sub/deeper", b"top"))
    assert reply.errno == Errno.XDEV  # `mv` copies instead, checking each link it makes
    reply = broker.dispatch(wire.PathRename(0, 0, b"sub/deeper", b"sub/d2"))
    assert reply.errno == 0  # not shallower: nothing to scan
    broker.close()
