"""The fork server's control channel."""

from __future__ import annotations

import struct

import pytest

from wasijail.protocol import control
from wasijail.protocol.setup import ChildLimits
from wasijail.protocol.transport import ProtocolError


def test_spawn_carries_the_childs_limits_whole():
    limits = ChildLimits(file_size=10, lockdown_cpu_time=4.5, threads=36, open_files=16)
    spawn = control.Spawn.of(9, limits, -1, ("seccomp", "landlock"))
    decoded = control.decode_to_server(spawn.encode())
    assert decoded == spawn
    assert decoded.child_limits == limits
    assert decoded.required == {"seccomp", "landlock"}
    assert control.Spawn.of(1, ChildLimits(), -1, ()).required == frozenset()


def test_spawn_with_malformed_limits_is_refused():
    bad = control.Spawn(1, -1, 0, b"\0" * 3, b"")
    with pytest.raises(ProtocolError, match="limits of 3 bytes"):
        control.decode_to_server(bad.encode())


def test_spawn_says_whether_an_artifact_comes_with_it():
    plain = control.Spawn.of(1, ChildLimits(), -1, ())
    loaded = control.decode_to_server(control.Spawn.of(1, ChildLimits(), -1, (), artifact=True).encode())
    assert (plain.artifact, loaded.artifact) == (0, 1)
    assert (plain.fd_counts, loaded.fd_counts) == (range(5, 8), range(6, 9))
    with pytest.raises(ProtocolError, match="Spawn.artifact: 2"):
        control.decode_to_server(control.Spawn(1, -1, 2, ChildLimits().encode(), b"").encode())


@pytest.mark.parametrize("message", [control.Spawned(3, 1234, b""), control.Spawned(3, -1, b"fork: EAGAIN"),
                                     control.Exited(1234, 0x0900, 10, 20, 3000)],
                         ids=lambda m: type(m).__name__)
def test_server_messages_round_trip(message):
    assert control.decode_from_server(message.encode()) == message


def test_each_direction_knows_only_its_own_messages():
    spawn = control.Spawn.of(1, ChildLimits(), -1, ())
    with pytest.raises(ProtocolError, match="unknown op 1"):
        control.decode_from_server(spawn.encode())
    with pytest.raises(ProtocolError, match="unknown op 3"):
        control.decode_to_server(control.Exited(1, 0, 0, 0, 0).encode())
    with pytest.raises(ProtocolError, match="unknown op 9"):
        control.decode_to_server(struct.pack("<H", 9))

