"""A compromised child tries to get out; every attempt must be blocked.

Each test runs a snippet in a fresh, fully locked-down Python child (see
harness.py).  "Killed" means: the process died by SIGSYS (exit status
128+31=159 in the supervisor's terms) and the violation pipe names the
syscall.  Where the policy answers EPERM instead (path *queries*), the test
says so and checks that the child lives on.
"""

from __future__ import annotations

import os
import signal
import socket
import textwrap
from pathlib import Path

import pytest

from harness import REPO, run_locked

PROGRAMS = REPO / "tests" / "programs"


def assert_killed(result, syscall: str) -> None:
    assert result.lockdown is not None, result.explain()
    assert result.killed_by_sigsys, result.explain()
    assert result.violations[:1] == [syscall], result.explain()
    assert not result.done, result.explain()


def assert_survived(result) -> None:
    assert result.returncode == 0, result.explain()
    assert result.done, result.explain()
    assert result.violations == [], result.explain()


# -- the lockdown itself ---------------------------------------------------------


def test_every_layer_applied_on_this_machine():
    result = run_locked("pass", required=("namespaces", "landlock", "seccomp"))
    assert_survived(result)
    layers = {l["name"]: l for l in result.lockdown["layers"]}
    assert list(layers) == ["fds", "rlimits", "runtime", "namespaces",
                            "capabilities", "no_new_privs", "landlock", "seccomp"]
    assert all(l["applied"] for l in layers.values()), layers
    assert "ABI" in layers["landlock"]["detail"]
    assert "named on fd" in layers["seccomp"]["detail"]


def test_disabled_layers_are_reported_not_skipped():
    result = run_locked("pass", namespaces=False, landlock=False, seccomp=False)
    assert_survived(result)
    layers = {l["name"]: l for l in result.lockdown["layers"]}
    for name in ("namespaces", "landlock", "seccomp"):
        assert layers[name] == {"name": name, "applied": False,
                                "detail": "disabled by config"}


def test_required_layer_missing_raises():
    result = run_locked("pass", seccomp=False, required=("seccomp",))
    assert result.returncode == 3, result.explain()
    assert "seccomp: disabled by config" in result.value("lockdown_error")


def test_lockdown_refuses_a_multithreaded_process():
    setup = """
        import threading, time
        threading.Thread(target=time.sleep, args=(5,), daemon=True).start()
    """
    result = run_locked("pass", setup=setup)
    assert result.returncode == 3, result.explain()
    assert "single-threaded" in result.value("lockdown_error")


def test_seccomp_and_no_new_privs_are_in_force():
    body = """
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        report("seccomp_mode", libc.prctl(21, 0, 0, 0, 0))     # PR_GET_SECCOMP
        report("no_new_privs", libc.prctl(39, 0, 0, 0, 0))     # PR_GET_NO_NEW_PRIVS
    """
    result = run_locked(body, setup="import ctypes")
    assert_survived(result)
    assert result.value("seccomp_mode") == 2  # SECCOMP_MODE_FILTER
    assert result.value("no_new_privs") == 1


def test_rlimits():
    body = """
        import resource
        report("core", resource.getrlimit(resource.RLIMIT_CORE))
        report("fsize", resource.getrlimit(resource.RLIMIT_FSIZE))
        report("nofile", resource.getrlimit(resource.RLIMIT_NOFILE))
        report("cpu", resource.getrlimit(resource.RLIMIT_CPU))
        report("raise", attempt(resource.setrlimit, resource.RLIMIT_CPU, (100, 100)))
        report("lower", attempt(resource.setrlimit, resource.RLIMIT_CPU, (2, 2)))
        report("cpu_after", resource.getrlimit(resource.RLIMIT_CPU))
        report("lower_other", attempt(resource.setrlimit, resource.RLIMIT_NOFILE, (16, 16)))
    """
    result = run_locked(body, setup="import resource", file_size=1 << 20,
                        open_files=32, cpu_time=2.5)
    assert_survived(result)
    assert result.value("core") == [0, 0]
    assert result.value("fsize") == [1 << 20, 1 << 20]
    assert result.value("nofile") == [32, 32]
    assert result.value("cpu") == [3, 4]
    # raising past the hard limit needs a privilege the child lacks (EPERM, which
    # CPython reports as ValueError); its own CPU limit it may lower (the runner does,
    # to the guest's cpu_time once compiled), any other limit not even that (seccomp)
    assert result.value("raise") == ["ValueError", "not allowed to raise maximum limit"]
    assert result.value("lower") == ["ok", "None"] and result.value("cpu_after") == [2, 2]
    assert result.value("lower_other")[0] == "ValueError"


