"""Tests for wasijail.flags: the grammar of --dir, --mapdir, --env and -W, and the policy the CLI builds
from them (tests/test_cli.py runs the command itself)."""

from __future__ import annotations

from pathlib import Path

import pytest

from wasijail import cli
from wasijail.flags import W_LIMITS, parse_dir_flag, parse_env_flag, parse_mapdir_flag, parse_w_limit
from wasijail.policy import LIMITS, Policy, PolicyError, Preopen

REPO = Path(__file__).resolve().parent.parent
KiB, MiB, GiB = 1024, 1024**2, 1024**3


def flags_policy(*argv: str) -> Policy:
    """The policy `wasijail policy show ARGV` would print (built-in default, then the flags)."""
    parser = cli._Parser(prog="t")
    cli.add_policy_flags(parser)
    return cli.build_policy(parser.parse_args(list(argv)))


def test_dir_flag_dot(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert parse_dir_flag(".") == Preopen(tmp_path, ".", "rw")


@pytest.mark.parametrize(
    "text, host, guest, mode",
    [
        ("data", "data", "data", "rw"),
        ("./data", "data", "./data", "rw"),
        ("/srv/x", "/srv/x", "/srv/x", "rw"),
        ("data::/data", "data", "/data", "rw"),
        ("data::/data::ro", "data", "/data", "ro"),
        ("data::/data::rw", "data", "/data", "rw"),
        (".::/", ".", "/", "rw"),
        ("../up::up::ro", "../up", "up", "ro"),
        ("data::ro", "data", "ro", "rw"),  # two parts: the second is the guest name, as in wasmtime
    ],
)
def test_dir_flag(text, host, guest, mode, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    p = parse_dir_flag(text)
    assert p.host == (tmp_path / host if not host.startswith("/") else Path(host))
    assert p.host.is_absolute()
    assert p.guest == guest
    assert p.mode == mode


@pytest.mark.parametrize(
    "text, message",
    [
        ("data::/data::rx", "--dir: unknown mode 'rx' in 'data::/data::rx'; expected ro or rw"),
        ("data::/data::", "--dir: unknown mode '' in 'data::/data::'; expected ro or rw"),
        ("data::/data::RO", "--dir: unknown mode 'RO' in 'data::/data::RO'; expected ro or rw"),
        ("a::b::ro::x", "--dir: expected HOST[::GUEST[::ro|rw]], got 'a::b::ro::x'"),
        ("", "--dir: empty host directory in ''"),
        ("::/g", "--dir: empty host directory in '::/g'"),
        ("data::", "--dir: empty guest name in 'data::'"),
        ("data::::ro", "--dir: empty guest name in 'data::::ro'"),
        ("da\0ta", "--dir: must not contain NUL, got 'da\\x00ta'"),
    ],
)
def test_dir_flag_errors(text, message):
    with pytest.raises(PolicyError) as info:
        parse_dir_flag(text)
    assert str(info.value) == message


def test_mapdir_flag_is_guest_first(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert parse_mapdir_flag("/sandbox::out") == Preopen(tmp_path / "out", "/sandbox", "rw")
    assert parse_mapdir_flag(".::.") == Preopen(tmp_path, ".", "rw")
    assert parse_mapdir_flag("/in::/srv/in::ro") == Preopen(Path("/srv/in"), "/in", "ro")


@pytest.mark.parametrize(
    "text, message",
    [
        ("out", "--mapdir: expected GUEST::HOST, got 'out'"),
        ("a::b::c::d", "--mapdir: expected GUEST::HOST, got 'a::b::c::d'"),
        ("::out", "--mapdir: empty guest name in '::out'"),
        ("/g::", "--mapdir: empty host directory in '/g::'"),
        ("/g::out::x", "--mapdir: unknown mode 'x' in '/g::out::x'; expected ro or rw"),
    ],
)
def test_mapdir_flag_errors(text, message):
    with pytest.raises(PolicyError) as info:
        parse_mapdir_flag(text)
    assert str(info.value) == message


@pytest.mark.parametrize(
    "text, expected",
    [
        ("A=1", ("A", "1")),
        ("A=", ("A", "")),
        ("A", ("A", None)),
        ("A=b=c", ("A", "b=c")),
        ("PATH=/bin:/usr/bin", ("PATH", "/bin:/usr/bin")),
        ("a b=c d", ("a b", "c d")),
    ],
)
def test_env_flag(text, expected):
    assert parse_env_flag(text) == expected


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "--env: empty variable name in ''"),
        ("=x", "--env: empty variable name in '=x'"),
        ("A\0B=x", "--env: variable name must not contain '=' or NUL, got 'A\\x00B'"),
        ("A=x\0", "--env: A: value must not contain NUL, got 'x\\x00'"),
    ],
)
def test_env_flag_errors(text, message):
    """The grammar's own errors, then the model's (with_env checks the values), named alike."""
    with pytest.raises(PolicyError) as info:
        Policy().with_env(*parse_env_flag(text))
    assert str(info.value) == message


