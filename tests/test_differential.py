"""Differential: the same modules under wasijail and under wasmtime-py's own WASI.

wasmtime-py's in-process WASI (`Linker.define_wasi` with a `WasiConfig`:
argv, env, `preopen_dir`, stdin/stdout files) runs each conformance section
of `wasi_conf_p1.wasm` and a few other programs; its output must equal
wasijail's expected output (`test_wasi_conformance.EXPECTED`) with exactly the
line differences listed in DIFFERENCES, each for one of the reasons in
INTENDED. A listed line that no longer differs fails the test too, so the list
stays true. The README's WASI section gives the same list.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import wasmtime
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from wasijail.child.runner import make_engine
from wasijail.policy import Policy
from wasijail.supervisor import open_supervisor

from helpers import program
from test_wasi_conformance import ENV, EXPECTED, SANDBOX, SECTIONS, make_sandbox, run_section

# Why wasijail and wasmtime-py (50) answer differently, one entry per decision.
INTENDED = {
    "escape": "a path that leaves its preopen is ENOTCAPABLE ('Capabilities insufficient', as the "
              "WASI tutorial shows); wasmtime-py says EPERM",
    "read-only": "a read-only preopen lacks every mutating right, so changing its tree is "
                 "ENOTCAPABLE, as its fd_fdstat_get rights say; wasmtime-py says EPERM",
    "whole iovecs": "fd_read/fd_write use readv/writev over every iovec; wasmtime-py moves only the "
                    "first non-empty one (a short count, which POSIX allows; libc loops either way)",
    "fd_allocate": "fd_allocate reserves the space (posix_fallocate); wasmtime-py answers ENOTSUP",
    "directory fsync": "fd_sync on a directory flushes it, as programs do after a rename; "
                       "wasmtime-py answers EBADF",
    "link follow": "path_link with SYMLINK_FOLLOW links the symlink's target (linkat "
                   "AT_SYMLINK_FOLLOW), confined like any lookup; wasmtime-py answers EINVAL",
    "cpu clocks": "clock_res_get/clock_time_get serve PROCESS_CPUTIME_ID and THREAD_CPUTIME_ID; "
                  "wasmtime-py answers EBADF",
    "rights": "fd_fdstat_set_rights drops rights and every call then checks them (ENOTCAPABLE); "
              "wasmtime-py answers ENOTSUP and ignores rights",
    "rights masks": "fd_fdstat_get reports the rights that mean something for the descriptor's "
                    "type; wasmtime-py reports every right, directory rights too, for a file",
    "efault": "an out-of-bounds guest pointer is EFAULT and the module goes on; wasmtime-py "
              "traps (the witx documents allow both)",
    "invalid values": "an enum or flags value out of range is EINVAL; wasmtime-py traps",
    "wasi_unstable": "wasmtime-py defines no wasi_unstable, so preview0 modules do not link there",
}

_ESCAPES = {
    "path": ["path_rename to escape", "path_link to escape", "path_filestat_get ..",
             "path_filestat_get /", "path_open ../outside.txt", "path_open dir4/../../outside.txt",
             "path_open absolute"],
    "symlink": ["path_open escaping link follow", "path_open host up_link follow",
                "path_open host abs_link follow", "path_filestat_get abs_link follow",
                "path_filestat_get up_link follow"],
    "times": ["path_filestat_set_times escape"],
}
_READ_ONLY = ["path_open for writing", "path_open CREAT", "path_open TRUNC", "path_create_directory",
              "path_unlink_file", "path_rename", "path_symlink", "path_link",
              "path_filestat_set_times", "fd_filestat_set_times preopen"]

# (section, wasijail's line, wasmtime-py's line, reason)
DIFFERENCES: list[tuple[str, str, str, str]] = [
    *((section, f"{label}: ENOTCAPABLE", f"{label}: EPERM", "escape")
      for section, labels in _ESCAPES.items() for label in labels),
    *(("readonly", f"{label}: ENOTCAPABLE", f"{label}: EPERM", "read-only") for label in _READ_ONLY),
    ("fd", "fd_write 2 iovecs: ok n=12", "fd_write 2 iovecs: ok n=6", "whole iovecs"),
    ("fd", "fd_read 2 iovecs: ok n=7", "fd_read 2 iovecs: ok n=3", "whole iovecs"),
    ("fd", "fd_allocate 100: ok size=100", "fd_allocate 100: ENOTSUP size=8", "fd_allocate"),
    ("fd", "fd_sync dir: ok", "fd_sync dir: EBADF", "directory fsync"),
    ("symlink", "path_link follow: ok", "path_link follow: EINVAL", "link follow"),
    ("symlink", "hard link to the target: ok type=REGULAR_FILE size=6", "hard link to the target: ENOENT",
     "link follow"),
    ("symlink", "path_link follow escaping: ENOTCAPABLE", "path_link follow escaping: EINVAL", "link follow"),
    ("misc", "clock_res_get PROCESS_CPUTIME_ID: ok positive=yes at most 1ms=yes",
     "clock_res_get PROCESS_CPUTIME_ID: EBADF positive=no at most 1ms=yes", "cpu clocks"),
    ("misc", "clock_time_get PROCESS_CPUTIME_ID: ok nondecreasing=yes",
     "clock_time_get PROCESS_CPUTIME_ID: EBADF nondecreasing=yes", "cpu clocks"),
    ("misc", "clock_res_get THREAD_CPUTIME_ID: ok positive=yes at most 1ms=yes",
     "clock_res_get THREAD_CPUTIME_ID: EBADF positive=no at most 1ms=yes", "cpu clocks"),
    ("misc", "clock_time_get THREAD_CPUTIME_ID: ok nondecreasing=yes",
     "clock_time_get THREAD_CPUTIME_ID: EBADF nondecreasing=yes", "cpu clocks"),
    ("rights", "file rights include directory rights: no", "file rights include directory rights: yes",
     "rights masks"),
    ("rights", "drop FD_WRITE: ok", "drop FD_WRITE: ENOTSUP", "rights"),
    ("rights", "after dropping FD_WRITE: ok type=REGULAR_FILE flags=0 read=yes write=no seek=yes tell=yes",
     "after dropping FD_WRITE: ok type=REGULAR_FILE flags=0 read=yes write=yes seek=yes tell=yes", "rights"),
    ("rights", "fd_write without FD_WRITE: ENOTCAPABLE", "fd_write without FD_WRITE: ok", "rights"),
    # ... so wasmtime-py wrote an "x" over the first byte, and reads on from there
    ("rights", 'fd_read still allowed: ok "0123"', 'fd_read still allowed: ok "1234"', "rights"),
    ("rights", "drop FD_READ and FD_SEEK: ok", "drop FD_READ and FD_SEEK: ENOTSUP", "rights"),
    ("rights", "fd_read without FD_READ: ENOTCAPABLE", "fd_read without FD_READ: ok", "rights"),
    ("rights", "fd_seek without FD_SEEK: ENOTCAPABLE", "fd_seek without FD_SEEK: ok", "rights"),
    ("rights", "add FD_WRITE back: ENOTCAPABLE", "add FD_WRITE back: ENOTSUP", "rights"),
    ("rights", "drop PATH_OPEN on dir: ok", "drop PATH_OPEN on dir: ENOTSUP", "rights"),
    ("rights", "dir after dropping PATH_OPEN: ok type=DIRECTORY flags=0 readdir=yes path_open=no seek=no",
     "dir after dropping PATH_OPEN: ok type=DIRECTORY flags=0 readdir=yes path_open=yes seek=no", "rights"),
    ("rights", "path_open without PATH_OPEN: ENOTCAPABLE", "path_open without PATH_OPEN: ok", "rights"),
    ("rights", "drop FD_READDIR on dir: ok", "drop FD_READDIR on dir: ENOTSUP", "rights"),
    ("rights", "fd_readdir without FD_READDIR: ENOTCAPABLE", "fd_readdir without FD_READDIR: ok", "rights"),
    ("rights", 'data.txt unchanged: ok "0123456789"', 'data.txt unchanged: ok "x123456789"', "rights"),
]

# Sections compared line by line; "fault" and "invalid" trap under wasmtime-py (below).
COMPARED = tuple(s for s in SECTIONS if s not in ("fault", "invalid"))
ENGINE = make_engine(fuel=False)  # wasijail's own engine settings, exceptions included
_MODULES: dict[str, wasmtime.Module] = {}


def wasmtime_run(name: str, args: list[str], work: Path, *, preopen: Path | None = None,
                 readonly: bool = False, env=(), stdin: Path | None = None) -> tuple[object, str]:
    """Run a program under wasmtime-py's WASI: (exit status or "trap: ...", stdout)."""
    module = _MODULES.get(name)
    if module is None:
        module = _MODULES[name] = wasmtime.Module.from_file(ENGINE, program(name))
    linker = wasmtime.Linker(ENGINE)
    linker.define_wasi()
    config = wasmtime.WasiConfig()
    config.argv = [name, *args]
    config.env = [list(pair) for pair in env]
    if preopen is not None:
        config.preopen_dir(str(preopen), SANDBOX, not readonly)
    if stdin is not None:
        config.stdin_file = str(stdin)
    out = work / "wasmtime.out"
    config.stdout_file = str(out)
    store = wasmtime.Store(ENGINE)
    store.set_wasi(config)
    try:
        linker.instantiate(store, module).exports(store)["_start"](store)
        status: object = 0
    except wasmtime.ExitTrap as exc:
        status = exc.code
    except (wasmtime.Trap, wasmtime.WasmtimeError) as exc:
        status = "trap: " + str(exc)
    return status, out.read_text() if out.exists() else ""


