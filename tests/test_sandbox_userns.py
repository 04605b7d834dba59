"""wasijail.sandbox.userns: the probe agrees with the kernel's knobs, and what it writes is
what a new user namespace needs (the lockdown's own maps are checked in tests/escape/)."""

from __future__ import annotations

import os

from helpers import userns_allowed

from wasijail.sandbox import probing, userns


def test_probe_matches_the_kernel():
    layer = userns.probe()
    assert layer.name == "userns"
    if userns_allowed():
        assert layer.available, layer
        assert f"uid {os.getuid()} mapped to 0" in layer.detail
    else:
        assert not layer.available
        assert "unshare" in layer.detail or "map" in layer.detail


def test_root_inside_is_this_uid_outside():
    if not userns_allowed():
        assert not probing.in_child(userns.try_enter)[0]
        return

    def inside() -> tuple[bool, str]:
        entered, why = userns.try_enter()
        with open("/proc/self/uid_map") as f:
            return entered and os.getuid() == 0, f.read().split()[1] if entered else why

    entered, outside = probing.in_child(inside)
    assert entered, outside
    assert int(outside) == os.getuid()


def test_hints_name_the_hosts_knobs():
    hints = userns.hints()
    present = [path for path in userns._KNOBS if os.path.exists(path)]
    for path in present:
        assert os.path.basename(path) + "=" in hints
    assert (hints == "") == (not present)


def test_can_create_as_another_uid():
    if os.getuid() == 0:  # root may become any uid: ask for itself, which the knobs decide
        works, detail = userns.can_create(0)
        assert works == userns_allowed(), detail
        assert detail.startswith("host uid 0 may")
    else:  # nobody else may change uid: said so, not taken for a refused namespace
        assert userns.can_create(os.getuid() + 1) == (False, f"could not become host uid {os.getuid() + 1}")
