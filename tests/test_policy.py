"""Tests for wasijail.policy: parsing, validation, the one schema, round trips."""

from __future__ import annotations

import math
import os
from pathlib import Path

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wasijail.policy import (
    LIMIT_KEYS,
    SANDBOX_LAYERS,
    Limits,
    Policy,
    PolicyError,
    Preopen,
    SandboxPolicy,
    format_duration,
    format_size,
    parse_duration,
    parse_size,
)

REPO = Path(__file__).resolve().parent.parent
POLICIES = REPO / "policies"
KiB, MiB, GiB = 1024, 1024**2, 1024**3


def load(text: str, tmp_path: Path, name: str = "p.toml") -> Policy:
    path = tmp_path / name
    path.write_text(text)
    return Policy.from_toml(path)


def error_of(text: str, source: str = "x.toml", base_dir: Path = Path("/base")) -> str:
    with pytest.raises(PolicyError) as info:
        Policy.from_toml_text(text, source=source, base_dir=base_dir)
    message = str(info.value)
    assert "\n" not in message
    return message


# ---------------------------------------------------------------- sizes


@pytest.mark.parametrize(
    "text, expected",
    [
        (0, 0),
        (512, 512),
        ("512", 512),
        ("512B", 512),
        ("4KiB", 4096),
        ("4kib", 4096),
        ("256MiB", 256 * MiB),
        ("1GiB", GiB),
        ("2TiB", 2 * 1024**4),
        ("1.5MiB", 1572864),
        ("0.5KiB", 512),
        (".5KiB", 512),
        ("4KB", 4000),
        ("4kb", 4000),
        ("3MB", 3_000_000),
        ("2GB", 2_000_000_000),
        ("1TB", 10**12),
        ("4K", 4096),
        ("4k", 4096),
        ("3M", 3 * MiB),
        ("2G", 2 * GiB),
        ("1T", 1024**4),
        ("256 MiB", 256 * MiB),
        (" 1GiB ", GiB),
        ("+5", 5),
        ("-0", 0),
        ("0.3KB", 300),
    ],
)
def test_parse_size(text, expected):
    got = parse_size(text, key="k", source="s")
    assert got == expected
    assert type(got) is int


@pytest.mark.parametrize(
    "value, message",
    [
        ("lots", "s: k: expected a size such as 256MiB, got 'lots'"),
        ("", "s: k: expected a size such as 256MiB, got ''"),
        ("12XB", "s: k: expected a size such as 256MiB, got '12XB'"),
        ("MiB", "s: k: expected a size such as 256MiB, got 'MiB'"),
        ("1e3", "s: k: expected a size such as 256MiB, got '1e3'"),
        ("1 2", "s: k: expected a size such as 256MiB, got '1 2'"),
        (1.5, "s: k: expected a size such as 256MiB, got 1.5"),
        (True, "s: k: expected a size such as 256MiB, got true"),
        ([1], "s: k: expected a size such as 256MiB, got an array"),
        (-1, "s: k: must not be negative, got -1"),
        ("-4KiB", "s: k: must not be negative, got '-4KiB'"),
        ("0.1KiB", "s: k: expected a whole number of bytes, got '0.1KiB' (102.4 bytes)"),
        ("1.5", "s: k: expected a whole number of bytes, got '1.5' (1.5 bytes)"),
    ],
)
def test_parse_size_errors(value, message):
    with pytest.raises(PolicyError) as info:
        parse_size(value, key="k", source="s")
    assert str(info.value) == message
    assert info.value.source == "s"
    assert info.value.key == "k"


@pytest.mark.parametrize(
    "n, text",
    [(0, "0"), (1, "1"), (1000, "1000"), (1024, "1KiB"), (1536, "1536"), (3 * MiB, "3MiB"), (GiB, "1GiB"),
     (1024**4 * 5, "5TiB"), (1024**5, "1024TiB"), (1025 * KiB, "1025KiB")],
)
def test_format_size(n, text):
    assert format_size(n) == text


@given(st.integers(min_value=0, max_value=2**63))
def test_size_round_trip(n):
    assert parse_size(format_size(n), key="k", source="s") == n


@given(
    st.integers(min_value=0, max_value=10**6),
    st.sampled_from(
        [("", 1), ("B", 1), ("KiB", KiB), ("MiB", MiB), ("GiB", GiB), ("K", KiB), ("M", MiB), ("G", GiB),
         ("KB", 1000), ("MB", 10**6), ("GB", 10**9)]
    ),
)
def test_size_written_forms(n, unit):
    suffix, factor = unit
    assert parse_size(f"{n}{suffix}", key="k", source="s") == n * factor


# ---------------------------------------------------------------- durations


@pytest.mark.parametrize(
    "text, expected",
    [
        (0, 0.0),
        (10, 10.0),
        (1.5, 1.5),
        ("10", 10.0),
        ("2.5", 2.5),
        ("1.5s", 1.5),
        ("200ms", 0.2),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("1d", 86400.0),
        ("500us", 0.0005),
        ("500\u00b5s", 0.0005),
        ("250ns", 2.5e-7),
        ("1h30m", 5400.0),
        ("1m 30s", 90.0),
        ("1.5 s", 1.5),
        ("1e-06s", 1e-06),
        ("1E3ms", 1.0),
        (" 3s ", 3.0),
        ("-0s", 0.0),
    ],
)
def test_parse_duration(text, expected):
    got = parse_duration(text, key="k", source="s")
    assert got == expected
    assert type(got) is float


@pytest.mark.parametrize(
    "value, message",
    [
        ("soon", "s: k: expected a duration such as 10s, 1.5s or 200ms, got 'soon'"),
        ("", "s: k: expected a duration such as 10s, 1.5s or 200ms, got ''"),
        ("10 seconds", "s: k: expected a duration such as 10s, 1.5s or 200ms, got '10 seconds'"),
        ("1m30", "s: k: expected a duration such as 10s, 1.5s or 200ms, got '1m30'"),
        ("s", "s: k: expected a duration such as 10s, 1.5s or 200ms, got 's'"),
        ("5S", "s: k: expected a duration such as 10s, 1.5s or 200ms, got '5S'"),
        (math.inf, "s: k: expected a duration such as 10s, 1.5s or 200ms, got inf"),
        (math.nan, "s: k: expected a duration such as 10s, 1.5s or 200ms, got nan"),
        (False, "s: k: expected a duration such as 10s, 1.5s or 200ms, got false"),
        ({}, "s: k: expected a duration such as 10s, 1.5s or 200ms, got a table"),
        (-1, "s: k: must not be negative, got -1"),
        (-0.5, "s: k: must not be negative, got -0.5"),
        ("-2s", "s: k: must not be negative, got '-2s'"),
    ],
)
def test_parse_duration_errors(value, message):
    with pytest.raises(PolicyError) as info:
        parse_duration(value, key="k", source="s")
    assert str(info.value) == message