def test_cpu_limit_kills_a_spinning_child():
    result = run_locked("while True: pass", cpu_time=1, timeout=30)
    assert result.signal in (signal.SIGXCPU, signal.SIGKILL), result.explain()


def test_file_size_limit_gives_efbig(tmp_path):
    fd = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        body = """
            fd = DONATED["out"]
            report("small", attempt(os.write, fd, b"x" * 1000))
            report("big", attempt(os.write, fd, b"x" * 5000))
        """
        result = run_locked(body, donate={"out": fd}, file_size=4096)
    finally:
        os.close(fd)
    assert_survived(result)
    assert result.value("small") == ["ok", "1000"]
    # the kernel writes up to the limit, then refuses
    assert result.value("big") in (["ok", "3096"], ["OSError", "EFBIG"])
    assert (tmp_path / "out").stat().st_size == 4096


# -- the filesystem ------------------------------------------------------------------


def test_open_host_file_is_killed():
    assert_killed(run_locked('open("/etc/passwd")'), "openat")


def test_open_from_another_thread_is_killed_and_named():
    body = """
        import threading
        t = threading.Thread(target=open, args=("/etc/passwd",))
        t.start(); t.join()
    """
    assert_killed(run_locked(body, setup="import threading"), "openat")


def test_forbidden_syscall_without_violation_fd_still_kills():
    result = run_locked('open("/etc/passwd")', name_violations=False)
    assert result.killed_by_sigsys, result.explain()
    assert result.violations == []


def test_stat_host_file_is_eperm():
    # Path *queries* get EPERM rather than death: linecache stats source
    # files whenever a traceback is formatted.  Nothing is learned.
    body = """
        report("stat", attempt(os.stat, "/etc/passwd"))
        report("lstat", attempt(os.lstat, "/etc/passwd"))
        report("access", attempt(os.access, "/etc/passwd", os.R_OK))
        report("readlink", attempt(os.readlink, "/proc/self/exe"))
    """
    result = run_locked(body)
    assert_survived(result)
    assert result.value("stat") == ["PermissionError", "EPERM"]
    assert result.value("lstat") == ["PermissionError", "EPERM"]
    assert result.value("access") == ["ok", "False"]
    assert result.value("readlink") == ["PermissionError", "EPERM"]


def test_stat_with_empty_path_trick_finds_nothing():
    # newfstatat(AT_FDCWD, path, AT_EMPTY_PATH) passes the filter (it is
    # glibc's fstat) but the root is empty.
    body = """
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        buf = ctypes.create_string_buffer(256)
        rc = libc.syscall(262, -100, b"/etc/passwd", buf, 0x1000)
        report("newfstatat", [rc, errno.errorcode.get(ctypes.get_errno())])
    """
    result = run_locked(body, setup="import ctypes")
    assert_survived(result)
    assert result.value("newfstatat") == [-1, "ENOENT"]


def test_listdir_root_is_killed():
    # os.listdir opens the directory: openat is forbidden outright.
    assert_killed(run_locked('os.listdir("/")'), "openat")


def test_listdir_proc_self_fd_is_killed():
    assert_killed(run_locked('os.listdir("/proc/self/fd")'), "openat")


def test_without_seccomp_landlock_still_denies_the_root():
    body = """
        report("root", attempt(os.listdir, "/"))
        report("passwd", attempt(open, "/etc/passwd"))
    """
    result = run_locked(body, seccomp=False)
    assert_survived(result)
    assert result.value("root") == ["PermissionError", "EACCES"]
    assert result.value("passwd")[0] in ("FileNotFoundError", "PermissionError")


def test_without_seccomp_and_landlock_the_root_is_empty():
    body = """
        report("root", attempt(os.listdir, "/"))
        report("passwd", attempt(open, "/etc/passwd"))
        report("proc", attempt(os.listdir, "/proc/self/fd"))
        report("mkdir", attempt(os.mkdir, "/x"))
    """
    result = run_locked(body, seccomp=False, landlock=False)
    assert_survived(result)
    assert result.value("root") == ["ok", "[]"]
    assert result.value("passwd") == ["FileNotFoundError", "ENOENT"]
    assert result.value("proc") == ["FileNotFoundError", "ENOENT"]
    assert result.value("mkdir") == ["OSError", "EROFS"]


