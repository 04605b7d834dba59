"""Files the supervisor writes for a job never follow a link someone planted.

A job with a writable preopen can plant symlinks there (`path_symlink`);
anyone with access to the output folder can plant links in it. The batch's
outputs (`--output-dir DIR/<id>.stdout`), its results file, the copies made
for a checker and the compiled-module cache are written without following
links, and an output folder or results file that a job of the same batch
could write to is refused before anything runs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from wasijail.cache import ModuleCache

from helpers import PROGRAMS, assert_one_line_error, text, wasijail

# A guest that plants `out/next-job.stdout -> TARGET` in its first preopen and exits with the errno.
PLANT_WAT = """(module
    (import "wasi_snapshot_preview1" "path_symlink" (func $symlink (param i32 i32 i32 i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
    (memory (export "memory") 1)
    (data (i32.const 0) "%s")
    (data (i32.const 256) "out/next-job.stdout")
    (func (export "_start")
        (call $exit (call $symlink (i32.const 0) (i32.const %d) (i32.const 3) (i32.const 256) (i32.const 19))))
)
"""


def planter(folder: Path, target: str) -> Path:
    path = folder / "plant.wat"
    path.write_text(PLANT_WAT % (target, len(target)))
    return path


def write_jobs(path: Path, *entries: dict) -> Path:
    path.write_text("".join(json.dumps(entry) + "\n" for entry in entries))
    return path


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_link_planted_by_a_job_does_not_redirect_the_next_jobs_output(tmp_path):
    """A job plants next-job.stdout -> ../victim.txt in its preopen; that folder is the next batch's output."""
    (tmp_path / "pre" / "out").mkdir(parents=True)
    (tmp_path / "pre" / "victim.txt").write_text("the grader's file\n")
    first = write_jobs(tmp_path / "plant.jsonl", {"id": "planter", "module": str(planter(tmp_path, "../victim.txt")),
                                                  "preopens": ["pre::/pre"]})
    proc = wasijail("batch", "--results", tmp_path / "plant.results.jsonl", first)
    assert proc.returncode == 0, text(proc.stderr)
    assert os.readlink(tmp_path / "pre" / "out" / "next-job.stdout") == "../victim.txt"  # the link is there
    second = write_jobs(tmp_path / "next.jsonl", {"id": "next-job", "module": str(PROGRAMS / "demo_p1.wasm")})
    proc = wasijail("batch", "--output-dir", tmp_path / "pre" / "out", second)
    assert proc.returncode == 0, text(proc.stderr)
    assert (tmp_path / "pre" / "victim.txt").read_text() == "the grader's file\n"
    out = tmp_path / "pre" / "out" / "next-job.stdout"
    assert not out.is_symlink() and out.read_text() == "hello world\n"


def test_links_planted_in_the_output_dir_are_replaced_not_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "hard.txt").write_text("hard-linked\n")
    out = tmp_path / "out"
    out.mkdir()
    os.symlink("../outside/anywhere", out / "victim.stdout")  # relative, dangling: open would create it
    os.symlink(outside / "hard.txt", out / "victim.stderr")
    os.link(outside / "hard.txt", out / "other.stdout")
    manifest = write_jobs(tmp_path / "jobs.jsonl", {"id": "victim", "module": str(PROGRAMS / "demo_p1.wasm")},
                          {"id": "other", "module": str(PROGRAMS / "demo_p1.wasm")})
    proc = wasijail("batch", "--output-dir", out, manifest)
    assert proc.returncode == 0, text(proc.stderr)
    assert not (outside / "anywhere").exists()
    assert (outside / "hard.txt").read_text() == "hard-linked\n" and (outside / "hard.txt").stat().st_nlink == 1
    for name, content in (("victim.stdout", "hello world\n"), ("victim.stderr", ""), ("other.stdout", "hello world\n")):
        assert not (out / name).is_symlink() and (out / name).read_text() == content
    assert sorted(os.listdir(out)) == ["other.stderr", "other.stdout", "victim.stderr", "victim.stdout"]


def test_a_link_planted_at_the_results_file_is_refused(tmp_path):
    (tmp_path / "target.txt").write_text("not results\n")
    os.symlink(tmp_path / "target.txt", tmp_path / "jobs.results.jsonl")
    manifest = write_jobs(tmp_path / "jobs.jsonl", {"id": "a", "module": str(PROGRAMS / "demo_p1.wasm")})
    err = assert_one_line_error(wasijail("batch", manifest))
    assert err.startswith(f"wasijail: error: {tmp_path / 'jobs.results.jsonl'}: cannot open the results file: ")
    assert (tmp_path / "target.txt").read_text() == "not results\n"


def _alias(tmp_path: Path) -> str:
    os.symlink(tmp_path / "pre", tmp_path / "alias")
    return "alias::/pre"


def _linked_output(tmp_path: Path) -> str:
    os.symlink(tmp_path / "pre" / "out", tmp_path / "link")
    return "pre::/pre"


# (job's preopens, --output-dir, extra flags) that let a job write where the batch writes.
OVERLAPS = {
    "output dir in a writable preopen": (lambda t: "pre::/pre", "pre/out", []),
    "output dir is the writable preopen": (lambda t: "pre/out::/out", "pre/out", []),
    "writable preopen through a symlink": (_alias, "pre/out", []),
    "output dir through a symlink": (_linked_output, "link", []),
    "writable --dir of the policy": (lambda t: None, "pre/out", ["--dir", "pre::/pre"]),
}


@pytest.mark.parametrize("case", list(OVERLAPS))
def test_an_output_dir_a_job_can_write_is_refused(tmp_path, case):
    (tmp_path / "pre" / "out").mkdir(parents=True)
    preopen, output_dir, flags = OVERLAPS[case]
    spec = preopen(tmp_path)
    job = {"id": "planter", "module": str(planter(tmp_path, "../../anywhere"))}
    if spec is not None:
        job["preopens"] = [spec]
    manifest = write_jobs(tmp_path / "jobs.jsonl", job, {"id": "next-job", "module": str(PROGRAMS / "demo_p1.wasm")})
    err = assert_one_line_error(wasijail("batch", *flags, "--output-dir", output_dir, manifest, cwd=tmp_path))
    assert err.startswith(f"wasijail: error: --output-dir {output_dir} is inside ")
    assert "a writable preopen of" in err and err.endswith("use a folder outside every writable preopen")
    assert os.listdir(tmp_path / "pre" / "out") == []  # nothing ran: no link planted, no output written
    assert not (tmp_path / "jobs.results.jsonl").exists()


def test_results_file_a_job_can_write_is_refused(tmp_path):
    (tmp_path / "pre").mkdir()
    manifest = write_jobs(tmp_path / "jobs.jsonl", {"id": "a", "module": str(PROGRAMS / "demo_p1.wasm"),
                                                    "preopens": [".::/all"]})
    err = assert_one_line_error(wasijail("batch", manifest))
    assert err.startswith(f"wasijail: error: the results file {tmp_path / 'jobs.results.jsonl'} is inside {tmp_path}, "
                          "a writable preopen of job a")


def test_a_read_only_preopen_around_the_output_dir_is_allowed(tmp_path):
    (tmp_path / "pre" / "out").mkdir(parents=True)
    manifest = write_jobs(tmp_path / "jobs.jsonl", {"id": "planter", "module": str(planter(tmp_path, "x")),
                                                    "preopens": ["pre::/pre::ro"]})
    proc = wasijail("batch", "--allow-failures", "--output-dir", tmp_path / "pre" / "out", manifest)
    assert proc.returncode == 0, text(proc.stderr)
    (record,) = read_lines(tmp_path / "jobs.results.jsonl")
    assert record["returncode"] == 76  # ENOTCAPABLE: the read-only preopen refused the link
    assert sorted(os.listdir(tmp_path / "pre" / "out")) == ["planter.stderr", "planter.stdout"]


def test_expected_output_files_are_read_beneath_their_preopen(tmp_path):
    """A link the job leaves where its output should be cannot show the grader's secrets in a result."""
    (tmp_path / "out").mkdir()
    (tmp_path / "secret.txt").write_text("SECRET ANSWER KEY\n")
    os.symlink("../secret.txt", tmp_path / "out" / "answer.txt")  # what a job could plant
    os.symlink(tmp_path / "secret.txt", tmp_path / "out" / "abs.txt")
    check = ["sh", "-c", 'cat "$WASIJAIL_FILES"/out/*.txt 2>/dev/null; echo done']
    manifest = write_jobs(tmp_path / "jobs.jsonl", {
        "id": "j", "module": str(PROGRAMS / "demo_p1.wasm"), "preopens": ["out::/out"], "check": check,
        "expect": {"files": {"out/answer.txt": "x\n", "out/abs.txt": "x\n"}}})
    proc = wasijail("batch", manifest)
    assert proc.returncode == 1
    (record,) = read_lines(tmp_path / "jobs.results.jsonl")
    assert record["verdict"] == "fail"
    assert record["why"].startswith("out/answer.txt: cannot be read (")
    assert "out/abs.txt: cannot be read (" in record["why"]
    assert "SECRET" not in json.dumps(record)
    assert record["check"]["output"] == "done\n"


def test_cache_entries_never_write_or_read_through_a_planted_link(tmp_path):
    folder = tmp_path / "cache"
    cache = ModuleCache(folder)
    key = ModuleCache.key(b"module", "engine")
    cache.store(key, b"artifact")
    # Links at an artifact's and a seal's names (to copies of good ones): refused and removed, targets kept.
    other = ModuleCache.key(b"other", "engine")
    for suffix in (".cwasm", ".seal"):
        (tmp_path / f"elsewhere{suffix}").write_bytes((folder / f"{key}{suffix}").read_bytes())
        os.symlink(tmp_path / f"elsewhere{suffix}", folder / f"{other}{suffix}")
    found = cache.open(key)
    assert found is not None
    found.close()
    assert cache.open(other) is None and cache.refused == 1
    assert not os.path.lexists(folder / f"{other}.cwasm") and not os.path.lexists(folder / f"{other}.seal")
    assert (tmp_path / "elsewhere.cwasm").read_bytes() == b"artifact"
    # Links where a store writes: the new files replace the links; the targets are untouched.
    for suffix in (".cwasm", ".seal"):
        (tmp_path / f"victim{suffix}").write_text("victim\n")
        os.symlink(tmp_path / f"victim{suffix}", folder / f"{other}{suffix}")
    cache.store(other, b"second")
    for suffix in (".cwasm", ".seal"):
        assert (tmp_path / f"victim{suffix}").read_text() == "victim\n"
        assert not (folder / f"{other}{suffix}").is_symlink()
    found = cache.open(other)
    assert found is not None and os.pread(found.fd, 100, 0) == b"second"
    found.close()
    # A link at the key's name is not read as the key.
    (tmp_path / "cache2").mkdir()
    (tmp_path / "fake-key").write_bytes(b"k" * 32)
    os.symlink(tmp_path / "fake-key", tmp_path / "cache2" / "key")
    with pytest.raises(OSError):
        ModuleCache(tmp_path / "cache2").store(key, b"artifact")