def wasmtime_conf(tmp_path: Path, section: str, *extra: str) -> tuple[object, str]:
    base = tmp_path / "wasmtime"
    base.mkdir()
    box = make_sandbox(base)
    return wasmtime_run("wasi_conf_p1.wasm", [section, *extra], base, preopen=box,
                        readonly=section == "readonly", env=ENV, stdin=base / "stdin")


def wasmtime_expected(section: str) -> str:
    """wasijail's expected output with the listed differences applied."""
    lines = EXPECTED[section].splitlines(keepends=True)
    for where, ours, theirs, reason in DIFFERENCES:
        if where != section:
            continue
        assert reason in INTENDED
        hits = [i for i, line in enumerate(lines) if line == ours + "\n"]
        assert len(hits) == 1, f"stale difference in {section}: {ours!r}"
        lines[hits[0]] = theirs + "\n"
    return "".join(lines)


def test_every_difference_names_a_reason_and_a_compared_section():
    assert {reason for *_, reason in DIFFERENCES} | {"efault", "invalid values", "wasi_unstable"} == set(INTENDED)
    assert {section for section, *_ in DIFFERENCES} <= set(COMPARED)


@pytest.mark.parametrize("section", COMPARED)
async def test_section_agrees_with_wasmtime(tmp_path, section):
    status, out = wasmtime_conf(tmp_path, section)
    assert (status, out) == (0, wasmtime_expected(section))
    # ... and wasijail still prints what it should, in the same kind of sandbox.
    ours = tmp_path / "wasijail"
    ours.mkdir()
    async with open_supervisor() as sup:
        assert await run_section(sup, ours, "p1", section) == (0, EXPECTED[section])


