"""A hostile fake child throws random, truncated, oversized and corrupted requests
(with and without descriptors) at a real broker session.

Whatever arrives: the session never raises, a malformed message ends it with a
violation (and a kill), nothing outside the preopen changes, and the parent
leaks no descriptor.
"""

from __future__ import annotations

import array
import fcntl
import os
import shutil
import socket
import struct
import tempfile
from pathlib import Path

import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wasijail.protocol import broker as wire
from wasijail.protocol import transport
from wasijail.broker.handlers import Broker
from wasijail.broker.resolve import Resolver
from wasijail.broker.session import BrokerSession

COMPONENTS = [b"a", b"b", b"..", b".", b"", b"link_out", b"link_in", b"file", b"/etc", b"new"]
paths = st.lists(st.sampled_from(COMPONENTS), min_size=1, max_size=5).map(b"/".join)
u32 = st.integers(0, 2**32 - 1)
small = st.integers(0, 4)
u64 = st.integers(0, 2**64 - 1)

requests = st.one_of(
    st.builds(wire.PathOpen, small, st.integers(0, 1), st.integers(0, 15), st.integers(0, 31), u64, u64, paths),
    st.builds(wire.PathFilestatGet, small, st.integers(0, 1), paths),
    st.builds(wire.PathFilestatSetTimes, small, st.integers(0, 1), u64, u64, st.integers(0, 15), paths),
    st.builds(wire.PathCreateDirectory, small, paths),
    st.builds(wire.PathRemoveDirectory, small, paths),
    st.builds(wire.PathUnlinkFile, small, paths),
    st.builds(wire.PathRename, small, small, paths, paths),
    st.builds(wire.PathLink, small, st.integers(0, 1), small, paths, paths),
    st.builds(wire.PathSymlink, small, paths, paths),
    st.builds(wire.PathReadlink, small, paths),
    st.builds(wire.FdReaddir, small, u64, st.integers(1, wire.READDIR_CHUNK)),
    st.builds(wire.DirFilestatGet, u32),
    st.builds(wire.DirClose, small),
    st.builds(wire.DirSync, u32),
)


@st.composite
def wire_messages(draw):
    """A valid request, or one damaged the way a hostile child would damage it."""
    data = draw(requests).encode()
    damage = draw(st.sampled_from(["none", "truncate", "corrupt", "extend", "random", "oversize", "op"]))
    if damage == "truncate":
        data = data[:draw(st.integers(0, len(data) - 1))]
    elif damage == "corrupt":
        position = draw(st.integers(0, len(data) - 1))
        data = data[:position] + bytes([draw(st.integers(0, 255))]) + data[position + 1:]
    elif damage == "extend":
        data += draw(st.binary(min_size=1, max_size=16))
    elif damage == "random":
        data = draw(st.binary(min_size=1, max_size=64))
    elif damage == "oversize":
        data = data + b"\0" * (transport.MAX_MESSAGE + 1 - len(data))
    elif damage == "op":
        data = struct.pack("<H", draw(st.integers(0, 65535))) + data[2:]
    with_fd = draw(st.booleans()) and draw(st.booleans())
    return data, with_fd


def _make_tree(base: Path) -> Path:
    root = base / "root"
    (root / "a" / "b").mkdir(parents=True)
    (root / "file").write_text("inside")
    (root / "link_out").symlink_to("../outside")
    (root / "link_in").symlink_to("a")
    (base / "outside").mkdir()
    (base / "outside" / "secret").write_text("secret")
    return root


def _snapshot(path: Path) -> list:
    return sorted((str(p.relative_to(path)), p.is_symlink(), p.read_bytes() if p.is_file() and not p.is_symlink() else None)
                  for p in path.rglob("*"))


def _open_fds() -> set[str]:
    """The open descriptors, probed without opening one (a listing's own fd would count)."""
    open_ = set()
    for fd in range(4096):
        try:
            fcntl.fcntl(fd, fcntl.F_GETFD)
        except OSError:
            continue
        open_.add(str(fd))
    return open_


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(wire_messages(), min_size=1, max_size=12), st.booleans())
async def test_hostile_child_cannot_hurt_the_broker(messages, use_openat2):
    base = Path(tempfile.mkdtemp())
    try:
        root = _make_tree(base)
        outside_before = _snapshot(base / "outside")
        fds_before = _open_fds()
        root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
        broker = Broker([(root_fd, False)], resolver=Resolver(use_openat2=use_openat2))
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        kills = []
        session = BrokerSession(broker, ours, lambda: kills.append(1))
        donated = open("/dev/null", "rb")

        async def fake_child():
            theirs.setblocking(False)
            for data, with_fd in messages:
                try:
                    if with_fd:
                        theirs.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                                 array.array("i", [donated.fileno()]))])
                    else:
                        theirs.send(data)
                except OSError:
                    break  # the broker hung up on us: fine
                await trio.sleep(0)
                _drain(theirs)
            theirs.shutdown(socket.SHUT_WR)

        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(fake_child)
                await session.serve()
        _drain(theirs)
        theirs.close()
        ours.close()
        broker.close()
        donated.close()
        malformed = session.violation is not None
        assert malformed == bool(kills)
        if malformed:
            assert session.violation.startswith("malformed broker request: ")
        assert _snapshot(base / "outside") == outside_before
        assert _open_fds() == fds_before
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _drain(sock: socket.socket) -> None:
    """Read every pending reply and close the descriptors it carried."""
    while True:
        try:
            data, ancdata, _, _ = sock.recvmsg(transport.MAX_MESSAGE, transport.RECV_CMSG_SPACE, socket.MSG_DONTWAIT)
        except (BlockingIOError, OSError):
            return
        for fd in transport.unpack_fds(ancdata):
            os.close(fd)
        if not data:
            return


async def test_descriptors_from_a_child_are_closed_and_reported():
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    kills = []
    broker = Broker([])
    session = BrokerSession(broker, ours, lambda: kills.append(1))
    sock_fd = ours.fileno()
    with open("/dev/null", "rb") as f:
        before = _open_fds()
        theirs.sendmsg([wire.DirSync(0).encode()],
                       [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [f.fileno()] * 3))])
        await session.serve()
        # the three copies that arrived were closed, and so was the socket (with whatever it still held)
        assert _open_fds() == before - {str(sock_fd)}
    assert session.violation == "malformed broker request: DirSync with 3 descriptors"
    assert kills == [1]
    theirs.close()
    ours.close()
