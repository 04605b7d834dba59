"""A guest planting symlinks for host tools that later read its directory.

Through the real CLI, fork server and locked-down child: tests/programs/
pathops.wasm makes links with symlink/symlinkat and moves them with rename,
then every link in the tree is followed as a host tool would follow it
(helpers.links_leading_out). The broker-level cases, and what a child
claiming anything gets, are in tests/test_broker.py; a hypothesis test of
whole scripts is in tests/fuzz/test_symlink_confinement.py.
"""

from __future__ import annotations

import pytest

from helpers import assert_one_line_error, links_leading_out, program, text, wasijail


@pytest.fixture
def box(tmp_path):
    root = tmp_path / "box"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "file.txt").write_text("inside")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_text("secret\n")
    return root


def run(box, *ops: str, flags: tuple[str, ...] = ()) -> list[str]:
    proc = wasijail("run", *flags, f"--dir={box}::/d", program("pathops.wasm"), *ops)
    assert (proc.returncode, text(proc.stderr)) == (0, "")
    return text(proc.stdout).splitlines()


REFUSED = "ERR Operation not permitted"


def test_confined_links_never_lead_host_tools_out(box):
    lines = run(box,
                "symlink", "../outside/secret.txt", "/d/evil",  # the audit's case
                "symlink", "..", "/d/up",
                "symlink", "./..", "/d/dotup",
                "symlink", "sub/../../outside", "/d/through",
                "symlink", "sub/../file.txt", "/d/ambiguous",  # ".." after a name: refused
                "symlinkat", "/d/sub", "../../outside", "out",  # a directory handle one level down
                "symlinkat", "/d/sub/deeper", "../../../outside", "out",
                "symlink", "file.txt", "/d/plain",
                "symlinkat", "/d/sub", "../file.txt", "up",  # climbs, and stays inside
                "symlinkat", "/d/sub/deeper", "../..", "top",
                "rename", "/d/sub/up", "/d/up_moved",  # moved up a level it would climb out
                "rename", "/d/sub/deeper", "/d/deeper",  # a directory holding "../..": likewise
                "link", "/d/sub/up", "/d/up_linked",
                "read", "/d/sub/up")
    assert lines == [
        f"symlink ../outside/secret.txt /d/evil: {REFUSED}",
        f"symlink .. /d/up: {REFUSED}",
        f"symlink ./.. /d/dotup: {REFUSED}",
        f"symlink sub/../../outside /d/through: {REFUSED}",
        f"symlink sub/../file.txt /d/ambiguous: {REFUSED}",
        f"symlinkat /d/sub ../../outside out: {REFUSED}",
        f"symlinkat /d/sub/deeper ../../../outside out: {REFUSED}",
        "symlink file.txt /d/plain: ok",
        "symlinkat /d/sub ../file.txt up: ok",
        "symlinkat /d/sub/deeper ../.. top: ok",
        f"rename /d/sub/up /d/up_moved: {REFUSED}",
        "rename /d/sub/deeper /d/deeper: ERR Cross-device link",
        f"link /d/sub/up /d/up_linked: {REFUSED}",
        "read /d/sub/up: ok inside",
    ]
    assert links_leading_out(box) == []
    assert sorted(p.name for p in box.iterdir()) == ["file.txt", "plain", "sub"]


def test_wasi_mode_makes_links_as_wasi_does_and_still_confines_them(box):
    lines = run(box, "symlink", "../outside/secret.txt", "/d/evil", "symlink", "..", "/d/up",
                "read", "/d/evil", "readlink", "/d/up", "symlink", "/etc/passwd", "/d/abs",
                flags=("--symlinks", "wasi"))
    assert lines == [
        "symlink ../outside/secret.txt /d/evil: ok",
        "symlink .. /d/up: ok",
        "read /d/evil: ERR Capabilities insufficient",  # the runtime never follows it out
        "readlink /d/up: ok ..",
        f"symlink /etc/passwd /d/abs: {REFUSED}",  # absolute: never, as in wasmtime
    ]
    assert sorted(links_leading_out(box)) == ["evil -> ../outside/secret.txt", "up -> .."]


def test_symlinks_mode_in_policy_show_and_bad_values(tmp_path):
    def fs_table(out: str) -> list[str]:  # the [fs] table's lines (the default's come with its comments)
        return out.split("\n[fs]\n", 1)[1].split("\n[", 1)[0].splitlines()

    shown = wasijail("policy", "show")
    assert 'symlinks = "confined"  # built-in default' in fs_table(text(shown.stdout))
    shown = wasijail("policy", "show", "--symlinks", "wasi")
    assert 'symlinks = "wasi"  # from --symlinks' in fs_table(text(shown.stdout))
    policy = tmp_path / "p.toml"
    policy.write_text('[fs]\nsymlinks = "wasi"\n')
    shown = wasijail("policy", "show", "--policy", policy)
    assert f'[fs]\nsymlinks = "wasi"  # from {policy}\n' in text(shown.stdout)
    shown = wasijail("policy", "show", "--policy", policy, "--symlinks", "confined")
    assert '[fs]\nsymlinks = "confined"  # from --symlinks\n' in text(shown.stdout)  # the flag wins
    bad = wasijail("run", "--symlinks", "follow", program("exit7.wasm"))
    assert assert_one_line_error(bad, 2) == (  # a usage error, as every bad flag
        "wasijail: error: --symlinks: expected one of 'confined', 'wasi', got 'follow'")