def test_without_namespaces_landlock_and_seccomp_still_hold():
    body = """
        report("stat", attempt(os.stat, "/etc/passwd"))
        open("/etc/passwd")
    """
    result = run_locked(body, namespaces=False)
    assert result.value("stat") == ["PermissionError", "EPERM"]
    assert_killed(result, "openat")
    layers = {l["name"]: l for l in result.lockdown["layers"]}
    assert layers["namespaces"]["detail"] == "disabled by config"


def test_without_namespaces_and_seccomp_landlock_denies_reads():
    body = 'report("passwd", attempt(open, "/etc/passwd"))'
    result = run_locked(body, namespaces=False, seccomp=False)
    assert_survived(result)
    assert result.value("passwd") == ["PermissionError", "EACCES"]


def test_late_import_fails():
    # An import after lockdown either fails (getcwd() for the '' entry of
    # sys.path is EPERM) or, where the finder gets as far as listing a
    # directory, dies on openat.  Either way, nothing is loaded.
    result = run_locked('report("import", attempt(__import__, "csv"))')
    if result.killed_by_sigsys:
        assert result.violations == ["openat"], result.explain()
    else:
        assert_survived(result)
        assert result.value("import")[0] != "ok"


# -- file descriptors ------------------------------------------------------------------


def test_only_kept_fds_survive():
    setup = """
        leaked = os.open("/", os.O_RDONLY)  # not kept: must be closed
        report("leaked", leaked)
        kept = os.open("/", os.O_RDONLY)    # kept on purpose
        EXTRA_KEEP.append(kept)
        report("expected", sorted({0, 1, 2, REPORT_FD, VIOLATION_FD, kept}))
    """
    body = """
        import fcntl
        alive = []
        for fd in range(1025):
            try:
                fcntl.fcntl(fd, fcntl.F_GETFD)
                alive.append(fd)
            except OSError:
                pass
        report("alive", alive)
    """
    result = run_locked(body, setup=textwrap.dedent(setup) + "import fcntl\n")
    assert_survived(result)
    assert result.value("alive") == result.value("expected")
    assert result.value("leaked") not in result.value("alive")


def test_write_to_donated_read_only_fd_is_ebadf(tmp_path):
    path = tmp_path / "ro"
    path.write_bytes(b"original")
    fd = os.open(path, os.O_RDONLY)
    try:
        body = """
            fd = DONATED["ro"]
            report("read", attempt(os.pread, fd, 100, 0))
            report("write", attempt(os.write, fd, b"evil"))
            report("pwrite", attempt(os.pwrite, fd, b"evil", 0))
            report("truncate", attempt(os.ftruncate, fd, 0))
        """
        result = run_locked(body, donate={"ro": fd})
    finally:
        os.close(fd)
    assert_survived(result)
    assert result.value("read") == ["ok", "b'original'"]
    assert result.value("write") == ["OSError", "EBADF"]
    assert result.value("pwrite") == ["OSError", "EBADF"]
    assert result.value("truncate")[1] in ("EBADF", "EINVAL")
    assert path.read_bytes() == b"original"


