"""The child's seccomp policy, as data.

Pure data, importing only the standard library and the Linux numbers of
`kernel.py`: `seccomp.py` turns it into a filter with pyseccomp, the tests
read it as is.

Four outcomes, decided per syscall (and, where listed, per argument):

* ALLOW        -- what CPython, glibc and wasmtime need once the module runs
                  (measured with ``strace -f`` on a compile + run; see the
                  comments for the non-obvious ones);
* ERRNO        -- answered with a specific errno so the caller falls back
                  (``clone3`` -> glibc uses ``clone``; ``memfd_create`` ->
                  wasmtime maps anonymous memory instead);
* FORBID       -- a compromised child trying to reach outside: the process
                  dies by SIGSYS, naming the syscall when a violation fd was
                  given (SECCOMP_RET_TRAP + a native handler), else with
                  SECCOMP_RET_KILL_PROCESS;
* anything else gets the default, ERRNO(EPERM): blocked, not fatal.  Path
  *queries* (stat, access, readlink, ...) deliberately stay here: runtimes
  probe them routinely (``linecache`` stats source files when a traceback
  is formatted) and the answer is EPERM instead of death.

Argument conditions are tuples ``(arg_index, op, value)`` or
``(arg_index, "masked_eq", mask, value)``; ``SELF_PID`` stands for the
locked-down process's own pid and is filled in when the filter is built.
Several conditions in one rule are AND-ed; several rules for one syscall are
OR-ed.  Allow rules compare exactly (EQ / MASKED_EQ), forbid rules use NE or
masks over bits the kernel reads, so a value with stray upper bits never
slips from "forbidden" to "allowed".
"""

from __future__ import annotations

import errno

from .kernel import (
    CLONE_NEWCGROUP, CLONE_NEWIPC, CLONE_NEWNET, CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWUSER, CLONE_NEWUTS,
    CLONE_THREAD, PR_GET_DUMPABLE, PR_GET_NAME, PR_GET_NO_NEW_PRIVS, PR_GET_SECCOMP, PR_SET_NAME,
)

# A sentinel replaced by os.getpid() when the filter is built.
SELF_PID = "SELF_PID"

# -- constants used in conditions (x86_64 / generic Linux values) -----------

# A thread must not come with a namespace of its own.
_CLONE_NS_FLAGS = (
    CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC
    | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET
)

TCGETS = 0x5401       # isatty()
TIOCGWINSZ = 0x5413   # os.get_terminal_size()
FIONREAD = 0x541B     # bytes ready to read
FIONBIO = 0x5421      # socket.setblocking() / settimeout() in CPython
FIONCLEX = 0x5450     # os.set_inheritable(fd, True)
FIOCLEX = 0x5451      # os.set_inheritable(fd, False)

F_DUPFD = 0
F_GETFD = 1
F_SETFD = 2
F_GETFL = 3
F_SETFL = 4
F_DUPFD_CLOEXEC = 1030

AT_EMPTY_PATH = 0x1000

RLIMIT_CPU = 0  # resource.RLIMIT_CPU on Linux

# -- ALLOW: unconditional ----------------------------------------------------

ALLOW: tuple[str, ...] = (
    # I/O on fds the child already holds (donated files, stdio, the broker
    # socket, the violation pipe)
    "read", "write", "readv", "writev", "pread64", "pwrite64",
    "preadv", "pwritev", "preadv2", "pwritev2", "lseek", "close",
    "close_range", "fstat", "dup", "dup2", "dup3",
    "fsync", "fdatasync", "ftruncate", "fallocate", "fadvise64",
    # the existing broker socket (creating/connecting sockets is forbidden)
    "sendmsg", "recvmsg", "sendto", "recvfrom", "sendmmsg", "recvmmsg",
    "shutdown", "getsockopt", "getsockname", "getpeername",
    "poll", "ppoll", "select", "pselect6",
    # memory: the JIT maps, protects (W^X) and reserves ~4 GiB per memory
    "mmap", "mprotect", "munmap", "mremap", "madvise", "brk", "membarrier",
    # threads (compile workers) and their synchronisation
    "futex", "futex_waitv", "set_robust_list", "rseq", "sched_yield",
    "exit", "exit_group", "restart_syscall",
    # signals: wasmtime turns SIGSEGV/SIGILL/SIGFPE into traps on an
    # alternate stack
    "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sigaltstack",
    "rt_sigpending",
    # time and randomness
    "clock_gettime", "clock_getres", "clock_nanosleep", "nanosleep",
    "gettimeofday", "time", "times", "getrandom", "getcpu",
    # identity / accounting (read-only, about itself)
    "getpid", "gettid", "getppid", "getuid", "geteuid", "getgid",
    "getegid", "getresuid", "getresgid", "getgroups", "getrusage",
    "getrlimit", "uname",
)

