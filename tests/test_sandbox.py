"""Unit tests of wasijail.child.sandbox that do not lock the test process
down (the locked-down child is exercised in tests/escape/)."""

from __future__ import annotations

import errno
import signal
import tempfile

import pytest
from hypothesis import given, strategies as st

import pyseccomp

from wasijail.child import sandbox, seccomp_policy as policy
from wasijail.child.sandbox import (
    LAYERS,
    LayerStatus,
    LockdownConfig,
    LockdownReport,
    VIOLATION_EXIT_STATUS,
    describe_violation,
    parse_violations,
    syscall_name,
)


# -- config -----------------------------------------------------------------------------


def test_config_defaults_and_coercion():
    cfg = LockdownConfig(keep_fds=[0, 1, 2, 5], file_size=None, open_files=64, cpu_time=1.5)
    assert cfg.keep_fds == (0, 1, 2, 5)
    assert (cfg.namespaces, cfg.landlock, cfg.seccomp) == (True, True, True)
    assert cfg.violation_fd is None
    assert cfg.required == frozenset()


@pytest.mark.parametrize("kwargs", [
    {"keep_fds": (-1,)},
    {"file_size": -1},
    {"open_files": -5},
    {"cpu_time": 0},
    {"cpu_time": -1.0},
    {"violation_fd": -2},
    {"required": {"selinux"}},
])
def test_config_rejects_nonsense(kwargs):
    base = dict(keep_fds=(0, 1, 2), file_size=None, open_files=None, cpu_time=None)
    base.update(kwargs)
    with pytest.raises(ValueError):
        LockdownConfig(**base)


def test_config_accepts_policy_layer_names():
    # policy.SANDBOX_LAYERS names are what the fork server passes through
    from wasijail.policy import SANDBOX_LAYERS

    cfg = LockdownConfig(keep_fds=(), file_size=None, open_files=None, cpu_time=None,
                         required=frozenset(SANDBOX_LAYERS) | {"no_new_privs"})
    assert "userns" in cfg.required


def test_config_is_frozen():
    cfg = LockdownConfig(keep_fds=(), file_size=None, open_files=None, cpu_time=None)
    with pytest.raises(AttributeError):
        cfg.seccomp = False  # type: ignore[misc]


# -- report ---------------------------------------------------------------------------------


def test_report_roundtrip_and_views():
    report = LockdownReport(
        (LayerStatus("fds", True, "kept [0, 1, 2]"),
         LayerStatus("landlock", False, "Landlock disabled at boot")),
        0.004,
    )
    assert report.applied == ("fds",)
    assert report.not_applied == {"landlock": "Landlock disabled at boot"}
    assert report.layer("landlock").detail == "Landlock disabled at boot"
    assert LockdownReport.from_dict(report.to_dict()) == report
    assert "NOT APPLIED" in report.summary()
    with pytest.raises(KeyError):
        report.layer("seccomp")


def test_layer_names():
    assert LAYERS == ("fds", "rlimits", "runtime", "namespaces", "capabilities",
                      "no_new_privs", "landlock", "seccomp")


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


# -- the policy as data -------------------------------------------------------------------


def _nr(name: str) -> int | None:
    return sandbox._syscall_number(name)


def test_every_policy_name_resolves():
    unknown = sorted(n for n in policy.all_names() if _nr(n) is None)
    assert unknown == []


def test_no_syscall_is_both_allowed_and_forbidden_unconditionally():
    allowed = set(policy.ALLOW)
    forbidden = set(policy.FORBID) | set(policy.FORBID_NEW)
    errnos = {n for n, _ in policy.ERRNO}
    assert not allowed & forbidden
    assert not allowed & errnos
    assert not forbidden & errnos
    # conditional rules never overlap an unconditional one for the same syscall
    conditional = {n for n, _ in policy.ALLOW_IF} | {n for n, _ in policy.FORBID_IF}
    assert not conditional & (allowed | forbidden | errnos)


