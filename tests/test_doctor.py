"""`wasijail doctor`: every layer is probed, and availability matches what
the kernel says independently.  No skips: where the host lacks a layer the
test asserts that the detail explains why, so a regression cannot hide
behind "not supported here"."""

from __future__ import annotations

import ctypes
import errno
import os
import platform

import pytest

from wasijail import doctor
from wasijail.doctor import LAYER_NAMES, Layer, format_report, probe_layers


@pytest.fixture(scope="module")
def layers() -> dict[str, Layer]:
    return {layer.name: layer for layer in probe_layers()}


def _kernel_at_least(major: int, minor: int) -> bool:
    release = platform.release().split("-")[0].split(".")
    return (int(release[0]), int(release[1])) >= (major, minor)


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def test_every_layer_is_probed_in_order():
    got = probe_layers()
    assert [layer.name for layer in got] == list(LAYER_NAMES)
    for layer in got:
        assert isinstance(layer, Layer)
        assert isinstance(layer.available, bool)
        assert layer.detail and isinstance(layer.detail, str)


def test_names_match_the_policy_layers():
    from wasijail.policy import SANDBOX_LAYERS
    assert set(LAYER_NAMES) == set(SANDBOX_LAYERS)


def test_seccomp(layers):
    actions = _read("/proc/sys/kernel/seccomp/actions_avail")
    layer = layers["seccomp"]
    if actions and {"kill_process", "trap", "errno", "allow"} <= set(actions.split()):
        assert layer.available, layer
        assert "TSYNC" in layer.detail
        assert "libseccomp" in layer.detail
    else:
        assert not layer.available
        assert "seccomp" in layer.detail.lower() or "actions" in layer.detail


def _landlock_abi_independently() -> tuple[int, int]:
    libc = ctypes.CDLL(None, use_errno=True)
    abi = libc.syscall(444, None, 0, 1)
    return abi, ctypes.get_errno()


def test_landlock(layers):
    layer = layers["landlock"]
    lsm = _read("/sys/kernel/security/lsm")
    abi, err = _landlock_abi_independently()
    if lsm is not None:
        assert ("landlock" in lsm.split(",")) == layer.available, (lsm, layer)
    if abi >= 1:
        assert layer.available, layer
        assert layer.detail.startswith(f"ABI {abi}:")
        assert "filesystem" in layer.detail
    else:
        assert not layer.available
        assert "Landlock" in layer.detail or errno.errorcode[err] in layer.detail


def test_openat2(layers):
    layer = layers["openat2"]
    if _kernel_at_least(5, 6):
        assert layer.available, layer
        assert "RESOLVE_BENEATH" in layer.detail
    else:
        assert not layer.available
        assert "openat2" in layer.detail


def test_user_namespaces(layers):
    layer = layers["userns"]
    max_ns = _read("/proc/sys/user/max_user_namespaces")
    clone_knob = _read("/proc/sys/kernel/unprivileged_userns_clone")
    apparmor = _read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns")
    allowed = (max_ns is None or int(max_ns) > 0) and (
        os.getuid() == 0 or (clone_knob in (None, "1") and apparmor in (None, "0")))
    if allowed:
        assert layer.available, layer
        for name in ("mountns", "netns"):
            assert layers[name].available, layers[name]
        assert "pivot" in layers["mountns"].detail
    else:
        assert not layer.available
        assert "unshare" in layer.detail or "map" in layer.detail
        for name in ("mountns", "netns"):
            assert not layers[name].available
            assert "user namespace" in layers[name].detail


def _independent_cgroup_memory() -> bool:
    mount = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if right.startswith("cgroup2 "):
                mount = left.split()[4]
    if mount is None:
        return False
    own = [l[3:] for l in open("/proc/self/cgroup").read().splitlines() if l.startswith("0::")]
    if not own:
        return False
    path = os.path.normpath(f"{mount}/{own[0]}")
    controllers = (_read(f"{path}/cgroup.controllers") or "").split()
    return "memory" in controllers and os.access(path, os.W_OK)


def test_cgroup(layers):
    layer = layers["cgroup"]
    if _independent_cgroup_memory():
        assert layer.available, layer
        assert "memory" in layer.detail
    else:
        assert not layer.available, layer
        # says which part is missing: no v2, no memory controller, or no write access
        assert any(word in layer.detail for word in ("v1", "memory", "writable")), layer


def test_this_machine_has_the_documented_layers(layers):
    # design.md, "Known facts": openat2, seccomp filters, user namespaces and
    # Landlock ABI 7.  Guarded by the kernel's own indicators above; here the
    # combination is spelled out so a doctor regression is loud.
    if _read("/proc/sys/kernel/seccomp/actions_avail") and _landlock_abi_independently()[0] >= 7:
        assert layers["seccomp"].available
        assert layers["landlock"].detail.startswith("ABI 7")
        assert layers["openat2"].available


def test_probe_leaves_no_child_and_no_fd():
    before = set(os.listdir("/proc/self/fd"))
    probe_layers()
    assert set(os.listdir("/proc/self/fd")) == before
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)


def test_format_report():
    layers = [
        Layer("seccomp", True, "filter mode, TSYNC"),
        Layer("cgroup", False, "no cgroup v2 hierarchy mounted"),
    ]
    assert format_report(layers) == (
        "seccomp      available  (filter mode, TSYNC)\n"
        "cgroup       missing    (no cgroup v2 hierarchy mounted)"
    )


def test_format_report_of_the_real_probe():
    text = format_report(probe_layers())
    lines = text.splitlines()
    assert [line.split()[0] for line in lines] == list(LAYER_NAMES)
    assert all(line.split()[1] in ("available", "missing") for line in lines)


def test_hung_namespace_probe_is_reported_not_waited_for(monkeypatch):
    import time

    monkeypatch.setattr(doctor, "_namespace_child", lambda fd: time.sleep(60))
    started = time.monotonic()
    got = doctor._probe_namespaces(timeout=0.5)
    assert time.monotonic() - started < 10
    for name in ("userns", "mountns", "netns"):
        assert not got[name].available
        assert "died or hung" in got[name].detail


def test_threads_are_capped_the_way_the_supervisor_will():
    from wasijail.cgroup import CgroupPool, thread_cgroups

    threads = next(limit for limit in doctor.probe_limits() if limit.name == "threads")
    pool = CgroupPool.open()
    v1 = thread_cgroups(pool)
    try:
        uses_cgroup = (pool is not None and pool.has_pids) or v1 is not None
        expected = "pids cgroup" if uses_cgroup else ("RLIMIT_NPROC" if os.getuid() else "none")
        assert threads.layer == expected, threads
    finally:
        for opened in (pool, v1):
            if opened is not None:
                opened.close()


def test_doctor_names_the_layer_of_every_limit():
    from helpers import wasijail

    proc = wasijail("doctor")
    assert proc.returncode == 0
    out = proc.stdout.decode()
    assert "limits and what enforces them:" in out
    listed = {line.split()[0] for line in out.split("limits and what enforces them:")[1].splitlines() if line}
    from wasijail.policy import LIMIT_KEYS

    # Every policy limit, and what is held for every child besides them.
    assert set(LIMIT_KEYS) | {"descriptors", "threads", "readdir", "host"} <= listed