# -- ALLOW: only with these arguments ----------------------------------------

Cond = tuple  # (arg, op, value) or (arg, "masked_eq", mask, value)

ALLOW_IF: tuple[tuple[str, tuple[Cond, ...]], ...] = (
    # ioctl: only harmless queries; never TIOCSTI & co. on an inherited tty
    ("ioctl", ((1, "eq", TCGETS),)),
    ("ioctl", ((1, "eq", TIOCGWINSZ),)),
    ("ioctl", ((1, "eq", FIONREAD),)),
    ("ioctl", ((1, "eq", FIONBIO),)),
    ("ioctl", ((1, "eq", FIOCLEX),)),
    ("ioctl", ((1, "eq", FIONCLEX),)),
    # fcntl: no F_SETOWN/F_SETSIG (signals to other processes), no leases,
    # no dnotify
    ("fcntl", ((1, "eq", F_DUPFD),)),
    ("fcntl", ((1, "eq", F_GETFD),)),
    ("fcntl", ((1, "eq", F_SETFD),)),
    ("fcntl", ((1, "eq", F_GETFL),)),
    ("fcntl", ((1, "eq", F_SETFL),)),
    ("fcntl", ((1, "eq", F_DUPFD_CLOEXEC),)),
    # glibc fstat() is newfstatat(fd, "", buf, AT_EMPTY_PATH); Rust's
    # File::metadata is statx(fd, "", AT_EMPTY_PATH, ...).  Stat by path
    # (no AT_EMPTY_PATH) falls to EPERM.
    ("newfstatat", ((3, "masked_eq", AT_EMPTY_PATH, AT_EMPTY_PATH),)),
    ("statx", ((2, "masked_eq", AT_EMPTY_PATH, AT_EMPTY_PATH),)),
    # threads only: CLONE_THREAD set, no namespace flags
    ("clone", ((0, "masked_eq", CLONE_THREAD | _CLONE_NS_FLAGS, CLONE_THREAD),)),
    # signals to itself only (raise(), pthread_kill())
    ("tgkill", ((0, "eq", SELF_PID),)),
    ("tkill", ((0, "eq", SELF_PID),)),
    # getrlimit via prlimit64(0, resource, NULL, old): read own limits only
    ("prlimit64", ((0, "eq", 0), (2, "eq", 0))),
    # ... and set its own RLIMIT_CPU: once compiled, the child lowers it to the guest's
    # cpu_time (raising past the hard limit lockdown set needs a privilege it lacks)
    ("prlimit64", ((0, "eq", 0), (1, "eq", RLIMIT_CPU))),
    ("get_robust_list", ((0, "eq", 0),)),
    ("sched_getaffinity", ((0, "eq", 0),)),
    # thread names and read-only status queries
    ("prctl", ((0, "eq", PR_SET_NAME),)),
    ("prctl", ((0, "eq", PR_GET_NAME),)),
    ("prctl", ((0, "eq", PR_GET_SECCOMP),)),
    ("prctl", ((0, "eq", PR_GET_DUMPABLE),)),
    ("prctl", ((0, "eq", PR_GET_NO_NEW_PRIVS),)),
)

# -- ALLOW, only for a child whose empty root holds the cached artifact ---------

O_RDONLY = 0
O_CLOEXEC = 0o2000000

# wasmtime's Module.deserialize_file opens its file with Rust's File::open:
# openat(AT_FDCWD, path, O_RDONLY|O_CLOEXEC).  Allowed with exactly these flags,
# and only when lockdown bind-mounted the supervisor's sealed artifact,
# read-only, into the child's otherwise empty root (mounts.ARTIFACT_PATH)
# and Landlock grants reading that file alone; any other openat still dies.
ARTIFACT_OPEN: tuple[str, tuple[Cond, ...]] = ("openat", ((2, "eq", O_RDONLY | O_CLOEXEC),))