@pytest.mark.parametrize(
    "seconds, text",
    [(0, "0s"), (60.0, "1m"), (90.0, "90s"), (1.5, "1500ms"), (3600, "1h"), (86400 * 2, "2d"), (0.0005, "500us"),
     (2.5e-7, "250ns"), (0.3, "300ms"), (1.25e-10, "1.25e-10s")],
)
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


@given(st.floats(min_value=0, max_value=1e15, allow_nan=False, allow_infinity=False))
def test_duration_round_trip(seconds):
    assert parse_duration(format_duration(seconds), key="k", source="s") == seconds


@given(
    st.integers(min_value=0, max_value=10**6),
    st.sampled_from([("ns", 1e-9), ("us", 1e-6), ("ms", 1e-3), ("s", 1), ("m", 60), ("h", 3600)]),
)
def test_duration_written_forms(n, unit):
    suffix, factor = unit
    assert parse_duration(f"{n}{suffix}", key="k", source="s") == pytest.approx(n * factor, rel=1e-12)


# ---------------------------------------------------------------- the shipped policies


def test_default_policy_values():
    p = Policy.default()
    assert p.preopens == ()
    assert p.env == ()
    assert p.inherit_env == ()
    assert p.limits == Limits(
        memory=256 * MiB,
        table_elements=100_000,
        timeout=60.0,
        cpu_time=60.0,
        fuel=None,
        output=64 * MiB,
        open_files=256,
        file_size=GiB,
        disk=4 * GiB,
        files=100_000,
        module_size=256 * MiB,
        compile_timeout=600.0,
    )
    assert p.sandbox.require == ("seccomp",)
    assert p.source is None


def test_default_toml_is_the_builtin_default():
    loaded = Policy.from_toml(POLICIES / "default.toml")
    assert loaded.source == str(POLICIES / "default.toml")
    assert attrs.evolve(loaded, source=None) == Policy.default()


def test_default_policy_is_defined_once():
    """policies/default.toml is the package's own file (a link), which Policy.default() reads."""
    import wasijail

    assert (POLICIES / "default.toml").is_symlink()
    assert (POLICIES / "default.toml").resolve() == Path(wasijail.__file__).parent / "default_policy.toml"


def test_default_toml_relative_source(monkeypatch):
    monkeypatch.chdir(REPO)
    loaded = Policy.from_toml("policies/default.toml")
    assert loaded.source == "policies/default.toml"


def test_strict_toml():
    p = Policy.from_toml(POLICIES / "strict.toml")
    assert p.preopens == () and p.env == () and p.inherit_env == ()
    assert p.limits == Limits(
        memory=64 * MiB,
        table_elements=10_000,
        timeout=10.0,
        cpu_time=5.0,
        output=MiB,
        open_files=64,
        file_size=16 * MiB,
        disk=64 * MiB,
        files=1000,
        module_size=16 * MiB,
        compile_timeout=20.0,
    )
    assert p.sandbox.require == ("seccomp", "landlock")


def test_dev_toml():
    p = Policy.from_toml(POLICIES / "dev.toml")
    assert p.preopens == () and p.env == () and p.inherit_env == ()
    assert p.limits.memory == 4 * GiB
    assert p.limits.timeout is None
    assert p.limits.cpu_time is None
    assert p.limits.compile_timeout is None
    assert p.limits.fuel is None
    assert p.limits.file_size is None
    assert p.limits.disk is None and p.limits.files is None
    assert p.limits.output == GiB
    assert p.limits.open_files == 4096
    assert p.sandbox.require == ()


@pytest.mark.parametrize("name", ["default", "strict", "dev"])
def test_shipped_policies_are_commented_key_by_key(name):
    lines = (POLICIES / f"{name}.toml").read_text().splitlines()
    for i, line in enumerate(lines):
        if "=" in line and not line.lstrip().startswith("#"):
            assert i > 0 and lines[i - 1].lstrip().startswith("#"), f"{name}.toml line {i + 1} has no comment above"


@pytest.mark.parametrize("name", ["default", "strict", "dev"])
def test_shipped_policies_round_trip(name):
    p = Policy.from_toml(POLICIES / f"{name}.toml")
    again = Policy.from_toml_text(p.to_toml(), source=p.source, base_dir=Path("/elsewhere"))
    assert again == p


# ---------------------------------------------------------------- loading


FULL = """
[[fs.preopen]]
host = "data"
guest = "/data"
mode = "ro"

[[fs.preopen]]
host = "/srv/out"

[[fs.preopen]]
host = "../up/./x"
guest = "x"
mode = "rw"

[env]
vars = { LANG = "C", TZ = "UTC" }
inherit = ["HOME", "TERM", "HOME"]

[limits]
memory = "256MiB"
table_elements = 10000
timeout = "10s"
cpu_time = 5
fuel = 1000
output = "16MiB"
open_files = 256
file_size = 1073741824
module_size = "64MiB"
compile_timeout = 30.5

[sandbox]
require = ["seccomp", "landlock", "seccomp"]
"""


def test_full_policy(tmp_path):
    p = load(FULL, tmp_path, "full.toml")
    assert p.source == str(tmp_path / "full.toml")
    assert p.preopens == (
        Preopen(tmp_path / "data", "/data", "ro"),
        Preopen(Path("/srv/out"), "/srv/out", "rw"),
        Preopen(Path(f"{tmp_path}/../up/x"), "x", "rw"),
    )
    assert p.preopens[0].readonly and not p.preopens[1].readonly
    # ".." is kept: resolving it lexically could be wrong under symlinks
    assert str(p.preopens[2].host) == f"{tmp_path}/../up/x"
    assert p.env == (("LANG", "C"), ("TZ", "UTC"))
    assert p.inherit_env == ("HOME", "TERM")
    assert p.limits == Limits(
        memory=256 * MiB,
        table_elements=10000,
        timeout=10.0,
        cpu_time=5.0,
        fuel=1000,
        output=16 * MiB,
        open_files=256,
        file_size=GiB,
        module_size=64 * MiB,
        compile_timeout=30.5,
        # not in the file: the built-in default's values
        disk=Policy.default().limits.disk,
        files=Policy.default().limits.files,
    )
    assert p.sandbox == SandboxPolicy(("seccomp", "landlock"))


def test_relative_host_resolves_against_policy_folder(tmp_path, monkeypatch):
    sub = tmp_path / "conf"
    sub.mkdir()
    (sub / "p.toml").write_text('[[fs.preopen]]\nhost = "data"\n')
    monkeypatch.chdir(tmp_path)
    p = Policy.from_toml("conf/p.toml")
    assert p.source == "conf/p.toml"
    assert p.preopens[0].host == tmp_path / "conf" / "data"
    assert p.preopens[0].host.is_absolute()
    assert p.preopens[0].guest == "data"  # host as written
    assert p.preopens[0].mode == "rw"


