"""wasijail.sandbox.seccomp_policy: the child's allow-list, as data."""

from __future__ import annotations

import errno

from wasijail.sandbox import kernel as kernel_module, seccomp_policy as policy


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
    # measured with strace -f on compile + run (see seccomp_policy.py)
    needed = """read write close mmap mprotect munmap madvise brk futex sched_yield
    rt_sigaction rt_sigprocmask rt_sigreturn sigaltstack set_robust_list rseq getrandom
    exit exit_group gettid getpid""".split()
    assert sorted(set(needed) - set(policy.ALLOW)) == []
    allow_if = {n for n, _ in policy.ALLOW_IF}
    assert {"clone", "ioctl", "newfstatat", "statx", "tgkill"} <= allow_if
    assert dict(policy.ERRNO) == {"clone3": errno.ENOSYS, "memfd_create": errno.ENOSYS}


def _imported_modules(module) -> set[str]:
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(module))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add("." * node.level + (node.module or ""))
    return names


def test_policy_module_has_no_heavy_imports():
    # the standard library, and the Linux numbers defined once in kernel.py, itself stdlib only
    assert _imported_modules(policy) <= {"__future__", "errno", ".kernel"}
    assert _imported_modules(kernel_module) <= {"__future__", "ctypes", "errno", "os", "platform"}
