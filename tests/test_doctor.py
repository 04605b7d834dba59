"""`wasijail doctor`: every layer of the registry is probed by its module, in order, and
rendered one line each; each limit names what enforces it. The probes themselves are
tested against the kernel beside their modules (tests/test_sandbox_*.py)."""

from __future__ import annotations

import os

import pytest

from wasijail import doctor
from wasijail.doctor import LAYER_NAMES, Layer, format_report, probe_layers
from wasijail.sandbox import LAYERS, LayerSpec


@pytest.fixture(scope="module")
def layers() -> dict[str, Layer]:
    return {layer.name: layer for layer in probe_layers()}


def test_every_layer_is_probed_in_order():
    got = probe_layers()
    assert [layer.name for layer in got] == list(LAYER_NAMES)
    for layer in got:
        assert isinstance(layer, Layer)
        assert isinstance(layer.available, bool)
        assert layer.detail and isinstance(layer.detail, str)


def test_names_are_the_policy_layers():
    from wasijail.policy import SANDBOX_LAYERS
    assert LAYER_NAMES == SANDBOX_LAYERS == tuple(layer.name for layer in LAYERS)


def test_each_layer_is_its_modules_probe(layers):
    from wasijail.sandbox import cgroup, landlock, openat2, seccomp

    # the probes that do not fork answer the same when asked directly
    for module in (seccomp, landlock, openat2, cgroup):
        got = module.probe()
        assert got == layers[got.name]


def test_a_layer_whose_module_cannot_load_is_missing_and_says_why():
    got = doctor.probe_layer(LayerSpec("seccomp", "no_such_module", "seccomp"))
    assert got == Layer("seccomp", False, got.detail)
    assert "wasijail.sandbox.no_such_module cannot load" in got.detail


def test_namespace_layers_depend_on_the_user_namespace(layers):
    if not layers["userns"].available:
        for name in ("mountns", "netns"):
            assert not layers[name].available
            assert "user namespace" in layers[name].detail
    else:
        assert "pivot" in layers["mountns"].detail


def test_this_machine_has_the_documented_layers(layers):
    # design.md, "Known facts": openat2, seccomp filters, user namespaces and
    # Landlock ABI 7.  Guarded by the kernel's own indicators in the modules'
    # tests; here the combination is spelled out so a doctor regression is loud.
    from wasijail.sandbox import landlock

    try:
        with open("/proc/sys/kernel/seccomp/actions_avail") as f:
            seccomp_actions = f.read().strip()
    except OSError:
        seccomp_actions = ""
    if seccomp_actions and landlock.abi()[0] >= 7:
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


def test_threads_are_capped_the_way_the_supervisor_will():
    from wasijail.sandbox.cgroup import CgroupPool, thread_cgroups

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
