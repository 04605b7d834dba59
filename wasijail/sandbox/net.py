"""The network namespace: the child has no interface but a loopback that is down.

The lockdown's unshare enters it (lockdown.py); there is nothing to set up
in it, and seccomp forbids creating a socket anyway. `probe()` enters one in
a throw-away child.
"""

from __future__ import annotations

import ctypes

from . import Layer, probing, userns
from .kernel import CLONE_NEWNET, errname, libc

__all__ = ["probe"]


def _try() -> tuple[bool, str]:
    if not userns.try_enter()[0]:
        return False, userns.NEEDS_USERNS
    if libc.unshare(CLONE_NEWNET) != 0:
        return False, f"unshare(CLONE_NEWNET): {errname(ctypes.get_errno())}"
    return True, "network namespace (no interfaces but a down loopback)"


def probe() -> Layer:
    return Layer("netns", *probing.in_child(_try))
