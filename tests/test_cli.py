"""The `wasijail` command: exit statuses, traps, argv/env, and bad input."""

from __future__ import annotations

import os
import shutil

import pytest

from helpers import assert_one_line_error, program, text, wasijail


def test_proc_exit_status_passes_through():
    proc = wasijail(program("exit7.wasm"))
    assert (proc.returncode, proc.stdout, proc.stderr) == (7, b"", b"")


def test_proc_exit_status_out_of_range_is_an_error():
    proc = wasijail(program("exit200.wasm"))
    assert assert_one_line_error(proc) == "wasijail: error: invalid exit status 200: outside of [0..126)"


def test_trap_prints_error_with_backtrace_and_exits_134():
    proc = wasijail(program("trap.wasm"))
    err = text(proc.stderr)
    assert proc.returncode == 134
    assert err.startswith("Error: failed to run main module `trap.wasm`\n\nCaused by:\n")
    assert "wasm trap: wasm `unreachable` instruction executed" in err
    lines = err.splitlines()
    backtrace = [ln.strip() for ln in lines if "<unknown>!" in ln]
    assert [ln.split("!")[-1] for ln in backtrace] == ["boom", "main"]


def test_argv0_is_module_file_name_and_env_only_as_given():
    proc = wasijail("run", "--env", "GREETING=hi there", "--env", "HOME", "--env", "EMPTY=",
                    program("env.wasm"), "one", "two words", env={"HOME": "/home/x", "SECRET": "s",
                                                                "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, text(proc.stderr)
    assert text(proc.stdout).splitlines() == [
        "argc=3", "argv[0]=env.wasm", "argv[1]=one", "argv[2]=two words",
        # explicit values in the order given, then the names copied from the host
        "env:GREETING=hi there", "env:EMPTY=", "env:HOME=/home/x",
    ]


def test_no_environment_is_inherited():
    proc = wasijail(program("env.wasm"))
    assert text(proc.stdout).splitlines() == ["argc=1", "argv[0]=env.wasm"]


def test_invoke_prints_results_one_per_line(tmp_path):
    (tmp_path / "f.wat").write_text(
        '(module (func (export "pair") (param i32 i64) (result i32 i64)'
        ' local.get 0 i32.const 1 i32.add local.get 1 i64.const 2 i64.mul))')
    proc = wasijail("run", "--invoke", "pair", tmp_path / "f.wat", "41", "21")
    assert (proc.returncode, text(proc.stdout), proc.stderr) == (0, "42\n42\n", b"")


def test_invoke_missing_export(tmp_path):
    (tmp_path / "f.wat").write_text("(module)")
    proc = wasijail("run", "--invoke", "nope", tmp_path / "f.wat")
    assert assert_one_line_error(proc) == "wasijail: error: failed to find export `nope`"


def test_stdin_reaches_the_module():
    proc = wasijail(program("cat.wasm"), input=b"\x00binary\xffdata\n" * 1000)
    assert (proc.returncode, proc.stdout) == (0, b"\x00binary\xffdata\n" * 1000)


def test_clocks_and_random():
    proc = wasijail(program("clocks.wasm"))
    assert text(proc.stdout) == "realtime ok\nmonotonic ok\nrandom ok\n"


def test_filesystem_operations_in_a_preopen(tmp_path):
    proc = wasijail("run", f"--dir={tmp_path}::/sandbox", program("fsops.wasm"), "/sandbox")
    assert text(proc.stdout) == "size=6\nentry=.\nentry=..\nentry=b.txt\ncontent=alpha\nok\n"
    assert proc.returncode == 0
    assert list(tmp_path.iterdir()) == []


def test_read_only_preopen_refuses_writes(tmp_path):
    (tmp_path / "keep.txt").write_text("original\n")
    ro = wasijail("run", f"--dir={tmp_path}::/data::ro", program("openpath.wasm"), "/data/keep.txt", "r")
    assert (ro.returncode, text(ro.stdout)) == (0, "original\n")
    for target in ("/data/keep.txt", "/data/new.txt"):
        proc = wasijail("run", f"--dir={tmp_path}::/data::ro", program("openpath.wasm"), target, "w")
        assert proc.returncode == 1
        assert text(proc.stdout) == "open failed: Capabilities insufficient\n"
    assert (tmp_path / "keep.txt").read_text() == "original\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
    fsops = wasijail("run", f"--dir={tmp_path}::/data::ro", program("fsops.wasm"), "/data")
    assert text(fsops.stdout) == "ERR mkdir: Capabilities insufficient\n"


def test_files_dated_before_1970_and_far_ahead_are_stated_sanely(tmp_path):
    """Host times WASI cannot carry are clamped as wasmtime does (before 1970: 0),
    through the broker (stat, lstat, readdir) and in the child (fstat of a
    donated file); the run ends normally, with no traceback."""
    (tmp_path / "old").write_text("old\n")
    (tmp_path / "ahead").write_text("ahead\n")
    os.utime(tmp_path / "old", ns=(-1, -86_400 * 365 * 10**9))  # 1969
    try:  # year 5138, or as far as this file system goes
        os.utime(tmp_path / "ahead", (1e11, 1e11))
    except OverflowError:
        pass
    ahead = os.stat(tmp_path / "ahead")
    proc = wasijail("run", f"--dir={tmp_path}::/d::ro", program("pathops.wasm"),
                    "stat", "/d/old", "lstat", "/d/old", "fstat", "/d/old", "stat", "/d/ahead",
                    "fstat", "/d/ahead", "ls", "/d")
    assert (proc.returncode, text(proc.stderr)) == (0, "")
    lines = text(proc.stdout).splitlines()
    ctim = _seconds(os.stat(tmp_path / "old").st_ctime_ns)
    for line in lines[:3]:
        assert line.endswith(f": ok size=4 nlink=1 atim=0.000000000 mtim=0.000000000 ctim={ctim}"), lines
    expected = _seconds(min(ahead.st_mtime_ns, 2**64 - 1))
    for line in lines[3:5]:
        assert line.endswith(f": ok size=6 nlink=1 atim={expected} mtim={expected} "
                             f"ctim={_seconds(ahead.st_ctime_ns)}"), lines
    assert lines[5] == "ls /d: ok . .. ahead old inodes=match"


def _seconds(ns: int) -> str:
    return f"{ns // 10**9}.{ns % 10**9:09}"


# --- bad input: one line, no traceback ---------------------------------------


def test_no_arguments_prints_usage():
    proc = wasijail()
    assert proc.returncode == 2
    assert text(proc.stderr).startswith("usage: wasijail")


@pytest.mark.parametrize("flag", ["--bogus", "--dir"])
def test_bad_flags(flag):
    proc = wasijail("run", flag)
    assert proc.returncode == 2
    assert "Traceback" not in text(proc.stderr)
    assert text(proc.stderr).count("\n") <= 2  # argparse's usage line plus the error


def test_missing_module(tmp_path):
    err = assert_one_line_error(wasijail(tmp_path / "nope.wasm"))
    assert err == f"wasijail: error: {tmp_path}/nope.wasm: no such file"


def test_directory_as_module(tmp_path):
    err = assert_one_line_error(wasijail(tmp_path))
    assert err == f"wasijail: error: {tmp_path}: is a directory, not a module"


def test_empty_module(tmp_path):
    (tmp_path / "empty.wasm").write_bytes(b"")
    err = assert_one_line_error(wasijail(tmp_path / "empty.wasm"))
    assert err.endswith("empty.wasm: empty file, not a module")


def test_truncated_module(tmp_path):
    (tmp_path / "t.wasm").write_bytes(program("demo.wasm").read_bytes()[:100])
    err = assert_one_line_error(wasijail(tmp_path / "t.wasm"))
    assert err.startswith("wasijail: error: invalid WebAssembly module: ")


def test_not_wasm(tmp_path):
    (tmp_path / "x.wasm").write_bytes(b"\x7fELF\x02\x01\x01" + bytes(200))
    err = assert_one_line_error(wasijail(tmp_path / "x.wasm"))
    assert err == "wasijail: error: not a WebAssembly module (bad magic number)"


def test_bad_wat(tmp_path):
    (tmp_path / "x.wat").write_text("(module (func (export \"_start\") i32.add))")
    err = assert_one_line_error(wasijail(tmp_path / "x.wat"))
    assert err.startswith("wasijail: error: invalid WebAssembly module: ")


def test_unknown_import_is_named(tmp_path):
    (tmp_path / "x.wat").write_text('(module (import "env" "foo" (func)) (func (export "_start")))')
    err = assert_one_line_error(wasijail(tmp_path / "x.wat"))
    assert err == ("wasijail: error: unknown import: `env::foo` has not been defined"
                   " (only WASI imports are provided)")


def test_mistyped_wasi_import_is_named(tmp_path):
    (tmp_path / "x.wat").write_text(
        '(module (import "wasi_snapshot_preview1" "fd_write" (func)) (func (export "_start")))')
    err = assert_one_line_error(wasijail(tmp_path / "x.wat"))
    assert "`wasi_snapshot_preview1::fd_write`" in err


def test_missing_start(tmp_path):
    (tmp_path / "x.wat").write_text("(module)")
    err = assert_one_line_error(wasijail(tmp_path / "x.wat"))
    assert err == "wasijail: error: module has no `_start` export: not a WASI command"


def test_bad_policy_file_names_file_and_key(tmp_path):
    policy = tmp_path / "bad.toml"
    policy.write_text('[limits]\nmemory = "lots"\n')
    err = assert_one_line_error(wasijail("run", "--policy", policy, program("demo_p1.wasm")))
    assert err.startswith(f"wasijail: error: {policy}: [limits] memory: ")


def test_policy_that_does_not_parse(tmp_path):
    policy = tmp_path / "bad.toml"
    policy.write_text("[limits\n")
    err = assert_one_line_error(wasijail("run", "--policy", policy, program("demo_p1.wasm")))
    assert str(policy) in err


def test_missing_preopen_dir(tmp_path):
    err = assert_one_line_error(wasijail("run", f"--dir={tmp_path}/missing", program("demo_p1.wasm")))
    assert err == f"wasijail: error: preopen {tmp_path}/missing: no such directory"


def test_policy_file_preopens_and_flag_override(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "in.txt").write_text("from policy\n")
    policy = tmp_path / "p.toml"
    policy.write_text('[[fs.preopen]]\nhost = "data"\nguest = "/d"\nmode = "ro"\n\n[env]\nvars = { WHO = "file" }\n')
    proc = wasijail("run", "--policy", policy, program("openpath.wasm"), "/d/in.txt", "r")
    assert (proc.returncode, text(proc.stdout)) == (0, "from policy\n")
    env = wasijail("run", "--policy", policy, "--env", "WHO=flag", program("env.wasm"))
    assert "env:WHO=flag" in text(env.stdout).splitlines()
    shutil.rmtree(data)


# --- policy show and limit flags -----------------------------------------------------


def test_policy_show_applies_flags_over_the_file(tmp_path):
    policy = tmp_path / "p.toml"
    policy.write_text('[limits]\ntimeout = "10s"\nmemory = "64MiB"\n')
    proc = wasijail("policy", "show", "--policy", policy, "--timeout", "3s", "-W", "fuel=500",
                    f"--dir={tmp_path}::/t::ro", "--env", "A=1")
    out = text(proc.stdout)
    assert proc.returncode == 0, text(proc.stderr)
    assert 'timeout = "3s"' in out and 'memory = "64MiB"' in out and "fuel = 500" in out
    assert f'host = "{tmp_path}"\nguest = "/t"\nmode = "ro"' in out
    # what it prints is itself a policy file that loads to the same settings
    shown = tmp_path / "shown.toml"
    shown.write_text(out)
    again = wasijail("policy", "show", "--policy", shown)
    assert text(again.stdout).split("\n", 2)[2] == out.split("\n", 2)[2]


def test_bad_limit_flag_names_the_flag():
    err = assert_one_line_error(wasijail("policy", "show", "--memory", "lots"))
    assert err.startswith("wasijail: error: --memory: ")


def test_fuel_flag_and_limit_report():
    proc = wasijail("run", "--fuel", "1000", program("spin.wasm"))
    assert proc.returncode == 134
    assert text(proc.stderr) == "wasijail: resource limit: fuel: all fuel consumed\n"


def test_wasmtime_timeout_spelling():
    proc = wasijail("run", "-W", "timeout=200ms", program("spin.wasm"))
    assert proc.returncode == 134
    assert text(proc.stderr).endswith("wasm trap: interrupt (timed out after 0.2 s)\n")


# --- doctor and required layers -------------------------------------------------------


def test_doctor_lists_every_layer():
    from wasijail.doctor import LAYER_NAMES

    proc = wasijail("doctor")
    lines = text(proc.stdout).split("\n\n")[0].splitlines()  # the layers; the limits follow a blank line
    assert proc.returncode == 0
    assert [line.split()[0] for line in lines] == list(LAYER_NAMES)
    assert all(line.split()[1] in ("available", "missing") for line in lines)


def test_required_layer_missing_on_this_host_refuses_to_run():
    from wasijail.doctor import probe_layers

    layers = {layer.name: layer for layer in probe_layers()}
    for name in ("cgroup", "openat2", "seccomp", "landlock"):
        proc = wasijail("run", "--require", name, program("demo_p1.wasm"))
        if layers[name].available:
            assert (proc.returncode, proc.stdout) == (0, b"hello world\n"), name
        else:
            err = assert_one_line_error(proc)
            assert f"sandbox layer {name}" in err


# --- the rest of the bad inputs, as the CLI reports them --------------------------------


def test_component_instead_of_module(tmp_path):
    (tmp_path / "c.wasm").write_bytes(b"\0asm\x0d\x00\x01\x00")
    err = assert_one_line_error(wasijail(tmp_path / "c.wasm"))
    assert err == ("wasijail: error: a WebAssembly component, not a core module:"
                   " wasijail runs WASI preview1 modules")


def test_start_with_parameters():
    err = assert_one_line_error(wasijail(program("start_params.wasm")))
    assert err == "wasijail: error: `_start` must take no parameters and return nothing"


def test_no_memory_export():
    err = assert_one_line_error(wasijail(program("nomem.wasm")))
    assert err == "wasijail: error: the module calls WASI but exports no `memory`"


def test_trap_in_start_section():
    proc = wasijail(program("start_trap.wasm"))
    assert proc.returncode == 134
    assert "wasm trap: wasm `unreachable` instruction executed" in text(proc.stderr)
    assert "Traceback" not in text(proc.stderr)
