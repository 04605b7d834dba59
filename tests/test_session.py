"""What a child tells its broker session besides requests: its sandbox report and its result."""

from __future__ import annotations

import socket

import trio

from wasijail.protocol import broker as wire
from wasijail.broker.handlers import Broker
from wasijail.broker.session import BrokerSession


async def _serve(*messages: wire.Message) -> BrokerSession:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    kills = []
    session = BrokerSession(Broker([]), ours, lambda: kills.append(1))
    for message in messages:
        theirs.send(message.encode())
    theirs.shutdown(socket.SHUT_WR)
    await session.serve()
    ours.close()
    theirs.close()
    return session


async def test_missing_layers_are_recorded():
    session = await _serve(wire.SandboxReport(b"userns: not permitted\nnetns: not permitted"),
                           wire.Result(0, 0, 0, 0, b""))
    assert session.sandbox_missing == ("userns: not permitted", "netns: not permitted")
    assert session.reported.outcome == wire.ChildOutcome.EXIT
    assert session.violation is None


async def test_a_second_report_or_a_late_one_is_a_violation():
    twice = await _serve(wire.SandboxReport(b""), wire.SandboxReport(b""))
    assert twice.violation == "malformed broker request: unexpected sandbox report"


async def test_a_second_result_is_a_violation():
    session = await _serve(wire.Result(0, 0, 0, 0, b""), wire.Result(0, 1, 0, 0, b""))
    assert session.violation == "malformed broker request: a second result"