def test_host_dot_is_the_policy_folder(tmp_path):
    p = load('[[fs.preopen]]\nhost = "."\n', tmp_path)
    assert p.preopens == (Preopen(tmp_path, ".", "rw"),)


def test_from_toml_text_base_dir():
    p = Policy.from_toml_text('[[fs.preopen]]\nhost = "d"\n', source="s", base_dir=Path("/b"))
    assert p.preopens[0].host == Path("/b/d")
    assert p.source == "s"


def test_symlinks_are_not_resolved_and_host_need_not_exist(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    p = load('[[fs.preopen]]\nhost = "link"\n[[fs.preopen]]\nhost = "missing"\n', tmp_path)
    assert p.preopens[0].host == tmp_path / "link"
    assert p.preopens[1].host == tmp_path / "missing"


def test_a_guest_name_granted_twice_is_an_error(tmp_path):
    with pytest.raises(PolicyError) as info:
        load('[[fs.preopen]]\nhost = "a"\nguest = "g"\n[[fs.preopen]]\nhost = "b"\nguest = "g"\n', tmp_path)
    assert str(info.value).endswith("p.toml: [[fs.preopen]] #2 guest: 'g' is already granted by [[fs.preopen]] #1")
    with pytest.raises(PolicyError, match="guest name 'g' is granted twice"):
        Policy(preopens=(Preopen(Path("/a"), "g"), Preopen(Path("/b"), "g")))


def test_a_flag_granting_a_file_guest_name_again_is_an_error(tmp_path):
    p = load('[[fs.preopen]]\nhost = "a"\nguest = "g"\n', tmp_path)
    with pytest.raises(PolicyError) as info:
        p.with_preopen("/elsewhere", "g")
    assert str(info.value) == f"--dir: guest name 'g' is already granted (by {tmp_path / 'p.toml'}: {tmp_path / 'a'})"
    assert p.with_preopen("/elsewhere", "h").preopens[1].guest == "h"


def test_empty_file_is_the_built_in_default(tmp_path):
    p = load("", tmp_path)
    assert p == attrs.evolve(Policy.default(), source=str(tmp_path / "p.toml"))
    assert p.sandbox.require == ("seccomp",)


def test_a_key_left_out_inherits_the_default_and_unlimited_must_be_written(tmp_path):
    p = load('[limits]\nmemory = "1GiB"\n[sandbox]\n', tmp_path)
    default = Policy.default()
    assert p.limits == attrs.evolve(default.limits, memory=GiB)
    assert p.sandbox.require == ("seccomp",)  # [sandbox] without require keeps it
    p = load('[limits]\ntimeout = "unlimited"\n[sandbox]\nrequire = []\n', tmp_path)
    assert p.limits.timeout is None and p.limits.memory == default.limits.memory
    assert p.sandbox.require == ()


def test_policy_show_marks_where_each_value_came_from(tmp_path):
    p = load('[limits]\nmemory = "1GiB"\n', tmp_path).with_limits(timeout="5s")
    lines = p.to_toml().splitlines()
    assert f'memory = "1GiB"  # from {tmp_path / "p.toml"}' in lines
    assert 'timeout = "5s"  # from --timeout' in lines
    assert 'cpu_time = "1m"  # built-in default' in lines
    assert 'require = ["seccomp"]  # built-in default' in lines


def test_env_vars_as_subtable(tmp_path):
    p = load('[env.vars]\nB = "2"\nA = "1"\n', tmp_path)
    assert p.env == (("B", "2"), ("A", "1"))


def test_unlimited_and_fuel_zero(tmp_path):
    p = load('[limits]\nmemory = "unlimited"\ntimeout = "none"\nfuel = 0\n', tmp_path)
    assert (p.limits.memory, p.limits.timeout, p.limits.fuel) == (None, None, 0)  # fuel 0: none at all


def test_boundary_values_accepted():
    p = Policy.from_toml_text(
        '[limits]\nmemory = "64KiB"\ntable_elements = 1\ntimeout = "1ms"\nopen_files = 4\nmodule_size = 8\n'
        "output = 1\nfile_size = 1\nfuel = 1\n",
        source="s",
        base_dir=Path("/"),
    )
    assert p.limits.memory == 65536
    assert p.limits.timeout == 0.001
    assert p.limits.open_files == 4


# ---------------------------------------------------------------- errors: file level


def test_missing_file(tmp_path):
    with pytest.raises(PolicyError) as info:
        Policy.from_toml(tmp_path / "nope.toml")
    assert str(info.value) == f"{tmp_path}/nope.toml: no such file"


def test_missing_file_relative(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PolicyError) as info:
        Policy.from_toml("policies/x.toml")
    assert str(info.value) == "policies/x.toml: no such file"
    assert info.value.source == "policies/x.toml"


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(PolicyError) as info:
        Policy.from_toml(tmp_path)
    assert str(info.value) == f"{tmp_path}: is a directory, not a policy file"


def test_not_utf8(tmp_path):
    (tmp_path / "p.toml").write_bytes(b'[env]\nvars = { A = "\xff" }\n')
    with pytest.raises(PolicyError) as info:
        Policy.from_toml(tmp_path / "p.toml")
    assert str(info.value) == f"{tmp_path}/p.toml: not UTF-8 text (bad byte at offset 20)"


@pytest.mark.parametrize(
    "text, message",
    [
        ("[limits]\nmemory = lots\n", "x.toml: line 2, column 10: invalid TOML: Invalid value"),
        ("[limits]\nmemory = 1\nmemory = 2\n", "x.toml: line 3, column 11: invalid TOML: Cannot overwrite a value"),
        ("[limits\n", "x.toml: line 1, column 8: invalid TOML: Expected ']' at the end of a table declaration"),
        ('[env]\nvars = { A = "x" ', "x.toml: end of file: invalid TOML: Unclosed inline table"),
    ],
)
def test_toml_syntax_error_names_file_and_line(text, message):
    assert error_of(text) == message


# ---------------------------------------------------------------- errors: unknown tables and keys


@pytest.mark.parametrize(
    "text, message",
    [
        ("[network]\nallow = true\n",
         "x.toml: [network]: unknown table; expected one of: [fs], [env], [limits], [sandbox]"),
        ("[[mounts]]\nx = 1\n",
         "x.toml: [mounts]: unknown table; expected one of: [fs], [env], [limits], [sandbox]"),
        ("memory = 5\n",
         "x.toml: memory: unknown key; expected one of the tables [fs], [env], [limits], [sandbox]"),
        ("[fs]\nroot = '/'\n", "x.toml: [fs] root: unknown key; expected one of: preopen, symlinks"),
        ("[fs.mount]\nx = 1\n", "x.toml: [fs.mount]: unknown table; expected one of the keys: preopen, symlinks"),
        ("[[fs.preopen]]\nhost = 'a'\nreadonly = true\n",
         "x.toml: [[fs.preopen]] #1 readonly: unknown key; expected one of: host, guest, mode"),
        ("[[fs.preopen]]\nhost = 'a'\n[[fs.preopen]]\nhots = 'b'\n",
         "x.toml: [[fs.preopen]] #2 hots: unknown key; expected one of: host, guest, mode"),
        ("[env]\nset = 1\n", "x.toml: [env] set: unknown key; expected one of: vars, inherit"),
        ("[env]\nset = {}\n", "x.toml: [env.set]: unknown table; expected one of the keys: vars, inherit"),
        ("[limits]\nmemroy = '1GiB'\n",
         "x.toml: [limits] memroy: unknown key; expected one of: memory, table_elements, timeout, cpu_time, fuel, "
         "output, open_files, file_size, disk, files, module_size, compile_timeout"),
        ("[limits.memory2]\nx = 1\n",
         "x.toml: [limits.memory2]: unknown table; expected one of the keys: memory, table_elements, timeout, "
         "cpu_time, fuel, output, open_files, file_size, disk, files, module_size, compile_timeout"),
        ("[sandbox]\nrequired = []\n", "x.toml: [sandbox] required: unknown key; expected one of: require"),
    ],
)
def test_unknown_tables_and_keys(text, message):
    assert error_of(text) == message


# ---------------------------------------------------------------- errors: wrong types


@pytest.mark.parametrize(
    "text, message",
    [
        ("fs = 3\n", "x.toml: [fs]: expected a table, got 3"),
        ("limits = []\n", "x.toml: [limits]: expected a table, got an array"),
        ("[fs]\npreopen = 'data'\n",
         "x.toml: [fs] preopen: expected an array of tables ([[fs.preopen]]), got 'data'"),
        ("[fs.preopen]\nhost = 'data'\n",
         "x.toml: [fs] preopen: expected an array of tables ([[fs.preopen]]), got a table"),
        ("[fs]\npreopen = ['data']\n",
         "x.toml: [fs] preopen: expected an array of tables ([[fs.preopen]]), got an array"),
        ("[[fs.preopen]]\nguest = '/d'\n", "x.toml: [[fs.preopen]] #1 host: required key is missing"),
        ("[[fs.preopen]]\nhost = 3\n", "x.toml: [[fs.preopen]] #1 host: expected a directory path, got 3"),
        ("[[fs.preopen]]\nhost = ''\n",
         "x.toml: [[fs.preopen]] #1 host: expected a directory path, got an empty string"),
        ("[[fs.preopen]]\nhost = \"a\\u0000b\"\n",
         "x.toml: [[fs.preopen]] #1 host: must not contain NUL, got 'a\\x00b'"),
        ("[[fs.preopen]]\nhost = 'a'\nguest = 3\n", "x.toml: [[fs.preopen]] #1 guest: expected a guest name, got 3"),
        ("[[fs.preopen]]\nhost = 'a'\nguest = ''\n",
         "x.toml: [[fs.preopen]] #1 guest: expected a guest name, got an empty string"),
        ("[[fs.preopen]]\nhost = 'a'\nguest = \"x\\u0000\"\n",
         "x.toml: [[fs.preopen]] #1 guest: must not contain NUL, got 'x\\x00'"),
        ("[[fs.preopen]]\nhost = 'a'\nmode = 3\n", 'x.toml: [[fs.preopen]] #1 mode: expected "ro" or "rw", got 3'),
        ("[[fs.preopen]]\nhost = 'a'\nmode = 'RO'\n",
         'x.toml: [[fs.preopen]] #1 mode: expected "ro" or "rw", got \'RO\''),
        ("[[fs.preopen]]\nhost = 'a'\nmode = true\n",
         'x.toml: [[fs.preopen]] #1 mode: expected "ro" or "rw", got true'),
        ("[env]\nvars = []\n", "x.toml: [env] vars: expected a table of strings, got an array"),
        ("[env]\nvars = 'A=1'\n", "x.toml: [env] vars: expected a table of strings, got 'A=1'"),
        ("[env]\nvars = { A = 1 }\n", "x.toml: [env] vars.A: expected a string, got 1"),
        ("[env]\nvars = { A = { B = 'x' } }\n", "x.toml: [env] vars.A: expected a string, got a table"),
        ("[env]\nvars = { \"\" = 'x' }\n", "x.toml: [env] vars: variable name must not be empty"),
        ("[env]\nvars = { \"A=B\" = 'x' }\n",
         "x.toml: [env] vars: variable name must not contain '=' or NUL, got 'A=B'"),
        ("[env]\nvars = { A = \"x\\u0000\" }\n", "x.toml: [env] vars.A: value must not contain NUL, got 'x\\x00'"),
        ("[env]\ninherit = 'HOME'\n", "x.toml: [env] inherit: expected an array of variable names, got 'HOME'"),
        ("[env]\ninherit = ['HOME', 3]\n", "x.toml: [env] inherit: item 2: expected a variable name, got 3"),
        ("[env]\ninherit = ['']\n", "x.toml: [env] inherit: variable name must not be empty"),
        ("[env]\ninherit = ['A=B']\n",
         "x.toml: [env] inherit: variable name must not contain '=' or NUL, got 'A=B'"),
        ("[limits]\nmemory = 'lots'\n", "x.toml: [limits] memory: expected a size such as 256MiB, got 'lots'"),
        ("[limits]\nmemory = 1.5\n", "x.toml: [limits] memory: expected a size such as 256MiB, got 1.5"),
        ("[limits]\nmemory = true\n", "x.toml: [limits] memory: expected a size such as 256MiB, got true"),
        ("[limits]\ntable_elements = '10k'\n", "x.toml: [limits] table_elements: expected a whole number, got '10k'"),
        ("[limits]\ntable_elements = 1.0\n", "x.toml: [limits] table_elements: expected a whole number, got 1.0"),
        ("[limits]\ntimeout = 'forever'\n",
         "x.toml: [limits] timeout: expected a duration such as 10s, 1.5s or 200ms, got 'forever'"),
        ("[limits]\ntimeout = [10]\n",
         "x.toml: [limits] timeout: expected a duration such as 10s, 1.5s or 200ms, got an array"),
        ("[limits]\ncpu_time = 1979-05-27\n",
         "x.toml: [limits] cpu_time: expected a duration such as 10s, 1.5s or 200ms, got a date/time (1979-05-27)"),
        ("[limits]\nfuel = '1e9'\n", "x.toml: [limits] fuel: expected a whole number, got '1e9'"),
        ("[limits]\noutput = {}\n", "x.toml: [limits] output: expected a size such as 256MiB, got a table"),
        ("[limits]\nopen_files = '256 files'\n",
         "x.toml: [limits] open_files: expected a whole number, got '256 files'"),
        ("[limits]\nfile_size = 'big'\n", "x.toml: [limits] file_size: expected a size such as 256MiB, got 'big'"),
        ("[limits]\nmodule_size = false\n",
         "x.toml: [limits] module_size: expected a size such as 256MiB, got false"),
        ("[limits]\ncompile_timeout = '30 sec'\n",
         "x.toml: [limits] compile_timeout: expected a duration such as 10s, 1.5s or 200ms, got '30 sec'"),
        ("[sandbox]\nrequire = 'seccomp'\n",
         "x.toml: [sandbox] require: expected an array of layer names, got 'seccomp'"),
        ("[sandbox]\nrequire = [1]\n", "x.toml: [sandbox] require: item 1: expected a layer name, got 1"),
        ("[sandbox]\nrequire = ['seccomp', 'apparmor']\n",
         "x.toml: [sandbox] require: unknown layer 'apparmor'; valid layers: seccomp, landlock, userns, mountns, "
         "netns, openat2, cgroup"),
    ],
)
def test_wrong_types(text, message):
    assert error_of(text) == message


# ---------------------------------------------------------------- errors: impossible values


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("memory", "0", "must be at least 64KiB (one wasm page), got 0"),
        ("memory", "'1KiB'", "must be at least 64KiB (one wasm page), got '1KiB'"),
        ("memory", "-1", "must not be negative, got -1"),
        ("memory", "'512TiB'", "must be at most 256TiB, got '512TiB'"),
        ("table_elements", "0", "must be at least 1, got 0"),
        ("table_elements", "4294967297", "must be at most 4294967296, got 4294967297"),
        ("timeout", "0", "must be at least 1ms, got 0"),
        ("timeout", "'0s'", "must be at least 1ms, got '0s'"),
        ("timeout", "'500us'", "must be at least 1ms, got '500us'"),
        ("timeout", "-5", "must not be negative, got -5"),
        ("timeout", "inf", "expected a duration such as 10s, 1.5s or 200ms, got inf"),
        ("timeout", "nan", "expected a duration such as 10s, 1.5s or 200ms, got nan"),
        ("timeout", "'366d'", "must be at most 365d, got '366d'"),
        ("cpu_time", "0.0", "must be at least 1ms, got 0.0"),
        ("fuel", "-1", "must not be negative, got -1"),
        ("output", "0", "must be at least 1, got 0"),
        ("output", "'2TiB'", "must be at most 1TiB, got '2TiB'"),
        ("open_files", "3", "must be at least 4 (stdin, stdout, stderr and one more), got 3"),
        ("open_files", "0", "must be at least 4 (stdin, stdout, stderr and one more), got 0"),
        ("open_files", "2000000", "must be at most 1048576, got 2000000"),
        ("file_size", "0", "must be at least 1, got 0"),
        ("module_size", "7", "must be at least 8 (the smallest module: magic and version), got 7"),
        ("compile_timeout", "'0ms'", "must be at least 1ms, got '0ms'"),
    ],
)
def test_impossible_values(key, value, message):
    assert error_of(f"[limits]\n{key} = {value}\n") == f"x.toml: [limits] {key}: {message}"


