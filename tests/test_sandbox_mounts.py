"""wasijail.sandbox.mounts: the probe pivots as the lockdown does; the child's empty root
is tried from inside in tests/escape/."""

from __future__ import annotations

import errno
import os

from helpers import userns_allowed

from wasijail.sandbox import kernel, mounts, probing, userns


def test_probe_matches_the_kernel():
    layer = mounts.probe()
    assert layer.name == "mountns"
    if userns_allowed():
        assert layer.available, layer
        assert "pivot" in layer.detail
    else:
        assert not layer.available
        assert layer.detail == userns.NEEDS_USERNS


def test_the_new_root_is_empty_and_read_only():
    if not userns_allowed():
        return  # test_probe_matches_the_kernel checks the refusal

    def inside() -> tuple[bool, str]:
        userns.try_enter()
        kernel.check(kernel.libc.unshare(kernel.CLONE_NEWNS), "unshare")
        mounts.apply()
        try:
            os.mkdir("/x")
            return False, "mkdir succeeded"
        except OSError as exc:
            return True, f"{sorted(os.listdir('/'))} {exc.errno}"

    refused, detail = probing.in_child(inside)
    assert refused, detail
    assert detail == f"[] {errno.EROFS}"
