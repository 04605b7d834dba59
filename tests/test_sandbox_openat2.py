"""wasijail.sandbox.openat2: the probe agrees with the kernel, and the call the broker uses
stays beneath its root (the resolver built on it is tested in test_resolve.py)."""

from __future__ import annotations

import errno
import os
import platform

import pytest

from wasijail.sandbox import openat2


def _kernel_at_least(major: int, minor: int) -> bool:
    release = platform.release().split("-")[0].split(".")
    return (int(release[0]), int(release[1])) >= (major, minor)


def test_probe_matches_the_kernel():
    layer = openat2.probe()
    assert layer.name == "openat2"
    if _kernel_at_least(5, 6):
        assert layer.available, layer
        assert "RESOLVE_BENEATH" in layer.detail
        assert openat2.available()
    else:
        assert not layer.available
        assert "openat2" in layer.detail


@pytest.mark.skipif(not openat2.available(), reason="openat2 missing on this kernel")
def test_openat2_refuses_to_leave_its_root(tmp_path):
    (tmp_path / "inside").mkdir()
    (tmp_path / "inside" / "up").symlink_to("..")
    root = os.open(tmp_path / "inside", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.close(openat2.openat2(root, b".", os.O_PATH | os.O_CLOEXEC, 0))
        for path in (b"..", b"up", b"/etc"):
            with pytest.raises(OSError) as info:
                openat2.openat2(root, path, os.O_PATH | os.O_CLOEXEC, 0)
            assert info.value.errno == errno.EXDEV, path
    finally:
        os.close(root)