def test_out_of_bounds_pointers_trap_in_wasmtime(tmp_path):
    """wasijail answers EFAULT to each of these (EXPECTED["fault"]); wasmtime-py traps at the first."""
    status, out = wasmtime_conf(tmp_path, "fault")
    assert out == "== fault\n"
    assert isinstance(status, str) and "Pointer out of bounds" in status
    assert EXPECTED["fault"].splitlines()[1] == "fd_write bad iovs: EFAULT"


# Values inside a subscription that wasmtime-py reads as data and answers like wasijail.
INVALID_AGREEING = ("poll_oneoff unknown clock: EINVAL", "poll_oneoff unknown event type: EINVAL")


def test_invalid_values_trap_in_wasmtime(tmp_path):
    """Each check of the "invalid" section alone: wasmtime-py traps, wasijail answers an errno."""
    answers = EXPECTED["invalid"].splitlines()[1:-1]
    assert EXPECTED["invalid"].splitlines()[-1] == f"checks: {len(answers)}"
    assert set(INVALID_AGREEING) <= set(answers)
    for check, answer in enumerate(answers):
        work = tmp_path / str(check)
        work.mkdir()
        status, out = wasmtime_conf(work, "invalid", str(check))
        if answer in INVALID_AGREEING:
            assert (status, out) == (0, f"== invalid\n{answer}\n")
        else:
            assert out == "== invalid\n", answer
            assert isinstance(status, str) and status.startswith("trap: "), answer