def test_donated_writable_fd_works(tmp_path):
    fd = os.open(tmp_path / "rw", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        body = """
            fd = DONATED["rw"]
            os.write(fd, b"hello world")
            os.ftruncate(fd, 5)
            os.fsync(fd)
            report("stat", os.fstat(fd).st_size)
            report("seek", os.lseek(fd, 0, os.SEEK_SET))
            report("read", os.read(fd, 100).decode())
            report("isatty", os.isatty(fd))
        """
        result = run_locked(body, donate={"rw": fd})
    finally:
        os.close(fd)
    assert_survived(result)
    assert result.value("stat") == 5
    assert result.value("read") == "hello"
    assert result.value("isatty") is False


def test_futimens_is_killed_even_on_a_writable_fd(tmp_path):
    """Re-timing is the broker's: the filter cannot tell a read-only grant's fd from another."""
    fd = os.open(tmp_path / "rw", os.O_RDWR | os.O_CREAT, 0o600)
    os.utime(tmp_path / "rw", ns=(10**18, 10**18))
    try:
        result = run_locked('os.utime(DONATED["rw"], (1, 1))', donate={"rw": fd})
    finally:
        os.close(fd)
    assert_killed(result, "utimensat")
    assert (tmp_path / "rw").stat().st_mtime_ns == 10**18


# -- network -------------------------------------------------------------------------


def test_socket_is_killed():
    assert_killed(run_locked("import socket; socket.socket()",
                             setup="import socket"), "socket")


def test_connect_with_a_leaked_socket_is_killed():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    setup = f"""
        import socket
        s = socket.socket()
        EXTRA_KEEP.append(s.fileno())
        port = {listener.getsockname()[1]}
    """
    try:
        result = run_locked('s.connect(("127.0.0.1", port))', setup=setup)
    finally:
        listener.close()
    assert_killed(result, "connect")


def test_socketpair_is_killed():
    assert_killed(run_locked("import socket; socket.socketpair()",
                             setup="import socket"), "socketpair")


# -- processes ----------------------------------------------------------------------------


def test_exec_is_killed():
    assert_killed(run_locked('os.execv("/bin/sh", ["sh", "-c", "id"])'), "execve")


def test_fork_is_killed():
    assert_killed(run_locked("os.fork()"), "clone")


def test_threads_still_work():
    body = """
        import threading
        out = []
        ts = [threading.Thread(target=out.append, args=(i,)) for i in range(4)]
        for t in ts: t.start()
        for t in ts: t.join()
        report("threads", sorted(out))
    """
    result = run_locked(body, setup="import threading")
    assert_survived(result)
    assert result.value("threads") == [0, 1, 2, 3]


def test_ptrace_parent_is_killed():
    body = """
        import ctypes
        ctypes.CDLL(None, use_errno=True).ptrace(16, os.getppid(), 0, 0)  # PTRACE_ATTACH
    """
    assert_killed(run_locked(body, setup="import ctypes"), "ptrace")


def test_kill_parent_is_killed():
    result = run_locked("import signal; os.kill(os.getppid(), signal.SIGTERM)",
                        setup="import signal")
    assert_killed(result, "kill")


def test_tgkill_to_parent_is_killed_but_to_self_works():
    body = """
        import ctypes, signal, threading
        libc = ctypes.CDLL(None, use_errno=True)
        signal.signal(signal.SIGUSR1, lambda *a: report("got_usr1", True))
        signal.pthread_kill(threading.main_thread().ident, signal.SIGUSR1)   # tgkill(self)
        report("raise_ok", True)
        libc.syscall(234, os.getppid(), os.getppid(), signal.SIGTERM)        # tgkill(parent)
    """
    result = run_locked(body, setup="import ctypes, signal, threading")
    assert result.value("got_usr1") is True
    assert result.value("raise_ok") is True
    assert_killed(result, "tgkill")


def test_unshare_is_killed():
    body = """
        import ctypes
        ctypes.CDLL(None, use_errno=True).unshare(0x10000000)  # CLONE_NEWUSER
    """
    assert_killed(run_locked(body, setup="import ctypes"), "unshare")


def test_mount_is_killed():
    body = """
        import ctypes
        ctypes.CDLL(None, use_errno=True).mount(b"none", b"/", b"tmpfs", 0, None)
    """
    assert_killed(run_locked(body, setup="import ctypes"), "mount")


@pytest.mark.parametrize("nr,name", [
    (321, "bpf"), (425, "io_uring_setup"), (298, "perf_event_open"),
    (323, "userfaultfd"), (250, "keyctl"), (101, "ptrace"), (155, "pivot_root"),
    (161, "chroot"), (308, "setns"), (434, "pidfd_open"), (59, "execve"),
])
def test_raw_forbidden_syscalls_are_killed(nr, name):
    body = f"""
        import ctypes
        ctypes.CDLL(None, use_errno=True).syscall({nr}, 0, 0, 0, 0, 0)
    """
    assert_killed(run_locked(body, setup="import ctypes"), name)


def test_fallback_answers_are_enosys_and_unknown_syscalls_eperm():
    body = """
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        def call(*args):
            rc = libc.syscall(*args)
            return [rc, errno.errorcode.get(ctypes.get_errno())]
        report("clone3", call(435, 0, 0))
        report("memfd_create", call(319, b"x", 0))
        report("tiocsti", call(16, 0, 0x5412, b"x"))       # ioctl(0, TIOCSTI)
        report("setuid", call(105, 0))
        report("fcntl_setown", call(72, 1, 8, os.getppid()))  # F_SETOWN
        report("prlimit_set", call(302, 0, 7, ctypes.c_void_p(1), 0))
    """
    result = run_locked(body, setup="import ctypes")
    assert_survived(result)
    assert result.value("clone3") == [-1, "ENOSYS"]
    assert result.value("memfd_create") == [-1, "ENOSYS"]
    assert result.value("tiocsti") == [-1, "EPERM"]
    assert result.value("setuid") == [-1, "EPERM"]
    assert result.value("fcntl_setown") == [-1, "EPERM"]
    assert result.value("prlimit_set") == [-1, "EPERM"]


def test_ordinary_runtime_calls_survive():
    body = """
        import time, threading
        report("localtime", time.localtime(0).tm_year)
        report("urandom", len(os.urandom(16)))
        time.sleep(0.01)
        report("monotonic", time.monotonic() > 0)
        report("getpid", os.getpid() > 0)
        import json, traceback
        try:
            json.loads("{")   # raised inside a stdlib .py file
        except ValueError:
            report("tb", traceback.format_exc().splitlines()[-1])
    """
    result = run_locked(body, setup="import time, threading, traceback, json")
    assert_survived(result)
    assert result.value("localtime") == 1970
    assert result.value("tb").startswith("json.decoder.JSONDecodeError")


def test_runtime_step_applied_before_lockdown_reports_the_same():
    """The fork server applies the runtime step once before it forks; each child's lockdown
    applies it again, finds it in place and reports what is in force, as a fresh one does."""
    fresh = run_locked("pass")
    assert_survived(fresh)
    setup = """
        from wasijail.sandbox import runtime
        report("before", runtime.apply().detail)
        import json, threading
    """
    body = """
        json.loads("{")   # the swapped-in hook prints it without opening a .py file
    """
    result = run_locked(body, setup=setup)
    assert result.returncode == 1 and result.violations == [], result.explain()
    assert result.stderr.rstrip().splitlines()[-1].startswith("json.decoder.JSONDecodeError")
    runtime_detail = {l["name"]: l["detail"] for l in result.lockdown["layers"]}["runtime"]
    assert runtime_detail == result.value("before")
    assert runtime_detail == {l["name"]: l["detail"] for l in fresh.lockdown["layers"]}["runtime"]
    for note in ("RAYON_NUM_THREADS=", "TZ=UTC", "linecache without file reads", "sys.excepthook",
                 "threading.excepthook", "sys.unraisablehook"):
        assert note in runtime_detail


def test_uncaught_exception_prints_a_traceback_not_a_violation():
    # CPython's C traceback printer opens .py files for source lines; the
    # lockdown swaps in hooks that do not.
    body = """
        import json, threading
        t = threading.Thread(target=json.loads, args=("{",))
        t.start(); t.join()
        report("thread_survived", True)
        json.loads("{")
    """
    result = run_locked(body, setup="import json, threading")
    assert result.returncode == 1, result.explain()
    assert result.violations == []
    assert result.value("thread_survived") is True
    assert "Exception in thread" in result.stderr
    assert result.stderr.rstrip().splitlines()[-1].startswith("json.decoder.JSONDecodeError")


# -- wasmtime inside the sandbox ------------------------------------------------------------

WASMTIME_SETUP = """
    import threading, time
    import wasmtime
"""

HOST_WAT = r"""
(module
  (import "host" "add1" (func $add1 (param i32) (result i32)))
  (import "host" "log" (func $log (param i32 i32)))
  (memory (export "memory") 1 1000)
  (data (i32.const 16) "hello from wasm")
  (func (export "_start"))
  (func (export "call") (param i32) (result i32) (call $add1 (local.get 0)))
  (func (export "say") (call $log (i32.const 16) (i32.const 15)))
  (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0)))
  (func (export "poke") (param i32) (result i32)
    (i32.store (local.get 0) (i32.const 42)) (i32.load (local.get 0)))
  (func (export "unreachable") unreachable)
  (func (export "oob") (result i32) (i32.load (i32.const 0x7ffffff0)))
  (func (export "div0") (param i32) (result i32) (i32.div_s (i32.const 1) (local.get 0)))
  (func $recurse (export "recurse") (call $recurse))
  (func (export "spin") (loop (br 0)))
)
"""


def test_wasmtime_compiles_and_runs_inside_the_sandbox():
    body = f"""
        WAT = {HOST_WAT!r}
        cfg = wasmtime.Config()
        cfg.epoch_interruption = True
        engine = wasmtime.Engine(cfg)
        store = wasmtime.Store(engine)
        store.set_epoch_deadline(1_000_000)
        module = wasmtime.Module(engine, wasmtime.wat2wasm(WAT))
        linker = wasmtime.Linker(engine)
        i32 = wasmtime.ValType.i32()
        linker.define_func("host", "add1", wasmtime.FuncType([i32], [i32]), lambda x: x + 1)
        said = []
        def log(caller, ptr, length):
            said.append(caller["memory"].read(caller, ptr, ptr + length).decode())
        linker.define_func("host", "log", wasmtime.FuncType([i32, i32], []), log,
                           access_caller=True)
        inst = linker.instantiate(store, module)
        ex = inst.exports(store)
        ex["_start"](store)
        report("call", ex["call"](store, 41))
        ex["say"](store)
        report("said", said)
        report("grow", ex["grow"](store, 100))
        report("poke", ex["poke"](store, 100 * 65536))
        report("grow_too_much", ex["grow"](store, 100000))
        traps = {{}}
        for name, args in [("unreachable", ()), ("oob", ()), ("div0", (0,)), ("recurse", ())]:
            try:
                ex[name](store, *args)
                traps[name] = None
            except wasmtime.Trap as t:
                traps[name] = str(t.trap_code)
        report("traps", traps)
        # epoch interruption, driven by a thread created after lockdown
        store.set_epoch_deadline(1)
        threading.Thread(target=lambda: (time.sleep(0.2), engine.increment_epoch())).start()
        try:
            ex["spin"](store)
        except wasmtime.Trap as t:
            report("spin", str(t.trap_code))
    """
    result = run_locked(body, setup=WASMTIME_SETUP)
    assert_survived(result)
    assert result.value("call") == 42
    assert result.value("said") == ["hello from wasm"]
    assert result.value("grow") == 1
    assert result.value("poke") == 42
    assert result.value("grow_too_much") == -1
    traps = result.value("traps")
    assert traps == {
        "unreachable": "TrapCode.UNREACHABLE",
        "oob": "TrapCode.MEMORY_OUT_OF_BOUNDS",
        "div0": "TrapCode.INTEGER_DIVISION_BY_ZERO",
        "recurse": "TrapCode.STACK_OVERFLOW",
    }, traps
    assert result.value("spin") == "TrapCode.INTERRUPT"


def _big_wat(functions: int = 400) -> str:
    body = []
    for i in range(functions):
        body.append(
            f'(func $f{i} (export "f{i}") (param i32) (result i32)'
            f' (local i32) (local.set 1 (i32.const {i}))'
            f' (block (loop (br_if 1 (i32.eqz (local.get 0)))'
            f' (local.set 1 (i32.add (i32.mul (local.get 1) (i32.const 31)) (local.get 0)))'
            f' (local.set 0 (i32.sub (local.get 0) (i32.const 1))) (br 0)))'
            f' (local.get 1))'
        )
    data = "".join(f'(data (i32.const {i * 1024}) "segment {i}")' for i in range(64))
    return f'(module (memory (export "memory") 2) {data} {" ".join(body)})'


def test_wasmtime_parallel_compile_of_a_bigger_module():
    body = f"""
        engine = wasmtime.Engine()
        module = wasmtime.Module(engine, wasmtime.wat2wasm({_big_wat()!r}))
        store = wasmtime.Store(engine)
        inst = wasmtime.Instance(store, module, [])
        ex = inst.exports(store)
        report("f7", ex["f7"](store, 10))
        report("data", ex["memory"].read(store, 3 * 1024, 3 * 1024 + 9).decode())
        report("threads", threading.active_count())
    """
    result = run_locked(body, setup=WASMTIME_SETUP)
    assert_survived(result)
    assert result.value("data") == "segment 3"
    expected = 7
    for x in range(10, 0, -1):
        expected = (expected * 31 + x) & 0xFFFFFFFF
    if expected >= 1 << 31:
        expected -= 1 << 32
    assert result.value("f7") == expected


@pytest.mark.skipif(not list(PROGRAMS.glob("*.wasm")),
                    reason="no committed .wasm under tests/programs yet")
def test_committed_programs_compile_inside_the_sandbox():
    wasm = sorted(PROGRAMS.glob("*.wasm"))
    setup = textwrap.dedent(WASMTIME_SETUP) + "BLOBS = {}\n" + "".join(
        f"BLOBS[{p.name!r}] = open({str(p)!r}, 'rb').read()\n" for p in wasm)
    body = """
        engine = wasmtime.Engine()
        for name, blob in BLOBS.items():
            module = wasmtime.Module(engine, blob)
            report("compiled", [name, len(module.imports)])
    """
    result = run_locked(body, setup=setup)
    assert_survived(result)
    assert len(result.values["compiled"]) == len(wasm)


def test_violation_from_a_host_function_called_by_wasm():
    # the forbidden call happens with wasm frames on the stack
    body = f"""
        engine = wasmtime.Engine()
        store = wasmtime.Store(engine)
        module = wasmtime.Module(engine, wasmtime.wat2wasm({HOST_WAT!r}))
        linker = wasmtime.Linker(engine)
        i32 = wasmtime.ValType.i32()
        def evil(x):
            os.execv("/bin/sh", ["sh"])
        linker.define_func("host", "add1", wasmtime.FuncType([i32], [i32]), evil)
        linker.define_func("host", "log", wasmtime.FuncType([i32, i32], []), lambda a, b: None)
        inst = linker.instantiate(store, module)
        report("calling", True)
        inst.exports(store)["call"](store, 1)
    """
    result = run_locked(body, setup=WASMTIME_SETUP)
    assert result.value("calling") is True
    assert_killed(result, "execve")


def test_stress_compiling_on_many_threads_never_trips_the_filter():
    # Incidental file reads at random moments (glibc malloc arena trimming,
    # Rust's CPU count) would show up here as "violation: openat".
    wasm = [p for p in sorted(PROGRAMS.glob("*.wasm")) if p.stat().st_size < 200_000][:12]
    setup = textwrap.dedent(WASMTIME_SETUP) + "BLOBS = []\n" + "".join(
        f"BLOBS.append(open({str(p)!r}, 'rb').read())\n" for p in wasm)
    body = f"""
        BIG = wasmtime.wat2wasm({_big_wat(1500)!r})
        errors = []
        def work():
            try:
                engine = wasmtime.Engine()
                for _ in range(3):
                    wasmtime.Module(engine, BIG)
                    for blob in BLOBS:
                        wasmtime.Module(engine, blob)
            except BaseException as exc:
                errors.append(repr(exc))
        threads = [threading.Thread(target=work) for _ in range(3)]
        for t in threads: t.start()
        for t in threads: t.join()
        report("errors", errors)
    """
    result = run_locked(body, setup=setup, timeout=300)
    assert_survived(result)
    assert result.value("errors") == []


def test_lockdown_is_fast():
    result = run_locked("pass")
    assert_survived(result)
    assert result.lockdown["seconds"] < 0.5, result.lockdown


def test_refused_user_namespace_is_reported_and_the_rest_still_holds():
    # A host that refuses unshare() (as Docker's default seccomp profile does):
    # the refusal comes from a filter installed before lockdown.
    setup = """
        import pyseccomp
        f = pyseccomp.SyscallFilter(pyseccomp.ALLOW)
        f.add_rule(pyseccomp.ERRNO(errno.EPERM), "unshare")
        f.load()
    """
    body = """
        report("stat", attempt(os.stat, "/etc/passwd"))
        open("/etc/passwd")
    """
    result = run_locked(body, setup=setup)
    layers = {l["name"]: l for l in result.lockdown["layers"]}
    assert not layers["namespaces"]["applied"]
    assert "EPERM" in layers["namespaces"]["detail"]
    assert "continuing with Landlock + seccomp only" in layers["namespaces"]["detail"]
    assert layers["landlock"]["applied"] and layers["seccomp"]["applied"]
    assert result.value("stat") == ["PermissionError", "EPERM"]
    assert_killed(result, "openat")


def test_refused_user_namespace_fails_a_policy_that_requires_it():
    setup = """
        import pyseccomp
        f = pyseccomp.SyscallFilter(pyseccomp.ALLOW)
        f.add_rule(pyseccomp.ERRNO(errno.EPERM), "unshare")
        f.load()
    """
    result = run_locked("pass", setup=setup, required=("userns", "seccomp"))
    assert result.returncode == 3, result.explain()
    assert "namespaces: unshare(" in result.value("lockdown_error")


def test_cpu_count_after_lockdown():
    body = """
        import concurrent.futures
        with concurrent.futures.ThreadPoolExecutor() as pool:
            report("sum", sum(pool.map(abs, [-1, -2, -3])))
        report("cpus", os.cpu_count())
    """
    # concurrent.futures imports .thread lazily: import it before lockdown
    result = run_locked(body, setup="import concurrent.futures.thread")
    assert_survived(result)
    assert result.value("sum") == 6
    assert result.value("cpus") == len(os.sched_getaffinity(0))


def test_child_is_not_dumpable():
    body = """
        import ctypes
        report("dumpable", ctypes.CDLL(None).prctl(3, 0, 0, 0, 0))   # PR_GET_DUMPABLE
    """
    result = run_locked(body, setup="import ctypes")
    assert_survived(result)
    assert result.value("dumpable") == 0


def test_the_filter_compiled_in_the_fork_server_holds_the_same_line():
    """The fork server's way: the filter is compiled before the fork, the child patches its
    pid in and loads the program itself. Forbidden calls still die and are named, signals
    to itself still work, the rest gets EPERM."""
    body = """
        import ctypes, signal
        libc = ctypes.CDLL(None, use_errno=True)
        signal.signal(signal.SIGUSR1, lambda *a: report("signalled", True))
        signal.pthread_kill(__import__("threading").get_ident(), signal.SIGUSR1)
        rc = libc.syscall(0x1234, 0, 0)
        report("unknown", [rc, errno.errorcode.get(ctypes.get_errno())])
        libc.syscall(59, 0, 0, 0)  # execve
    """
    result = run_locked(body, setup="import ctypes, signal, threading\nseccomp.prebuild_seccomp()")
    assert_killed(result, "execve")
    assert result.value("signalled") is True
    assert result.value("unknown") == [-1, "EPERM"]
    seccomp = [layer for layer in result.lockdown["layers"] if layer["name"] == "seccomp"][0]
    assert seccomp["applied"] and "compiled once in the fork server" in seccomp["detail"]


# -- the cache's artifact, mounted for wasmtime to map --------------------------------

def _artifact(tmp_path: Path, mode: int = 0o400) -> str:
    """A stand-in for a sealed cache entry (read-only, as the cache writes it) beside a secret."""
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    (cache / "key").write_bytes(b"k" * 32)
    path = cache / "entry.cwasm"
    path.write_bytes(b"\x7fELF artifact bytes")
    path.chmod(mode)
    return str(path)


def test_the_mounted_artifact_is_the_one_file_the_child_can_open(tmp_path):
    body = """
        import os
        fd = os.open("/artifact", os.O_RDONLY | os.O_CLOEXEC)   # what deserialize_file does
        report("read", os.read(fd, 64).decode(errors="replace"))
        report("write", attempt(os.write, fd, b"x"))
        report("root", attempt(os.open, "/", os.O_RDONLY | os.O_CLOEXEC))     # Landlock: nothing else
        report("host", attempt(os.open, "/etc/passwd", os.O_RDONLY | os.O_CLOEXEC))
        report("key", attempt(os.open, "key", os.O_RDONLY | os.O_CLOEXEC))
        os.open("/artifact", os.O_RDWR | os.O_CLOEXEC)   # any other flags: killed
    """
    result = run_locked(body, artifact=_artifact(tmp_path),
                        required=("namespaces", "landlock", "seccomp"))
    lockdown = result.lockdown
    assert lockdown is not None and lockdown["artifact_path"] == "/artifact", result.explain()
    assert result.value("read") == "\x7fELF artifact bytes", result.explain()
    assert result.value("write")[1] == "EBADF"
    assert result.value("root") == ["PermissionError", "EACCES"]
    assert result.value("host")[0] in ("FileNotFoundError", "PermissionError"), result.explain()
    assert result.value("key")[0] in ("FileNotFoundError", "PermissionError"), result.explain()
    assert_killed(result, "openat")


def test_without_an_artifact_the_same_open_is_killed(tmp_path):
    """The open allowed for the artifact is allowed only in a child that has one mounted."""
    body = 'os.open("/artifact", os.O_RDONLY | os.O_CLOEXEC)'
    assert_killed(run_locked(body), "openat")


def test_no_artifact_is_mounted_without_the_namespaces_layer(tmp_path):
    """Without an empty root to hold it alone, nothing is mounted and no open allowed."""
    result = run_locked('open("/etc/hostname", "rb")', namespaces=False, artifact=_artifact(tmp_path))
    assert result.lockdown["artifact_path"] == "", result.explain()
    assert_killed(result, "openat")


def test_the_artifact_mount_itself_is_read_only(tmp_path):
    """Even with Landlock and seccomp off and a file its owner may write, the bind mount
    refuses writing (EROFS)."""
    body = """
        import os
        report("write", attempt(os.open, "/artifact", os.O_WRONLY | os.O_CLOEXEC))
        report("root", os.listdir("/"))
    """
    result = run_locked(body, landlock=False, seccomp=False, artifact=_artifact(tmp_path, 0o600))
    assert result.lockdown["artifact_path"] == "/artifact", result.explain()
    assert result.value("write") == ["OSError", "EROFS"], result.explain()
    assert result.value("root") == ["artifact"], result.explain()