@pytest.mark.parametrize(
    "text, expected",
    [
        ("timeout=2s", {"timeout": 2.0}),
        ("timeout=5", {"timeout": 5.0}),
        ("max-memory-size=268435456", {"memory": 268435456}),
        ("max-memory-size=256MiB", {"memory": 256 * MiB}),
        ("max-table-elements=1000", {"table_elements": 1000}),
        ("fuel=1000", {"fuel": 1000}),
        ("fuel=0", {"fuel": 0}),
        ("timeout=2s,fuel=1000,max-memory-size=1M",
         {"timeout": 2.0, "fuel": 1000, "memory": MiB}),
        ("timeout=1s,timeout=3s", {"timeout": 3.0}),
        ("cpu-time=500ms,open-files=32,output=1KiB,file-size=1MB,module-size=1GiB,compile-timeout=1m",
         {"cpu_time": 0.5, "open_files": 32, "output": 1024, "file_size": 10**6, "module_size": GiB,
          "compile_timeout": 60.0}),
        ("memory=1GiB,table-elements=5", {"memory": GiB, "table_elements": 5}),
        ("timeout=unlimited", {"timeout": None}),
    ],
)
def test_w_flag(text, expected):
    policy = flags_policy("-W", text)
    assert {key: getattr(policy.limits, key) for key in expected} == expected
    assert all(dict(policy.origins)[f"limits.{key}"] == "-W" for key in expected)


W_SUPPORTED = (
    "compile-timeout, cpu-time, disk, file-size, files, fuel, max-memory-size, max-table-elements, memory, "
    "module-size, open-files, output, table-elements, timeout"
)


@pytest.mark.parametrize(
    "text, message",
    [
        ("max-bogus=3", f"-W: unknown option 'max-bogus'; supported: {W_SUPPORTED}"),
        ("timeout=2s,bogus=1", f"-W: unknown option 'bogus'; supported: {W_SUPPORTED}"),
        ("cpu_time=1s", f"-W: unknown option 'cpu_time'; supported: {W_SUPPORTED}"),
        ("", "-W: expected OPTION=VALUE, got ''"),
        ("timeout=2s,", "-W: expected OPTION=VALUE, got ''"),  # the CLI reads -W item by item
        ("timeout", "-W: timeout: expected timeout=VALUE"),
        ("timeout=soon", "-W: timeout: expected a duration such as 10s, 1.5s or 200ms, got 'soon'"),
        ("timeout=0", "-W: timeout: must be at least 1ms, got '0'"),
        ("max-memory-size=lots", "-W: max-memory-size: expected a size such as 256MiB, got 'lots'"),
        ("max-memory-size=1024", "-W: max-memory-size: must be at least 64KiB (one wasm page), got '1024'"),
        ("fuel=-1", "-W: fuel: must not be negative, got '-1'"),
        ("fuel=many", "-W: fuel: expected a whole number, got 'many'"),
    ],
)
def test_w_flag_errors(text, message, capsys):
    with pytest.raises(SystemExit) as info:
        flags_policy("-W", text)
    assert info.value.code == 2
    assert capsys.readouterr().err == f"wasijail: error: {message}\n"




def test_w_limits_come_from_the_spec():
    """Every limit is a -W key under its own name with dashes; wasmtime's names map to the same limits."""
    assert {W_LIMITS[name.replace("_", "-")] for name in LIMITS} == set(LIMITS)
    assert {W_LIMITS[spec.wasmtime] for spec in LIMITS.values() if spec.wasmtime} == {
        "memory", "table_elements", "timeout", "fuel"}
    assert parse_w_limit("max-memory-size", "1") == "memory"


def test_flag_overrides_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.toml").write_text('[limits]\ntimeout = "10s"\nfuel = 1000\n[env]\nvars = { LANG = "C", TZ = "UTC" }\n')
    q = flags_policy("--policy", "p.toml", "-W", "timeout=2s,max-memory-size=1GiB", "--dir", "extra::/extra::ro",
                     "--env", "LANG=en_US.UTF-8")
    assert q.limits.timeout == 2.0
    assert q.limits.memory == GiB
    assert q.limits.fuel == 1000
    assert q.preopens[-1] == Preopen(tmp_path / "extra", "/extra", "ro")
    assert q.env == (("LANG", "en_US.UTF-8"), ("TZ", "UTC"))


@pytest.mark.parametrize("argv, message", [
    (["--timeout", "5s", "-W", "timeout=9"], "-W timeout and --timeout both set the timeout limit; give one"),
    (["--memory", "lots"], "--memory: expected a size such as 256MiB, got 'lots'"),
    (["--dir", "a::g", "--mapdir", "g::b"], "--mapdir: guest name 'g' is already granted (by --dir: "),
    (["--require", "selinux"], "--require: unknown layer 'selinux'"),
    (["--symlinks", "follow"], "--symlinks: expected one of 'confined', 'wasi', got 'follow'"),
])
def test_flag_errors_are_usage_errors(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        flags_policy(*argv)
    assert info.value.code == 2
    assert capsys.readouterr().err.startswith(f"wasijail: error: {message}")
