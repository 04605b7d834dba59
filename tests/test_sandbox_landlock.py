"""wasijail.sandbox.landlock: the probe agrees with the kernel (the ruleset itself is applied
and tried in tests/escape/)."""

from __future__ import annotations

import ctypes
import errno

from wasijail.sandbox import landlock


def _abi_independently() -> tuple[int, int]:
    libc = ctypes.CDLL(None, use_errno=True)
    abi = libc.syscall(444, None, 0, 1)  # landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION)
    return abi, ctypes.get_errno()


def _lsm() -> str | None:
    try:
        with open("/sys/kernel/security/lsm") as f:
            return f.read().strip()
    except OSError:
        return None


def test_probe_matches_the_kernel():
    layer = landlock.probe()
    assert layer.name == "landlock"
    lsm = _lsm()
    abi, err = _abi_independently()
    if lsm is not None:
        assert ("landlock" in lsm.split(",")) == layer.available, (lsm, layer)
    if abi >= 1:
        assert layer.available, layer
        assert layer.detail.startswith(f"ABI {abi}:")
        assert "filesystem" in layer.detail
        assert landlock.abi() == (abi, "")
    else:
        assert not layer.available
        assert "Landlock" in layer.detail or errno.errorcode[err] in layer.detail


def test_ruleset_handles_every_right_of_the_abi():
    attr, size, handled = landlock._ruleset(7)
    assert attr.handled_access_fs == (1 << 16) - 1  # EXECUTE .. IOCTL_DEV
    assert attr.handled_access_net == 0b11 and attr.scoped == 0b11
    assert size == 24 and len(handled) == 3
    attr, size, handled = landlock._ruleset(1)
    assert (attr.handled_access_fs, attr.handled_access_net, attr.scoped, size) == ((1 << 13) - 1, 0, 0, 8)