# ---------------------------------------------------------------- the model's classes (attrs)


def test_frozen():
    p = Policy.default()
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        p.env = ()  # type: ignore[misc]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        p.limits.memory = 1  # type: ignore[misc]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        Preopen(Path("/a"), "a").mode = "ro"  # type: ignore[misc]
    assert hash(p) == hash(Policy.default())


def test_limits_constructor_normalizes():
    assert Limits(memory="1GiB", timeout="2s", fuel="unlimited", cpu_time=3) == Limits(memory=GiB, timeout=2.0,
                                                                                       cpu_time=3.0)
    assert type(Limits(cpu_time=3).cpu_time) is float
    with pytest.raises(PolicyError) as info:
        Limits(memory=0)
    assert str(info.value) == "Limits: memory: must be at least 64KiB (one wasm page), got 0"


def test_preopen_constructor(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert Preopen("rel", "g").host == tmp_path / "rel"
    assert Preopen(Path("/x"), "g").mode == "rw"
    with pytest.raises(PolicyError) as info:
        Preopen(Path("/x"), "g", "rx")  # type: ignore[arg-type]
    assert str(info.value) == "Preopen: mode: expected \"ro\" or \"rw\", got 'rx'"
    with pytest.raises(PolicyError) as info:
        Preopen(Path("/x"), "")
    assert str(info.value) == "Preopen: guest: expected a guest name, got an empty string"


def test_sandbox_policy_constructor():
    assert SandboxPolicy(["landlock", "seccomp", "landlock"]).require == ("landlock", "seccomp")
    with pytest.raises(PolicyError) as info:
        SandboxPolicy("seccomp")  # type: ignore[arg-type]
    assert str(info.value) == "SandboxPolicy: require: expected a sequence of layer names, got 'seccomp'"
    with pytest.raises(PolicyError) as info:
        SandboxPolicy(("selinux",))
    assert str(info.value) == (
        "SandboxPolicy: require: unknown layer 'selinux'; valid layers: " + ", ".join(SANDBOX_LAYERS)
    )


def test_policy_constructor_normalizes_env():
    p = Policy(env={"A": "1", "B": "2"}, inherit_env=["H", "H"])
    assert p.env == (("A", "1"), ("B", "2"))
    assert p.inherit_env == ("H",)
    p = Policy(env=(("A", "1"), ("B", "2"), ("A", "3")))
    assert p.env == (("A", "3"), ("B", "2"))
    with pytest.raises(PolicyError) as info:
        Policy(inherit_env="HOME")  # type: ignore[arg-type]
    assert str(info.value) == "Policy: inherit_env: expected a sequence of variable names, got 'HOME'"


# ---------------------------------------------------------------- with_* methods


def test_with_preopen(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    base = Policy.default()
    p = base.with_preopen(".")
    assert base.preopens == ()
    assert p.preopens == (Preopen(tmp_path, ".", "rw"),)
    q = p.with_preopen("data", "/data", mode="ro")
    assert p.preopens == (Preopen(tmp_path, ".", "rw"),)
    assert q.preopens[1] == Preopen(tmp_path / "data", "/data", "ro")
    r = q.with_preopen(Preopen(Path("/abs"), "abs", "ro"))
    assert r.preopens[-1] == Preopen(Path("/abs"), "abs", "ro")
    assert r.limits is base.limits
    with pytest.raises(PolicyError) as info:
        base.with_preopen("x", mode="wr")  # type: ignore[arg-type]
    assert str(info.value) == "--dir: expected \"ro\" or \"rw\", got 'wr'"
    with pytest.raises(PolicyError) as info:
        base.with_preopen("")
    assert str(info.value) == "--dir: expected a directory path, got an empty string"


def test_with_env():
    base = Policy.from_toml_text(
        '[env]\nvars = { A = "1", B = "2" }\ninherit = ["HOME"]\n', source="s", base_dir=Path("/")
    )
    p = base.with_env("A", "10")
    assert p.env == (("A", "10"), ("B", "2"))  # replaced in place
    assert base.env == (("A", "1"), ("B", "2"))  # original unchanged
    q = p.with_env("HOME", "/root")  # an explicit value overrides an inherit
    assert q.inherit_env == ()
    assert q.env == (("A", "10"), ("B", "2"), ("HOME", "/root"))
    r = base.with_env("TERM")
    assert r.inherit_env == ("HOME", "TERM")
    assert r.env == base.env
    assert r.with_env("TERM") == r
    with pytest.raises(PolicyError) as info:
        base.with_env("", "x")
    assert str(info.value) == "--env: variable name must not be empty"
    with pytest.raises(PolicyError) as info:
        base.with_env("A=B", "x")
    assert str(info.value) == "--env: variable name must not contain '=' or NUL, got 'A=B'"
    with pytest.raises(PolicyError) as info:
        base.with_env("A", "x\0")
    assert str(info.value) == "--env: A: value must not contain NUL, got 'x\\x00'"


def test_with_limits():
    base = Policy.default()
    p = base.with_limits(memory="1GiB", timeout="2s", fuel=1000, cpu_time=1.5, open_files="64")
    assert p.limits.memory == GiB
    assert p.limits.timeout == 2.0
    assert p.limits.fuel == 1000
    assert p.limits.cpu_time == 1.5
    assert p.limits.open_files == 64
    assert p.limits.output == 64 * MiB  # untouched
    assert base.limits == Policy.default().limits  # original unchanged
    assert base.with_limits(timeout=None).limits.timeout is None
    assert base.with_limits(timeout="unlimited").limits.timeout is None
    assert base.with_limits(fuel=0).limits.fuel == 0  # as wasmtime's -W fuel=0: no fuel at all
    assert base.with_limits() == base


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"memroy": "1GiB"},
         "limits: memroy: unknown limit; expected one of: memory, table_elements, timeout, cpu_time, fuel, output, "
         "open_files, file_size, disk, files, module_size, compile_timeout"),
        ({"memory": "lots"}, "--memory: expected a size such as 256MiB, got 'lots'"),
        ({"cpu_time": "0s"}, "--cpu-time: must be at least 1ms, got '0s'"),
        ({"open_files": 2}, "--open-files: must be at least 4 (stdin, stdout, stderr and one more), got 2"),
        ({"module_size": 1.5}, "--module-size: expected a size such as 256MiB, got 1.5"),
    ],
)
def test_with_limits_errors(changes, message):
    with pytest.raises(PolicyError) as info:
        Policy.default().with_limits(**changes)
    assert str(info.value) == message