# -- ERRNO: answered so that the caller falls back ---------------------------

ERRNO: tuple[tuple[str, int], ...] = (
    ("clone3", errno.ENOSYS),        # glibc pthread_create falls back to clone
    ("memfd_create", errno.ENOSYS),  # wasmtime falls back to anonymous mmap
)

# -- FORBID: reaching outside; the process dies by SIGSYS --------------------

FORBID: tuple[str, ...] = (
    # opening anything by path (the broker does that)
    "open", "openat", "openat2", "creat", "name_to_handle_at",
    "open_by_handle_at", "uselib",
    # changing the filesystem by path
    "mknod", "mknodat", "mkdir", "mkdirat", "rmdir", "unlink", "unlinkat",
    "rename", "renameat", "renameat2", "link", "linkat", "symlink",
    "symlinkat", "chmod", "fchmodat", "fchmodat2", "chown", "fchownat",
    "lchown", "truncate", "utime", "utimes", "futimesat", "setxattr",
    # re-timing, even futimens on a held fd: a donated read-only file must
    # keep its times (the broker re-times files the grant lets the guest write)
    "utimensat",
    "lsetxattr", "removexattr", "lremovexattr", "chdir", "fchdir",
    "inotify_add_watch", "fanotify_init", "fanotify_mark", "acct",
    # new sockets / connections
    "socket", "socketpair", "connect", "bind", "listen", "accept", "accept4",
    # new programs, processes, other processes
    "execve", "execveat", "fork", "vfork", "ptrace", "process_vm_readv",
    "process_vm_writev", "kill", "rt_sigqueueinfo", "rt_tgsigqueueinfo",
    "pidfd_open", "pidfd_getfd", "pidfd_send_signal", "process_madvise",
    "process_mrelease", "kcmp", "migrate_pages", "move_pages",
    # mounts and namespaces
    "mount", "umount2", "pivot_root", "chroot", "unshare", "setns",
    "fsopen", "fsmount", "fsconfig", "fspick", "move_mount", "open_tree",
    "mount_setattr",
    # kernel attack surface
    "bpf", "keyctl", "add_key", "request_key", "io_uring_setup",
    "io_uring_enter", "io_uring_register", "perf_event_open", "userfaultfd",
    "init_module", "finit_module", "delete_module", "kexec_load",
    "kexec_file_load", "reboot", "swapon", "swapoff", "quotactl",
    "quotactl_fd", "iopl", "ioperm",
    # the host's clocks and names
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
    "sethostname", "setdomainname",
)

FORBID_IF: tuple[tuple[str, tuple[Cond, ...]], ...] = (
    # a process, not a thread (glibc fork() is clone without CLONE_THREAD)
    ("clone", ((0, "masked_eq", CLONE_THREAD, 0),)),
    ("tgkill", ((0, "ne", SELF_PID),)),
    ("tkill", ((0, "ne", SELF_PID),)),
)

# Syscalls newer than the libseccomp build may know (x86_64 numbers), so
# that rules can be added and violations named anyway.
X86_64_EXTRA_SYSCALLS: dict[str, int] = {
    "futex_wake": 454,
    "futex_wait": 455,
    "futex_requeue": 456,
    "statmount": 457,
    "listmount": 458,
    "lsm_get_self_attr": 459,
    "lsm_set_self_attr": 460,
    "lsm_list_modules": 461,
    "mseal": 462,
    "setxattrat": 463,
    "getxattrat": 464,
    "listxattrat": 465,
    "removexattrat": 466,
    "open_tree_attr": 467,
    "file_getattr": 468,
    "file_setattr": 469,
}

# Newer path-modifying syscalls, forbidden when the number is known.
FORBID_NEW: tuple[str, ...] = (
    "setxattrat", "removexattrat", "open_tree_attr", "file_setattr",
    "statmount", "listmount",
)


def all_names() -> frozenset[str]:
    """Every syscall name the policy mentions."""
    names = set(ALLOW) | set(FORBID) | set(FORBID_NEW)
    names |= {n for n, _ in ALLOW_IF} | {n for n, _ in FORBID_IF}
    names |= {n for n, _ in ERRNO}
    return frozenset(names)
