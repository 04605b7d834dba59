"""The child's end of the broker socket: one reply per request, errors as WasiErrno."""

from __future__ import annotations

import os
import socket
import threading

import pytest

from wasijail.child.broker_client import BrokerClient, BrokerGone
from wasijail.protocol import broker as wire
from wasijail.protocol import transport
from wasijail.protocol.transport import ProtocolError
from wasijail.wasi import Errno, WasiErrno


def _answering(reply: bytes, fds=()):
    """A client whose broker answers the one request it gets with `reply` (and `fds`)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)

    def broker():
        if theirs.recv(transport.MAX_MESSAGE):
            theirs.sendmsg([reply], transport.rights(fds))
        theirs.close()

    thread = threading.Thread(target=broker)
    thread.start()
    return BrokerClient(ours), thread


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_reply_body_and_its_descriptor():
    r, w = os.pipe()
    request = wire.PathOpen(0, 0, 0, 0, 0, 0, b"f")
    client, thread = _answering(wire.encode_reply(request.OP, 0, wire.OpenReply(wire.FileKind.DONATED, 0, 4)), [w])
    body, fds = client.call(request, wire.OpenReply)
    thread.join()
    assert body == wire.OpenReply(wire.FileKind.DONATED, 0, 4) and len(fds) == 1
    for fd in (r, w, *fds):
        os.close(fd)


def test_an_error_reply_is_wasierrno_and_drops_what_came_with_it():
    r, w = os.pipe()
    request = wire.PathOpen(0, 0, 0, 0, 0, 0, b"f")
    before = _open_fds()
    client, thread = _answering(wire.encode_reply(request.OP, Errno.NOTCAPABLE), [w])
    with pytest.raises(WasiErrno) as caught:
        client.call(request, wire.OpenReply)
    thread.join()
    assert caught.value.errno is Errno.NOTCAPABLE
    client.sock.close()
    assert _open_fds() == before  # the descriptor sent with the error was closed
    os.close(r)
    os.close(w)


def test_ask_raises_the_errno_and_returns_nothing_on_success():
    client, thread = _answering(wire.encode_reply(wire.BrokerOp.DIR_SYNC, 0))
    assert client.ask(wire.DirSync(3)) is None
    thread.join()
    client, thread = _answering(wire.encode_reply(wire.BrokerOp.DIR_SYNC, Errno.BADF))
    with pytest.raises(WasiErrno, match="BADF"):
        client.ask(wire.DirSync(3))
    thread.join()


def test_a_reply_to_another_request_is_never_taken_for_this_one():
    client, thread = _answering(wire.encode_reply(wire.BrokerOp.DIR_CLOSE, 0))
    with pytest.raises(ProtocolError, match="a reply to op 23 for a DirSync"):
        client.ask(wire.DirSync(3))
    thread.join()


def test_a_broker_that_hangs_up_ends_the_run():
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    theirs.shutdown(socket.SHUT_WR)
    with pytest.raises(BrokerGone):
        BrokerClient(ours).ask(wire.DirSync(0))
    ours.close()
    theirs.close()