def test_with_limits_custom_source():
    with pytest.raises(PolicyError) as info:
        Policy().with_limits("--memory-limit", memory="x")
    assert str(info.value) == "--memory-limit: memory: expected a size such as 256MiB, got 'x'"


def test_with_require():
    base = Policy.default()
    p = base.with_require("landlock", "seccomp", "userns")
    assert p.sandbox.require == ("seccomp", "landlock", "userns")
    assert base.sandbox.require == ("seccomp",)
    assert Policy().with_require(["netns", "cgroup"]).sandbox.require == ("netns", "cgroup")
    with pytest.raises(PolicyError) as info:
        base.with_require("selinux")
    assert str(info.value) == (
        "--require: unknown layer 'selinux'; valid layers: seccomp, landlock, userns, mountns, netns, openat2, cgroup"
    )


# ---------------------------------------------------------------- resolved_env


def test_resolved_env():
    p = Policy(env=(("A", "1"), ("B", "2")), inherit_env=("HOME", "MISSING", "A"))
    host = {"HOME": "/home/u", "A": "host", "OTHER": "x"}
    assert p.resolved_env(host) == [("A", "host"), ("B", "2"), ("HOME", "/home/u")]
    assert p.resolved_env({}) == [("A", "1"), ("B", "2")]


def test_resolved_env_nothing_inherited_by_default():
    assert Policy.default().resolved_env(dict(os.environ)) == []


