"""The setup channel: Start, the Setup blob and the child's limits, derived once."""

from __future__ import annotations

import os

import pytest

from wasijail import Policy
from wasijail.protocol.setup import ArtifactMode, ChildLimits, Setup, Start, decode_start
from wasijail.protocol.transport import ProtocolError


def test_setup_round_trip():
    limits = ChildLimits(memory=1 << 20, table_elements=10, fuel=0, open_files=64, file_size=1 << 30,
                         disk=5, cpu_time=1.5, lockdown_cpu_time=61.5, threads=36)
    setup = Setup(b"m.wasm", True, (b"a", b"b c"), (b"X=1",), (b".", b"/tmp"), (False, True),
                  b"f", (b"1",), limits, (b"engine", b"options"))
    assert Setup.decode(setup.encode()) == setup


def test_setup_truncated_or_extended_is_refused():
    data = Setup(b"m", False, (b"a",), (), (b".",), (True,)).encode()
    for cut in range(len(data)):
        with pytest.raises(ProtocolError):
            Setup.decode(data[:cut])
    with pytest.raises(ProtocolError, match="trailing"):
        Setup.decode(data + b"\0")


def test_limits_none_survives_the_wire_and_zero_stays_zero():
    """None is "not limited"; fuel 0 is a budget of none: the two never meet on the wire."""
    assert ChildLimits.decode(ChildLimits().encode()) == ChildLimits()
    zero = ChildLimits(fuel=0, memory=0)
    assert ChildLimits.decode(zero.encode()) == zero


def test_limits_refuse_negative_values_and_wrong_sizes():
    data = bytearray(ChildLimits().encode())
    data[0:8] = (-5).to_bytes(8, "little", signed=True)
    with pytest.raises(ProtocolError, match="negative"):
        ChildLimits.decode(bytes(data))
    with pytest.raises(ProtocolError, match="limits of"):
        ChildLimits.decode(bytes(data[:-1]))


def test_limits_are_derived_from_the_policy_once():
    limits = Policy().with_limits(memory="1MiB", fuel=0, cpu_time=2, compile_timeout=3, open_files=8).limits
    child = ChildLimits.of(limits, threads=40)
    assert (child.memory, child.fuel, child.open_files, child.cpu_time, child.threads) == (1 << 20, 0, 8, 2, 40)
    assert child.lockdown_cpu_time == 2 + 3 * (os.cpu_count() or 1)  # compile_timeout on every core
    uncapped_compile = Policy().with_limits(cpu_time=2, compile_timeout=None).limits
    assert ChildLimits.of(uncapped_compile, 40).lockdown_cpu_time is None
    unlimited = ChildLimits.of(Policy().with_limits(cpu_time=None, fuel=None).limits, None)
    assert (unlimited.cpu_time, unlimited.lockdown_cpu_time, unlimited.fuel, unlimited.threads) == (None,) * 4


@pytest.mark.parametrize("mode", list(ArtifactMode))
def test_start_round_trip(mode):
    assert decode_start(Start(mode).encode()) == Start(mode)


def test_start_refuses_an_unknown_mode_and_other_ops():
    with pytest.raises(ProtocolError, match="Start.artifact: 3 not in 0..2"):
        decode_start(Start(3).encode())
    with pytest.raises(ProtocolError, match="unknown op 10"):
        decode_start(b"\x0a\x00\x00")
