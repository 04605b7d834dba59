"""Unit tests of wasijail.sandbox.seccomp: the filter built from the policy, the program
compiled once in the fork server, naming violations, and the host probe. The loaded
filter is exercised in tests/escape/."""

from __future__ import annotations

import signal
import tempfile

import pytest
from hypothesis import given, strategies as st

import pyseccomp

from wasijail.sandbox import seccomp, seccomp_policy as policy
from wasijail.sandbox.seccomp import VIOLATION_EXIT_STATUS, describe_violation, parse_violations, syscall_name


# -- naming violations --------------------------------------------------------------------


def test_violation_exit_status():
    assert VIOLATION_EXIT_STATUS == 128 + signal.SIGSYS == 159


@pytest.mark.parametrize("given_,expected", [
    (59, "sandbox violation: execve"),
    (257, "sandbox violation: openat"),
    (b"violation:41\n", "sandbox violation: socket"),
    ("violation:56\n", "sandbox violation: clone"),
    (b"violation:101\nviolation:59\n", "sandbox violation: ptrace"),
    (b"", "sandbox violation (SIGSYS)"),
    (b"garbage", "sandbox violation (SIGSYS)"),
    (None, "sandbox violation (SIGSYS)"),
    (462, "sandbox violation: mseal"),         # newer than libseccomp 2.5.4
    (99999, "sandbox violation: syscall 99999"),
])
def test_describe_violation(given_, expected):
    assert describe_violation(given_) == expected


def test_describe_violation_from_siginfo_like_object():
    class Info:
        si_syscall = 101
    assert describe_violation(Info()) == "sandbox violation: ptrace"


@given(st.binary(max_size=200))
def test_parse_violations_never_raises(data):
    for nr in parse_violations(data):
        assert 0 <= nr < 10**10


def test_parse_violations_ignores_malformed_lines():
    assert parse_violations(b"violation:-1\nviolation:\nviolation:12x\nviolation:2\n") == [2]


def test_syscall_name():
    assert syscall_name(0) == "read"
    assert syscall_name(435) == "clone3"


# -- the filter ------------------------------------------------------------------------------


def test_every_policy_name_resolves():
    unknown = sorted(n for n in policy.all_names() if seccomp._syscall_number(n) is None)
    assert unknown == []


def _pfc(action: int) -> str:
    f = seccomp.build_filter(4242, action)
    with tempfile.TemporaryFile("w+") as out:
        f.export_pfc(out)
        out.seek(0)
        return out.read()


def test_build_filter_with_trap_and_with_kill():
    trap = _pfc(pyseccomp.TRAP)
    assert "action TRAP" in trap
    assert "ERRNO(1)" in trap          # the default: EPERM
    assert "ERRNO(38)" in trap         # ENOSYS for clone3 / memfd_create
    assert "4242" in trap              # tgkill/tkill compare with the pid
    kill = _pfc(pyseccomp.KILL_PROCESS)
    assert "action TRAP" not in kill
    assert "KILL_PROCESS" in kill


@pytest.mark.parametrize("pid", [1, 4242, 65535, 4194304])
def test_prebuilt_filter_patched_for_a_pid_is_the_filter_built_for_it(pid):
    """The fork server compiles the filter once; each child patches in its pid. The
    result must be the very program libseccomp builds for that pid, byte for byte."""
    seccomp.prebuild_seccomp()
    try:
        for action in (pyseccomp.TRAP, pyseccomp.KILL_PROCESS):
            for open_artifact in (False, True):  # with and without the artifact's one open
                patched = seccomp.program_for(pid, action, open_artifact)
                assert patched is not None
                assert patched == seccomp.export_program(pid, action, open_artifact)
                assert seccomp._PREBUILT[action, open_artifact].pid_offsets  # the pid is in the program
            assert seccomp.program_for(pid, action, True) != seccomp.program_for(pid, action, False)
    finally:
        seccomp._PREBUILT.clear()


def test_without_a_prebuilt_filter_there_is_nothing_to_patch():
    seccomp._PREBUILT.clear()
    assert seccomp.program_for(1234, pyseccomp.TRAP) is None


# -- the host probe (`wasijail doctor`) -------------------------------------------------------


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def test_probe_matches_the_kernel():
    actions = _read("/proc/sys/kernel/seccomp/actions_avail")
    layer = seccomp.probe()
    assert layer.name == "seccomp"
    if actions and {"kill_process", "trap", "errno", "allow"} <= set(actions.split()):
        assert layer.available, layer
        assert "TSYNC" in layer.detail
        assert "libseccomp" in layer.detail
    else:
        assert not layer.available
        assert "seccomp" in layer.detail.lower() or "actions" in layer.detail