def test_resolved_env_last_wins_first_position():
    p = Policy(env=(("X", "1"), ("Y", "2"), ("X", "3")))
    assert p.resolved_env({}) == [("X", "3"), ("Y", "2")]
    q = Policy().with_env("X", "1").with_env("Y", "2").with_env("X", "3")
    assert q.resolved_env({"X": "h"}) == [("X", "3"), ("Y", "2")]


def test_file_value_is_fallback_for_inherited_flag():
    p = Policy.from_toml_text('[env]\nvars = { HOME = "/tmp" }\n', source="s", base_dir=Path("/"))
    q = p.with_env("HOME")
    assert q.resolved_env({"HOME": "/home/u"}) == [("HOME", "/home/u")]
    assert q.resolved_env({}) == [("HOME", "/tmp")]


# ---------------------------------------------------------------- to_toml round trip


def test_to_toml_text():
    p = Policy(
        preopens=(Preopen(Path("/srv/data"), "/data", "ro"),),
        env=(("LANG", "C"), ("weird name", 'q"\\\n')),
        inherit_env=("HOME",),
        limits=Limits(memory=256 * MiB, timeout=1.5, open_files=10, output=1000),
        sandbox=SandboxPolicy(("seccomp",)),
        source="p.toml",
    )
    assert p.to_toml() == (
        "# wasijail policy (effective)\n"
        "# from: p.toml\n"
        "\n"
        "[fs]\n"
        'symlinks = "confined"  # built-in default\n'
        "\n"
        "[[fs.preopen]]\n"
        'host = "/srv/data"\n'
        'guest = "/data"\n'
        'mode = "ro"\n'
        "\n"
        "[env]\n"
        'inherit = ["HOME"]\n'
        "\n"
        "[env.vars]\n"
        'LANG = "C"\n'
        '"weird name" = "q\\"\\\\\\n"\n'
        "\n"
        "[limits]\n"
        'memory = "256MiB"  # built-in default\n'
        'table_elements = "unlimited"\n'
        'timeout = "1500ms"\n'
        'cpu_time = "unlimited"\n'
        'fuel = "unlimited"  # built-in default\n'
        "output = 1000\n"
        "open_files = 10\n"
        'file_size = "unlimited"\n'
        'disk = "unlimited"\n'
        'files = "unlimited"\n'
        'module_size = "unlimited"\n'
        'compile_timeout = "unlimited"\n'
        "\n"
        "[sandbox]\n"
        'require = ["seccomp"]  # built-in default\n'
    )
    assert Policy.from_toml_text(p.to_toml(), source="p.toml", base_dir=Path("/x")) == p


def test_to_toml_unrepresentable_path():
    p = Policy(preopens=(Preopen(Path("/srv/\udcff"), "g"),), source="s")
    with pytest.raises(PolicyError) as info:
        p.to_toml()
    assert str(info.value) == (
        "s: [[fs.preopen]] #1 host: cannot be written as TOML: not valid Unicode (a non-UTF-8 path?)"
    )


NO_NUL = st.text(min_size=1).filter(lambda s: "\0" not in s)
ENV_NAME = st.text(min_size=1).filter(lambda s: "\0" not in s and "=" not in s)
PATH_PART = st.text(min_size=1, max_size=8).filter(lambda s: "\0" not in s and "/" not in s)


