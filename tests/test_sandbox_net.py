"""wasijail.sandbox.net: the probe enters a network namespace as the lockdown does."""

from __future__ import annotations

import socket

from helpers import userns_allowed

from wasijail.sandbox import kernel, net, probing, userns


def test_probe_matches_the_kernel():
    layer = net.probe()
    assert layer.name == "netns"
    if userns_allowed():
        assert layer.available, layer
        assert "network namespace" in layer.detail
    else:
        assert not layer.available
        assert layer.detail == userns.NEEDS_USERNS


def test_a_new_network_namespace_has_only_the_loopback():
    if not userns_allowed():
        return  # test_probe_matches_the_kernel checks the refusal

    def inside() -> tuple[bool, str]:
        userns.try_enter()
        kernel.check(kernel.libc.unshare(kernel.CLONE_NEWNET), "unshare")
        return True, ",".join(name for _, name in socket.if_nameindex())

    entered, names = probing.in_child(inside)
    assert entered and names == "lo"