BRIEF_FORBIDDEN = """open openat openat2 creat socket socketpair connect bind listen accept
accept4 execve execveat ptrace process_vm_readv process_vm_writev mount umount2 pivot_root
chroot unshare setns bpf keyctl add_key request_key io_uring_setup io_uring_enter
io_uring_register perf_event_open userfaultfd kill fork vfork init_module finit_module
delete_module kexec_load reboot swapon swapoff mknod mknodat name_to_handle_at
open_by_handle_at quotactl pidfd_open pidfd_getfd pidfd_send_signal mkdir mkdirat unlink
unlinkat rename renameat renameat2 link linkat symlink symlinkat chmod fchmodat chown
fchownat lchown truncate chdir fchdir""".split()


def test_forbidden_list_covers_the_brief():
    assert sorted(set(BRIEF_FORBIDDEN) - set(policy.FORBID)) == []
    conditional = {n for n, _ in policy.FORBID_IF}
    assert {"clone", "tgkill", "tkill"} <= conditional


def test_what_wasmtime_needs_is_allowed():
    # measured with strace -f on compile + run (see sandbox.py / seccomp_policy.py)
    needed = """read write close mmap mprotect munmap madvise brk futex sched_yield
    rt_sigaction rt_sigprocmask rt_sigreturn sigaltstack set_robust_list rseq getrandom
    exit exit_group gettid getpid""".split()
    assert sorted(set(needed) - set(policy.ALLOW)) == []
    allow_if = {n for n, _ in policy.ALLOW_IF}
    assert {"clone", "ioctl", "newfstatat", "statx", "tgkill"} <= allow_if
    assert dict(policy.ERRNO) == {"clone3": errno.ENOSYS, "memfd_create": errno.ENOSYS}


def _pfc(action: int) -> str:
    f = sandbox.build_filter(4242, action)
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


def test_native_handler_layout():
    code = sandbox._HANDLER_X86_64
    assert len(code) == sandbox._HANDLER_FD_OFFSET + 4
    assert code[sandbox._HANDLER_FD_OFFSET:] == b"\xff\xff\xff\xff"
    # "violatio" and "n:" immediates, and the syscall numbers it uses
    assert bytes.fromhex("76696f6c6174696f") in code
    assert bytes.fromhex("6e3a") in code
    for nr in (1, 13, 14, 39, 186, 231, 234):       # write, rt_sigaction, ...
        assert b"\xb8" + nr.to_bytes(4, "little") in code  # mov eax, imm32


def test_policy_module_has_no_heavy_imports():
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(policy))
    imported = {alias.name for node in ast.walk(tree)
                if isinstance(node, (ast.Import, ast.ImportFrom))
                for alias in node.names}
    assert imported <= {"annotations", "errno"}


@pytest.mark.parametrize("pid", [1, 4242, 65535, 4194304])
def test_prebuilt_filter_patched_for_a_pid_is_the_filter_built_for_it(pid):
    """The fork server compiles the filter once; each child patches in its pid. The
    result must be the very program libseccomp builds for that pid, byte for byte."""
    sandbox.prebuild_seccomp()
    try:
        for action in (pyseccomp.TRAP, pyseccomp.KILL_PROCESS):
            for open_artifact in (False, True):  # with and without the artifact's one open
                patched = sandbox.program_for(pid, action, open_artifact)
                assert patched is not None
                assert patched == sandbox.export_program(pid, action, open_artifact)
                assert sandbox._PREBUILT[action, open_artifact].pid_offsets  # the pid is in the program
            assert sandbox.program_for(pid, action, True) != sandbox.program_for(pid, action, False)
    finally:
        sandbox._PREBUILT.clear()


def test_without_a_prebuilt_filter_there_is_nothing_to_patch():
    sandbox._PREBUILT.clear()
    assert sandbox.program_for(1234, pyseccomp.TRAP) is None