def limit_values(key):
    from wasijail.policy import LIMITS

    spec = LIMITS[key]
    if spec.kind == "duration":
        return st.floats(min_value=spec.minimum, max_value=spec.maximum, allow_nan=False)
    return st.integers(min_value=spec.minimum, max_value=spec.maximum)


@st.composite
def policies(draw):
    preopens = tuple(
        Preopen(Path("/", *draw(st.lists(PATH_PART, max_size=4))), guest, draw(st.sampled_from(["ro", "rw"])))
        for guest in draw(st.lists(NO_NUL, max_size=3, unique=True))  # a guest name is granted once
    )
    env = tuple(draw(st.dictionaries(ENV_NAME, st.text().filter(lambda s: "\0" not in s), max_size=4)).items())
    inherit = tuple(draw(st.lists(ENV_NAME, max_size=4, unique=True)))
    limits = Limits(**{k: draw(st.none() | limit_values(k)) for k in LIMIT_KEYS})
    require = tuple(draw(st.lists(st.sampled_from(SANDBOX_LAYERS), unique=True)))
    source = draw(st.none() | NO_NUL)
    return Policy(preopens, env, inherit, limits, SandboxPolicy(require), source)


@settings(max_examples=300)
@given(policies())
def test_to_toml_round_trips(p):
    text = p.to_toml()
    again = Policy.from_toml_text(text, source="round.toml", base_dir=Path("/unused"))
    assert again == attrs.evolve(p, source="round.toml")


@given(p=policies())
def test_to_toml_round_trips_through_a_file(p, tmp_path_factory):
    path = tmp_path_factory.mktemp("rt") / "p.toml"
    path.write_text(p.to_toml(), encoding="utf-8")
    assert Policy.from_toml(path) == attrs.evolve(p, source=str(path))


# --- [fs] symlinks ----------------------------------------------------------------


def test_symlinks_mode_from_file_flag_and_default(tmp_path):
    assert Policy().symlinks == "confined"
    assert Policy.default().symlinks == "confined"
    f = tmp_path / "p.toml"
    f.write_text('[fs]\nsymlinks = "wasi"\n')
    p = Policy.from_toml(f)
    assert p.symlinks == "wasi"
    assert p.with_symlinks("confined").symlinks == "confined"  # a flag overrides the file
    again = Policy.from_toml_text(p.to_toml(), source="again", base_dir=tmp_path)
    assert again.symlinks == "wasi"
    assert f'[fs]\nsymlinks = "wasi"  # from {f}\n' in p.to_toml()


@pytest.mark.parametrize("text, message", [
    ('[fs]\nsymlinks = "follow"\n', "x.toml: [fs] symlinks: expected one of 'confined', 'wasi', got 'follow'"),
    ("[fs]\nsymlinks = 1\n", "x.toml: [fs] symlinks: expected one of 'confined', 'wasi', got 1"),
])
def test_symlinks_mode_errors(tmp_path, text, message):
    with pytest.raises(PolicyError) as info:
        Policy.from_toml_text(text, source="x.toml", base_dir=tmp_path)
    assert str(info.value) == message
    with pytest.raises(PolicyError) as info:
        Policy().with_symlinks("WASI")
    assert str(info.value).startswith("--symlinks: expected one of 'confined', 'wasi'")


def test_policy_error_is_a_wasijail_error():
    """One `except WasijailError` catches a bad policy too (it stays a ValueError, as it was)."""
    from wasijail import WasijailError

    with pytest.raises(WasijailError):
        Policy().with_limits(memory="lots")
    assert issubclass(PolicyError, ValueError)


# ---------------------------------------------------------------- one schema: every door, every limit


def _flag_error(argv: list[str], capsys) -> str:
    from wasijail import cli

    parser = cli._Parser(prog="t")
    cli.add_policy_flags(parser)
    with pytest.raises(SystemExit):
        cli.build_policy(parser.parse_args(argv))
    return capsys.readouterr().err.removeprefix("wasijail: error: ").rstrip("\n")


def _manifest_error(tmp_path: Path, limits: dict) -> str:
    import json

    from wasijail.batch import ManifestError, load_manifest

    manifest = tmp_path / "jobs.jsonl"
    manifest.write_text(json.dumps({"id": "j", "module": "m.wasm", "limits": limits}) + "\n")
    with pytest.raises(ManifestError) as info:
        load_manifest(manifest)
    return str(info.value)


@pytest.mark.parametrize("name", LIMIT_KEYS)
def test_each_limit_of_the_spec_is_a_flag_a_shown_key_and_round_trips(name, tmp_path):
    """A limit defined once in Limits is a --flag, a -W key, a key of `policy show` and of the policy file,
    and is in the docstring and --help, with no other list to keep in step."""
    from wasijail import cli
    from wasijail.flags import W_LIMITS
    from wasijail.policy import LIMITS, limit_flag

    spec = LIMITS[name]
    parser = cli._Parser(prog="t")
    cli.add_policy_flags(parser)
    help_text = parser.format_help()
    flag = limit_flag(name)
    assert f"{flag} {spec.metavar}" in help_text
    assert W_LIMITS[flag[2:]] == name
    assert f"``{name}``" in (Limits.__doc__ or "")
    value = spec.format(spec.maximum)
    ns = parser.parse_args([flag, value])
    policy = cli.build_policy(ns)
    shown = policy.to_toml()
    line = next(line for line in shown.splitlines() if line.startswith(f"{name} = "))
    assert line.endswith(f"  # from {flag}")
    again = Policy.from_toml_text(shown, source="shown.toml", base_dir=tmp_path)
    assert getattr(again.limits, name) == getattr(policy.limits, name) == spec.parse(value, source="", key="")
    # the file's key, unlimited
    lifted = Policy.from_toml_text(f'[limits]\n{name} = "unlimited"\n', source="p.toml", base_dir=tmp_path)
    assert getattr(lifted.limits, name) is None


@pytest.mark.parametrize("name", LIMIT_KEYS)
@pytest.mark.parametrize("bad", ["lots", "-1", "99999999999999999999TiB"])
def test_each_limit_is_validated_alike_at_every_door(name, bad, tmp_path, capsys):
    """The file, the --flag, -W, a manifest's limits and the API's keyword report one problem, each
    naming where the value came from."""
    from wasijail.policy import limit_flag

    with pytest.raises(PolicyError) as info:
        Limits(**{name: bad})
    problem = info.value.problem
    assert str(info.value) == f"Limits: {name}: {problem}"
    assert error_of(f'[limits]\n{name} = "{bad}"\n') == f"x.toml: [limits] {name}: {problem}"
    assert _flag_error([limit_flag(name), bad], capsys) == f"{limit_flag(name)}: {problem}"
    option = limit_flag(name)[2:]
    assert _flag_error(["-W", f"{option}={bad}"], capsys) == f"-W: {option}: {problem}"
    assert _manifest_error(tmp_path, {name: bad}) == f"{tmp_path / 'jobs.jsonl'}:1: limits: {name}: {problem}"
    with pytest.raises(PolicyError) as info:
        Policy().with_limits(**{name: bad})
    assert str(info.value) == f"{limit_flag(name)}: {problem}"