def test_proc_exit_agrees(tmp_path):
    assert wasmtime_conf(tmp_path, "exit") == (17, "== exit\n")


@pytest.mark.parametrize("name,args,env,preopen", [
    ("fsops.wasm", [SANDBOX], (), True),
    ("env.wasm", ["one", "two words"], (("GREETING", "hi there"), ("EMPTY", "")), False),
    ("clocks.wasm", [], (), False),
    ("features.wasm", [], (), False),
])
async def test_other_programs_agree(tmp_path, name, args, env, preopen):
    boxes = []
    for side in ("wasmtime", "wasijail"):
        (tmp_path / side / "box").mkdir(parents=True)
        boxes.append(tmp_path / side / "box")
    theirs = wasmtime_run(name, args, tmp_path / "wasmtime", preopen=boxes[0] if preopen else None, env=env)
    policy = Policy().with_preopen(boxes[1], SANDBOX) if preopen else Policy()
    for key, value in env:
        policy = policy.with_env(key, value)
    async with open_supervisor() as sup:
        result = await sup.run(program(name), args, policy=policy, capture_stdout=True)
    assert theirs == (result.returncode, result.stdout.decode())
    assert theirs[0] == 0 and theirs[1]


@pytest.mark.parametrize("name", ["wasi_conf_p0.wasm", "unstable_layouts.wasm"])
def test_wasi_unstable_does_not_link_in_wasmtime_py(tmp_path, name):
    """Why the preview0 programs are compared with wasijail's own expectations only."""
    status, out = wasmtime_run(name, ["misc"], tmp_path)
    assert out == "" and isinstance(status, str)
    assert "unknown import: `wasi_unstable::" in status


# Descriptor numbering: scripts of opens, closes and renumbers (tests/programs/fdops.c) give the
# same numbers and errnos as under wasmtime-py. fd 2 carries the results, so scripts leave it be.
_FDS = st.sampled_from([0, 1, 3, 4, 5, 6, 7, 8, 9])
_OPS = st.one_of(
    st.just("o"),
    _FDS.map(lambda fd: f"c{fd}"),
    st.tuples(_FDS, _FDS).map(lambda pair: f"r{pair[0]}:{pair[1]}"),
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@example(script=["o", "r1:4", "o", "o", "c1", "c5", "o"])  # the synthesis tool's pattern (issue 12)
@given(script=st.lists(_OPS, min_size=1, max_size=14))
async def test_descriptor_numbering_matches_wasmtime(tmp_path_factory, script):
    work = tmp_path_factory.mktemp("fdops")
    boxes = {side: work / side for side in ("wasmtime", "wasijail")}
    for box in boxes.values():
        box.mkdir()
    module = wasmtime.Module.from_file(ENGINE, program("fdops.wasm"))
    config = wasmtime.WasiConfig()
    config.argv = ["fdops.wasm", *script]
    config.preopen_dir(str(boxes["wasmtime"]), SANDBOX)
    config.stderr_file = str(work / "wasmtime.err")
    linker = wasmtime.Linker(ENGINE)
    linker.define_wasi()
    store = wasmtime.Store(ENGINE)
    store.set_wasi(config)
    linker.instantiate(store, module).exports(store)["_start"](store)
    theirs = (work / "wasmtime.err").read_text()
    async with open_supervisor() as sup:
        result = await sup.run(program("fdops.wasm"), script, policy=Policy().with_preopen(boxes["wasijail"], SANDBOX),
                               capture_stderr=True)
    assert result.returncode == 0
    assert result.stderr.decode() == theirs
    assert theirs.count("\n") == len(script)
    assert sorted(p.name for p in boxes["wasijail"].iterdir()) == sorted(p.name for p in boxes["wasmtime"].iterdir())