def test_a_manifest_keeps_the_checked_limits_and_preopens(tmp_path):
    """Manifest limits and preopens go through the policy's doors once; the job holds the values."""
    import json

    from wasijail.batch import job_policy, load_manifest

    manifest = tmp_path / "jobs.jsonl"
    manifest.write_text(json.dumps({"id": "j", "module": "m.wasm", "limits": {"memory": "1GiB", "fuel": "none"},
                                    "preopens": ["data::/data::ro", {"host": "out", "guest": "/out"}]}) + "\n")
    job, = load_manifest(manifest)
    assert job.limits == {"memory": GiB, "fuel": None}
    assert job.preopens == (Preopen(tmp_path / "data", "/data", "ro"), Preopen(tmp_path / "out", "/out", "rw"))
    policy = job_policy(Policy.default(), job)
    assert policy.limits.memory == GiB and policy.preopens == job.preopens


@pytest.mark.parametrize("item, message", [
    ({"host": 3}, "preopens[0]: host: expected a directory path, got 3"),
    ({"host": "a", "mode": "rx"}, "preopens[0]: mode: expected \"ro\" or \"rw\", got 'rx'"),
    ("a::b::x", "preopens[0]: --dir: unknown mode 'x' in 'a::b::x'; expected ro or rw"),
])
def test_manifest_preopen_errors_are_named(item, message, tmp_path):
    import json

    from wasijail.batch import ManifestError, load_manifest

    manifest = tmp_path / "jobs.jsonl"
    manifest.write_text(json.dumps({"id": "j", "module": "m.wasm", "preopens": [item]}) + "\n")
    with pytest.raises(ManifestError) as info:
        load_manifest(manifest)
    assert str(info.value) == f"{manifest}:1: {message}"


@settings(max_examples=200)
@given(p=policies(), origins=st.lists(st.tuples(st.sampled_from(
    [f"limits.{k}" for k in LIMIT_KEYS] + ["fs.symlinks", "env.vars", "env.inherit", "sandbox.require"]), NO_NUL),
    max_size=4))
def test_to_toml_is_valid_toml_whatever_marks_it_carries(p, origins):
    """tomlkit writes the document: every mark (a file name, a flag) stays a comment, and the values read
    back the same."""
    import tomllib

    marked = attrs.evolve(p, origins=tuple(origins))
    text = marked.to_toml()
    tomllib.loads(text)
    assert Policy.from_toml_text(text, source="s", base_dir=Path("/")) == attrs.evolve(p, source="s")


def test_readme_limit_table_lists_the_spec():
    """README's table of limits names every limit of the spec, its flag and wasmtime's -W key, in order."""
    from wasijail.policy import LIMITS, limit_flag

    rows = [line for line in (REPO / "README.md").read_text().splitlines() if line.startswith("| `")
            and " / `--" in line]
    assert [row.split("`")[1] for row in rows] == list(LIMITS)
    for row, (name, spec) in zip(rows, LIMITS.items()):
        assert row.startswith(f"| `{name}` / `{limit_flag(name)}` |")
        assert row.rstrip().endswith(f"| `{spec.wasmtime}=` |" if spec.wasmtime else "| |")


@pytest.mark.parametrize("env, message", [
    ({"A=B": "x"}, "env: variable name must not contain '=' or NUL, got 'A=B'"),
    ({"": "x"}, "env: variable name must not be empty"),
    ({"A": "x\0"}, "env: A: value must not contain NUL, got 'x\\x00'"),
])
def test_manifest_env_is_checked_by_the_policy(env, message, tmp_path):
    """A manifest's env goes through the same checks as [env] vars and --env, named as the manifest's."""
    import json

    from wasijail.batch import ManifestError, load_manifest

    manifest = tmp_path / "jobs.jsonl"
    manifest.write_text(json.dumps({"id": "j", "module": "m.wasm", "env": env}) + "\n")
    with pytest.raises(ManifestError) as info:
        load_manifest(manifest)
    assert str(info.value) == f"{manifest}:1: {message}"


# ---------------------------------------------------------------- policy show keeps the file's comments


def test_policy_show_keeps_the_default_policys_comments():
    """Shown onto the default policy's own text, every comment line of default_policy.toml is kept, in
    order, and the result loads back to the same settings."""
    from wasijail.policy import default_policy_text

    text = default_policy_text()
    shown = Policy.default().with_limits(timeout="5s").to_toml(text)
    comments = [line for line in text.splitlines() if line.lstrip().startswith("#")]
    shown_lines = iter(shown.splitlines())
    assert all(any(line == comment for line in shown_lines) for comment in comments)  # a subsequence
    assert shown.startswith("# wasijail policy (effective)\n# from: built-in\n\n# wasijail default policy")
    assert 'timeout = "5s"  # from --timeout' in shown.splitlines()
    again = Policy.from_toml_text(shown, source="s", base_dir=Path("/"))
    assert again == attrs.evolve(Policy.default().with_limits(timeout="5s"), source="s")


@pytest.mark.parametrize("name", ["default", "strict", "dev"])
def test_shipped_policies_shown_with_their_comments_round_trip(name, tmp_path):
    text = (POLICIES / f"{name}.toml").read_text()
    p = Policy.from_toml(POLICIES / f"{name}.toml").with_preopen(str(tmp_path), "/t").with_limits(memory="1GiB")
    shown = p.to_toml(text)
    assert Policy.from_toml_text(shown, source="s", base_dir=Path("/")) == attrs.evolve(p, source="s")
    # shown again onto itself: one header, the same settings
    again = Policy.from_toml_text(shown, source="s", base_dir=Path("/")).to_toml(shown)
    assert again.count("# wasijail policy (effective)") == 1
    assert Policy.from_toml_text(again, source="s", base_dir=Path("/")) == attrs.evolve(p, source="s")


@settings(max_examples=150)
@given(p=policies(), q=policies())
def test_to_toml_onto_any_template_round_trips(p, q):
    """Whatever policy file the template is, what is shown is the effective policy."""
    shown = q.to_toml(p.to_toml())
    assert Policy.from_toml_text(shown, source="s", base_dir=Path("/")) == attrs.evolve(q, source="s")


def test_to_toml_onto_a_template_keeps_values_with_unicode_line_separators():
    """U+0085 and U+2028 are line breaks to str.splitlines, not to TOML: a value holding one stays whole."""
    p = Policy(env=(("A", "x\x85y"), ("B", "\u2028")))
    shown = p.to_toml(Policy().to_toml())
    assert Policy.from_toml_text(shown, source="s", base_dir=Path("/")).env == p.env
