"""`wasijail batch`: outcomes for a mixed manifest, resume after a kill, Ctrl-C, bad manifests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from wasijail.batch import load_manifest, run_batch
from wasijail.policy import Policy

from helpers import PROGRAMS, assert_one_line_error, summary_rows, text, wasijail

KINDS = {
    "ok": ({"module": str(PROGRAMS / "demo_p1.wasm")}, "exit", 0),
    "exit7": ({"module": str(PROGRAMS / "exit7.wasm")}, "exit", 7),
    "trap": ({"module": str(PROGRAMS / "trap.wasm")}, "trap", 134),
    "timeout": ({"module": str(PROGRAMS / "spin.wasm"), "limits": {"timeout": "200ms"}}, "timeout", 134),
    "missing": ({"module": "no-such-module.wasm"}, "error", 1),
}


def mixed_manifest(path, count: int) -> dict[str, tuple[str, int]]:
    expected = {}
    order = ["ok"] * 6 + ["exit7", "trap", "missing"] + ["timeout"] * (1 if count >= 100 else 0)
    with path.open("w") as f:
        for i in range(count):
            kind = order[i % len(order)]
            fields, outcome, status = KINDS[kind]
            job_id = f"{kind}-{i:04}"
            f.write(json.dumps({"id": job_id, **fields}) + "\n")
            expected[job_id] = (outcome, status)
    return expected


def read_lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_200_mixed_jobs_give_200_right_results(tmp_path):
    manifest = tmp_path / "jobs.jsonl"
    expected = mixed_manifest(manifest, 200)
    results = tmp_path / "results.jsonl"
    summary = await run_batch(load_manifest(manifest), policy=Policy.default(), results=results, parallel=2)
    lines = read_lines(results)
    assert len(lines) == 200
    assert {r["id"]: (r["outcome"], r["returncode"]) for r in lines} == expected
    assert summary.done == 200 and summary.skipped == 0
    assert Counter(r["outcome"] for r in lines) == Counter(v[0] for v in expected.values())
    hello = next(r for r in lines if r["id"] == "ok-0000")
    assert hello["stdout"] == "hello world\n" and hello["stderr"] == ""
    missing = next(r for r in lines if r["outcome"] == "error")
    assert missing["detail"].endswith("no-such-module.wasm: no such file")


async def test_output_dir_and_stdin_file(tmp_path):
    (tmp_path / "in.txt").write_bytes(b"\xffbinary input\n")
    manifest = tmp_path / "jobs.jsonl"
    manifest.write_text(json.dumps({"id": "cat", "module": str(PROGRAMS / "cat.wasm"), "stdin": "in.txt"}) + "\n")
    results = tmp_path / "r.jsonl"
    await run_batch(load_manifest(manifest), policy=Policy(), results=results, parallel=1,
                    output_dir=tmp_path / "out")
    (record,) = read_lines(results)
    assert (tmp_path / "out" / "cat.stdout").read_bytes() == b"\xffbinary input\n"
    assert record["stdout_file"] == str(tmp_path / "out" / "cat.stdout")


def _start_batch(tmp_path, manifest, results, *extra):
    return subprocess.Popen(
        [sys.executable, "-m", "wasijail", "batch", "--jobs", "2", "--results", str(results), *extra,
         str(manifest)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)


def _wait_for_lines(path, count, proc, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().count("\n") >= count:
            return
        assert proc.poll() is None, "batch ended before it was interrupted"
        time.sleep(0.02)
    raise AssertionError("batch made no progress")


def _children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except OSError:
                pass
    return found


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT], ids=["killed", "ctrl-c"])
def test_interrupted_batch_resumes_without_repeating(tmp_path, how):
    manifest = tmp_path / "jobs.jsonl"
    with manifest.open("w") as f:
        for i in range(60):
            f.write(json.dumps({"id": f"job{i:03}", "module": str(PROGRAMS / "cat.wasm"),
                                "stdin": str(manifest)}) + "\n")
    results = tmp_path / "results.jsonl"
    proc = _start_batch(tmp_path, manifest, results)
    _wait_for_lines(results, 10, proc)
    forkserver = _children_of(proc.pid)
    proc.send_signal(how)
    proc.wait(timeout=30)
    if how == signal.SIGINT:
        assert proc.returncode == 130
        assert "interrupted" in text(proc.stderr.read())
    time.sleep(0.2)
    for pid in forkserver:  # the fork server and every child went with the batch
        assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"
    partial = [json.loads(line) for line in results.read_text().splitlines() if line.endswith("}")]
    assert 10 <= len(partial) < 60
    rerun = _start_batch(tmp_path, manifest, results)
    assert rerun.wait(timeout=120) == 0, text(rerun.stderr.read())
    ids = [r["id"] for r in read_lines(results)]
    assert sorted(ids) == [f"job{i:03}" for i in range(60)]  # each job exactly once


def test_exit_status_counts_earlier_failures(tmp_path):
    manifest = tmp_path / "jobs.jsonl"
    manifest.write_text(json.dumps({"id": "bad", "module": str(PROGRAMS / "exit7.wasm")}) + "\n")
    first = wasijail("batch", "--results", tmp_path / "r.jsonl", manifest)
    assert first.returncode == 1
    again = wasijail("batch", "--results", tmp_path / "r.jsonl", manifest)
    assert again.returncode == 1  # the job ran before and did not exit 0
    allowed = wasijail("batch", "--allow-failures", "--results", tmp_path / "r.jsonl", manifest)
    assert allowed.returncode == 0


@pytest.mark.parametrize("line,message", [
    ("{not json", "jobs.jsonl:2: not JSON: "),
    ('{"module": "x.wasm"}', "jobs.jsonl:2: id: expected a non-empty string"),
    ('{"id": "a", "module": "x.wasm"}', "jobs.jsonl:2: id 'a' appears twice"),
    ('{"id": "b", "module": "x.wasm", "color": 1}', "jobs.jsonl:2: unknown key 'color'"),
    ('{"id": "b", "module": "x.wasm", "limits": {"memory": "lots"}}', "jobs.jsonl:2: limits: memory: "),
    ('{"id": "../x", "module": "x.wasm"}', "jobs.jsonl:2: id: '../x' cannot name an output file"),
])
def test_bad_manifest_lines_are_named(tmp_path, line, message):
    manifest = tmp_path / "jobs.jsonl"
    manifest.write_text('{"id": "a", "module": "x.wasm"}\n' + line + "\n")
    err = assert_one_line_error(wasijail("batch", manifest, cwd=tmp_path))
    assert message in err


async def test_each_distinct_module_is_compiled_once_before_its_jobs(tmp_path):
    from wasijail.cache import ModuleCache

    class CountingCache(ModuleCache):
        stored: list[str] = []

        def store(self, key: str, artifact: bytes) -> None:
            self.stored.append(key)
            super().store(key, artifact)

    manifest = tmp_path / "m.jsonl"
    mixed_manifest(manifest, 18)  # demo_p1, exit7, trap and a missing module, many jobs each
    cache = CountingCache(tmp_path / "cache")
    summary = await run_batch(load_manifest(manifest), policy=Policy(), results=tmp_path / "r.jsonl",
                              parallel=2, cache=cache)
    assert summary.done == 18
    # fuel-less and fuel-metered jobs would be two engines: here all share one, so one compile each
    assert len(cache.stored) == len(set(cache.stored)) == 3


# -- resume by fingerprint, --retry, the whole-batch summary ---------------------------------------------


def write_jobs(path, *entries: dict) -> None:
    path.write_text("".join(json.dumps(entry) + "\n" for entry in entries))


def latest(path) -> dict[str, dict]:
    """The last record per id, as every reader of a results file takes it."""
    return {r["id"]: r for r in read_lines(path)}


def test_two_manifests_sharing_ids_both_run_with_results_beside_each(tmp_path):
    (tmp_path / "hw1").mkdir()
    (tmp_path / "hw2").mkdir()
    write_jobs(tmp_path / "hw1" / "hw1.jsonl", {"id": "s1", "module": str(PROGRAMS / "demo_p1.wasm")},
               {"id": "s2", "module": str(PROGRAMS / "demo_p1.wasm")})
    write_jobs(tmp_path / "hw2" / "hw2.jsonl", {"id": "s1", "module": str(PROGRAMS / "exit7.wasm")},
               {"id": "s2", "module": str(PROGRAMS / "demo_p1.wasm"), "args": ["x"]})
    first = wasijail("batch", tmp_path / "hw1" / "hw1.jsonl", cwd=tmp_path)
    second = wasijail("batch", "--allow-failures", tmp_path / "hw2" / "hw2.jsonl", cwd=tmp_path)
    assert first.returncode == 0 and second.returncode == 0, text(first.stderr) + text(second.stderr)
    assert not (tmp_path / "results.jsonl").exists()  # not in the current folder
    assert {k: v["outcome"] + str(v["returncode"]) for k, v in
            latest(tmp_path / "hw1" / "hw1.results.jsonl").items()} == {"s1": "exit0", "s2": "exit0"}
    assert {k: v["returncode"] for k, v in latest(tmp_path / "hw2" / "hw2.results.jsonl").items()} == {
        "s1": 7, "s2": 0}
    assert summary_rows(text(second.stderr))["ran"] == "2"
    # The two manifests into one results file: the same ids, other jobs, so they run and supersede.
    shared = tmp_path / "shared.jsonl"
    wasijail("batch", "--results", shared, tmp_path / "hw1" / "hw1.jsonl")
    again = wasijail("batch", "--allow-failures", "--results", shared, tmp_path / "hw2" / "hw2.jsonl")
    assert summary_rows(text(again.stderr))["ran"] == "2"
    assert len(read_lines(shared)) == 4
    assert latest(shared)["s1"]["returncode"] == 7


CHANGES = {
    "module": lambda d: (d / "m.wat").write_text((PROGRAMS / "exit7.wat").read_text()),
    "args": lambda d: write_jobs(d / "jobs.jsonl", {**JOB, "args": ["more"]}),
    "stdin": lambda d: (d / "in.txt").write_text("other input\n"),
    "env": lambda d: write_jobs(d / "jobs.jsonl", {**JOB, "env": {"A": "2"}}),
    "limits": lambda d: write_jobs(d / "jobs.jsonl", {**JOB, "limits": {"fuel": 10_000_000}}),
    "preopen": lambda d: write_jobs(d / "jobs.jsonl", {**JOB, "preopens": ["data::/data::ro"]}),
    "expected output": lambda d: (d / "want.txt").write_text("other\n"),
}
JOB = {"id": "j", "module": "m.wat", "stdin": "in.txt", "env": {"A": "1"}, "preopens": ["data::/data"],
       "expect": {"exit": None, "stdout": {"file": "want.txt"}}}


@pytest.mark.parametrize("change", list(CHANGES))
async def test_a_changed_job_runs_again_and_supersedes(tmp_path, change):
    (tmp_path / "m.wat").write_text((PROGRAMS / "demo_p1.wat").read_text())
    (tmp_path / "in.txt").write_text("input\n")
    (tmp_path / "want.txt").write_text("hello world\n")
    (tmp_path / "data").mkdir()
    write_jobs(tmp_path / "jobs.jsonl", JOB)
    results = tmp_path / "r.jsonl"

    async def run():
        return await run_batch(load_manifest(tmp_path / "jobs.jsonl"), policy=Policy(), results=results, parallel=1)

    assert (await run()).ran == 1
    unchanged = await run()
    assert (unchanged.ran, unchanged.skipped) == (0, 1)
    CHANGES[change](tmp_path)
    changed = await run()
    assert (changed.ran, changed.skipped) == (1, 0)
    lines = read_lines(results)
    assert len(lines) == 2 and lines[0]["fingerprint"] != lines[1]["fingerprint"]
    assert (await run()).ran == 0  # the new line is the job's result now


async def test_retry_reruns_the_jobs_whose_latest_outcome_is_named(tmp_path):
    write_jobs(tmp_path / "jobs.jsonl",
               {"id": "slow", "module": str(PROGRAMS / "spin.wasm"), "limits": {"timeout": "200ms"}},
               {"id": "trap", "module": str(PROGRAMS / "trap.wasm")},
               {"id": "ok", "module": str(PROGRAMS / "demo_p1.wasm")})
    jobs = load_manifest(tmp_path / "jobs.jsonl")
    results = tmp_path / "r.jsonl"
    await run_batch(jobs, policy=Policy(), results=results, parallel=2)
    assert (await run_batch(jobs, policy=Policy(), results=results, parallel=2)).ran == 0
    retried = await run_batch(jobs, policy=Policy(), results=results, parallel=2, retry={"timeout", "crash"})
    assert (retried.ran, retried.skipped) == (1, 2)
    assert [r["id"] for r in read_lines(results)] .count("slow") == 2
    both = await run_batch(jobs, policy=Policy(), results=results, parallel=2, retry={"timeout", "trap"})
    assert both.ran == 2 and both.outcomes == Counter({"timeout": 1, "trap": 1, "exit": 1})


def test_retry_after_fixing_a_missing_module(tmp_path):
    write_jobs(tmp_path / "jobs.jsonl", {"id": "a", "module": "a.wasm"}, {"id": "b", "module": "b.wasm"})
    (tmp_path / "b.wasm").write_bytes((PROGRAMS / "demo_p1.wasm").read_bytes())
    first = wasijail("batch", tmp_path / "jobs.jsonl")
    assert first.returncode == 1
    assert latest(tmp_path / "jobs.results.jsonl")["a"]["outcome"] == "error"
    (tmp_path / "a.wasm").write_bytes((PROGRAMS / "demo_p1.wasm").read_bytes())
    fixed = wasijail("batch", "--retry", "error", tmp_path / "jobs.jsonl")
    assert fixed.returncode == 0, text(fixed.stderr)
    assert summary_rows(text(fixed.stderr))["ran"] == "1"
    assert latest(tmp_path / "jobs.results.jsonl")["a"]["stdout"] == "hello world\n"


@pytest.mark.parametrize("value", ["sometimes", "Error", ",", "exit,nope"])
def test_bad_retry_value_is_a_usage_error(tmp_path, value):
    err = assert_one_line_error(wasijail("batch", f"--retry={value}", tmp_path / "jobs.jsonl"), status=2)
    assert "--retry: " in err and "is not an outcome (outcomes: exit, trap, timeout" in err


def test_summary_counts_the_whole_batch_after_a_resume(tmp_path):
    manifest = tmp_path / "jobs.jsonl"
    expected = mixed_manifest(manifest, 18)  # 12 exit 0, 2 exit 7, 2 traps, 2 missing modules
    results = tmp_path / "r.jsonl"
    jobs = [json.loads(line) for line in manifest.read_text().splitlines()]
    write_jobs(tmp_path / "part.jsonl", *jobs[:8])
    wasijail("batch", "--results", results, tmp_path / "part.jsonl")
    resumed = wasijail("batch", "--results", results, manifest)
    assert resumed.returncode == 1
    rows = summary_rows(text(resumed.stderr))
    assert (rows["jobs"], rows["skipped (unchanged)"], rows["ran"]) == ("18", "8", "10")
    outcomes = Counter(v[0] for v in expected.values())
    assert {k: rows[k] for k in outcomes} == {k: str(v) for k, v in outcomes.items()}
    failing = [job_id for job_id, (kind, status) in expected.items() if status != 0]
    assert rows["failed"] == f"{len(failing)}: {', '.join(failing)}"
    again = wasijail("batch", "--results", results, manifest)
    assert again.returncode == 1  # nothing ran, but the batch still has failures
    rows = summary_rows(text(again.stderr))
    assert (rows["ran"], rows["skipped (unchanged)"], rows["exit"]) == ("0", "18", "14")
    assert "rate" not in rows


def test_failed_ids_are_cut_after_ten(tmp_path):
    write_jobs(tmp_path / "jobs.jsonl", *({"id": f"f{i:02}", "module": str(PROGRAMS / "exit7.wasm")}
                                         for i in range(13)))
    proc = wasijail("batch", "--jobs", "2", tmp_path / "jobs.jsonl")
    assert summary_rows(text(proc.stderr))["failed"] == (
        "13: " + ", ".join(f"f{i:02}" for i in range(10)) + " and 3 more")


def test_progress_lines_give_the_reason(tmp_path):
    write_jobs(tmp_path / "jobs.jsonl",
               {"id": "s10", "module": str(PROGRAMS / "spin.wasm"), "limits": {"timeout": "200ms"}},
               {"id": "s11", "module": str(PROGRAMS / "trap.wasm")},
               {"id": "s12", "module": str(PROGRAMS / "exit7.wasm")},
               {"id": "s13", "module": "gone.wasm"},
               {"id": "s14", "module": str(PROGRAMS / "demo_p1.wasm"), "expect": {"stdout": "hi\n"}})
    err = text(wasijail("batch", "--jobs", "1", tmp_path / "jobs.jsonl").stderr)
    lines = [line.split("] ", 1)[1] for line in err.splitlines() if line.startswith("[")]
    assert lines == ["s10: timeout (timed out after 0.2 s)",
                     "s11: trap (wasm trap: wasm `unreachable` instruction executed)",
                     "s12: exit (status 7)", f"s13: error ({tmp_path / 'gone.wasm'}: no such file)",
                     "s14: exit (status 0), fail (stdout differs)"]


def test_empty_manifest_is_an_error(tmp_path):
    (tmp_path / "jobs.jsonl").write_text("\n  \n")
    err = assert_one_line_error(wasijail("batch", tmp_path / "jobs.jsonl"))
    assert err == (f"wasijail: error: {tmp_path / 'jobs.jsonl'}: no jobs"
                   " (one JSON object per line, each with an id and a module)")
    assert not (tmp_path / "jobs.results.jsonl").exists()


def test_unreadable_results_lines_are_reported_by_number_and_ignored(tmp_path):
    write_jobs(tmp_path / "jobs.jsonl", {"id": "a", "module": str(PROGRAMS / "demo_p1.wasm")},
               {"id": "b", "module": str(PROGRAMS / "demo_p1.wasm")})
    results = tmp_path / "jobs.results.jsonl"
    wasijail("batch", tmp_path / "jobs.jsonl")
    good = results.read_text().splitlines()
    results.write_text(good[0] + "\ngarbage here\n[1, 2]\n" + good[1] + "\n" + '{"id": "b", "outc')
    proc = wasijail("batch", tmp_path / "jobs.jsonl")
    err = text(proc.stderr)
    assert proc.returncode == 0, err
    assert f"wasijail: warning: {results}:2: unreadable line ignored (Expecting value)\n" in err
    assert f"wasijail: warning: {results}:3: unreadable line ignored (not a record with an id)\n" in err
    assert f"wasijail: warning: {results}:5: incomplete last line (a write cut short) ignored\n" in err
    assert summary_rows(err)["ran"] == "0"  # both jobs' good lines still count
    assert results.read_text().endswith(good[1] + "\n")  # the torn tail is cut before anything is appended


# -- verdicts ------------------------------------------------------------------------------------------------


def cat_job(job_id: str, answer: str, **fields) -> dict:
    """A job whose program (cat) prints `answer`: a stand-in for a submission."""
    return {"id": job_id, "module": str(PROGRAMS / "cat.wasm"), "stdin": f"{job_id}.in", "_answer": answer,
            **fields}


def write_graded(folder, *jobs: dict):
    for job in jobs:
        (folder / job["stdin"]).write_text(job.pop("_answer"))
    write_jobs(folder / "jobs.jsonl", *jobs)
    return load_manifest(folder / "jobs.jsonl")


async def test_verdicts_by_expectation(tmp_path):
    (tmp_path / "expected").mkdir()
    (tmp_path / "expected" / "42.txt").write_text("42\n")
    (tmp_path / "expected" / "link.txt").symlink_to("42.txt")  # the grader's own links are followed
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "in.txt").write_text("copied\n")
    (tmp_path / "out").mkdir()
    (tmp_path / "want.txt").write_text("copied\n")
    copy = {"module": str(PROGRAMS / "demo.wasm"), "preopens": ["data::/data::ro", "out::/out"]}
    jobs = write_graded(
        tmp_path,
        cat_job("right", "42\n", expect={"stdout": "42\n"}),
        cat_job("wrong", "41\n", expect={"stdout": {"file": "expected/42.txt"}}),
        cat_job("spaces", "42   \n\n\n", expect={"stdout": "42\n", "ignore_trailing_whitespace": True}),
        cat_job("spaces_exact", "42   \n", expect={"stdout": "42\n"}),
        cat_job("no_expected_file", "42\n", expect={"stdout": {"file": "expected/none.txt"}}),
        cat_job("empty", "", expect={"stdout": "42\n"}),
        cat_job("linked", "42\n", expect={"stdout": {"file": "expected/link.txt"}}),
    ) + [
        *(load_manifest_lines(tmp_path, [
            {"id": "file_ok", **copy, "args": ["/data/in.txt", "/out/a.txt"],
             "expect": {"files": {"out/a.txt": {"file": "want.txt"}}}},
            {"id": "file_missing", **copy, "args": ["/data/none.txt", "/out/b.txt"],
             "expect": {"exit": None, "files": {"out/b.txt": "copied\n"}}},
            {"id": "exit7", "module": str(PROGRAMS / "exit7.wasm"), "expect": {"exit": 7}},
            {"id": "exit7_wanted_0", "module": str(PROGRAMS / "exit7.wasm"), "expect": {}},
            {"id": "trapped", "module": str(PROGRAMS / "trap.wasm"), "expect": {"exit": None, "stdout": ""}},
            {"id": "trapped_wanted_0", "module": str(PROGRAMS / "trap.wasm"), "expect": {"stdout": ""}},
        ]))]
    results = tmp_path / "r.jsonl"
    summary = await run_batch(jobs, policy=Policy(), results=results, parallel=2)
    got = {k: (v["verdict"], v.get("why")) for k, v in latest(results).items()}
    assert got == {
        "right": ("pass", None),
        "wrong": ("fail", "stdout differs"),
        "spaces": ("pass", None),
        "spaces_exact": ("fail", "stdout differs"),
        "no_expected_file": ("error", f"expected file {tmp_path / 'expected' / 'none.txt'}: No such file or directory"),
        "empty": ("fail", "stdout differs"),
        "linked": ("pass", None),
        "file_ok": ("pass", None),
        "file_missing": ("fail", "out/b.txt: not written"),
        "exit7": ("pass", None),
        "exit7_wanted_0": ("fail", "exit 7, expected 0"),
        "trapped": ("pass", None),
        "trapped_wanted_0": ("fail", "trap instead of exit 0"),
    }
    assert latest(results)["wrong"]["diff"] == {
        "stdout": "--- expected stdout\n+++ actual stdout\n@@ -1 +1 @@\n-42\n+41\n"}
    assert summary.verdicts == Counter({"pass": 6, "fail": 6, "error": 1})
    assert sorted(summary.failing) == sorted(k for k, (v, _) in got.items() if v != "pass")


def load_manifest_lines(folder, entries: list[dict]):
    path = folder / "more.jsonl"
    write_jobs(path, *entries)
    return load_manifest(path)


def test_a_long_diff_is_cut():
    from wasijail.verdict import DIFF_LINES, short_diff

    want = "".join(f"line {i}\n" for i in range(200)).encode()
    got = "".join(f"line {i}{'!' if i % 2 else ''}\n" for i in range(200)).encode()
    diff = short_diff(want, got, "stdout")
    assert diff.count("\n") == DIFF_LINES + 1 and diff.endswith("more diff lines)\n")
    assert short_diff(b"\xff", b"\xfe\xfe", "x") == "binary contents differ (1 bytes expected, 2 bytes written)\n"


CHECKER = r"""#!/usr/bin/env python3
import os, sys
answer = sys.stdin.read()
assert os.path.samefile(os.environ["WASIJAIL_STDOUT"], "stdout")
copy = os.path.join(os.environ["WASIJAIL_FILES"], "out", os.environ["WASIJAIL_ID"] + ".txt")
files = open(copy).read() if os.path.exists(copy) else "-"
inputs = ["stdout", "stderr"] + ([copy] if os.path.exists(copy) else [])
read_only = all(os.stat(path).st_mode & 0o222 == 0 for path in inputs)
print("stdout file:", open("stdout").read() == answer, "read-only:", read_only)
print("outcome:", os.environ["WASIJAIL_OUTCOME"], os.environ["WASIJAIL_STATUS"], "copy:", files.strip())
if answer.startswith("sleep"):
    import subprocess, time
    child = subprocess.Popen(["sleep", "60"])
    open(sys.argv[1], "w").write(str(child.pid))
    time.sleep(60)
if answer.startswith("die"):
    os.kill(os.getpid(), 9)
print(answer.count("a") / 4)
sys.exit(0 if answer.strip() == "aaaa" else 3)
"""


async def test_verdicts_by_checker(tmp_path):
    checker = tmp_path / "check.py"
    checker.write_text(CHECKER)
    checker.chmod(0o755)
    pid_file = tmp_path / "grandchild.pid"
    check = ["./check.py", str(pid_file)]
    (tmp_path / "out").mkdir()
    jobs = write_graded(
        tmp_path,
        cat_job("full", "aaaa\n", check=check),
        cat_job("half", "aa\n", check=check),
        cat_job("slow", "sleep\n", check=check),
        cat_job("killed", "die\n", check=check),
        cat_job("absent", "x", check=["./no-such-checker"]),
        cat_job("both", "aaaa\n", check=check, expect={"stdout": "aaa\n"}),
    ) + load_manifest_lines(tmp_path, [
        {"id": "copy", "module": str(PROGRAMS / "demo.wasm"), "args": ["/out/../check.py", "/out/copy.txt"],
         "preopens": ["out::/out"], "outputs": ["out/copy.txt"], "check": ["true"]},
        {"id": "copied", "module": str(PROGRAMS / "cat.wasm"), "stdin": "full.in", "check": check,
         "outputs": ["out/copied.txt"], "preopens": ["out::/out::ro"]},
    ])
    (tmp_path / "out" / "copied.txt").write_text("the copy\n")
    results = tmp_path / "r.jsonl"
    summary = await run_batch(jobs, policy=Policy(), results=results, parallel=3, check_timeout=5)
    got = latest(results)
    assert {k: (v["verdict"], v.get("score"), v.get("why")) for k, v in got.items()} == {
        "full": ("pass", 1.0, None),
        "half": ("fail", 0.5, "checker exited with status 3"),
        "slow": ("error", None, "checker timed out after 5 s"),
        "killed": ("error", None, "checker killed by signal 9"),
        "absent": ("error", None, f"checker {tmp_path / 'no-such-checker'} cannot start: No such file or directory"),
        "both": ("fail", 1.0, "stdout differs"),
        "copy": ("pass", None, None),
        "copied": ("pass", 1.0, None),
    }
    assert got["full"]["check"] == {"status": 0, "output": "stdout file: True read-only: True\n"
                                    "outcome: exit 0 copy: -\n1.0\n"}
    assert got["copied"]["check"]["output"].startswith("stdout file: True read-only: True\n"
                                                       "outcome: exit 0 copy: the copy\n")
    assert sorted(summary.scores) == [0.5, 1.0, 1.0, 1.0]
    # The timed-out checker's own child was killed with it.
    grandchild = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{grandchild}") and time.monotonic() < deadline:
        with open(f"/proc/{grandchild}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                break
        time.sleep(0.05)
    else:
        assert not os.path.exists(f"/proc/{grandchild}")
    assert not list(tmp_path.glob("out/*.stdout"))  # the checker's copies never land in a preopen


def test_checker_runs_outside_the_writable_preopen(tmp_path):
    (tmp_path / "out").mkdir()
    write_jobs(tmp_path / "jobs.jsonl", {
        "id": "w", "module": str(PROGRAMS / "demo_p1.wasm"), "preopens": ["out::/out"],
        "check": ["sh", "-c", 'pwd; echo "$WASIJAIL_FILES"; ls -A; touch here && echo wrote']})
    proc = wasijail("batch", tmp_path / "jobs.jsonl")
    assert proc.returncode == 0, text(proc.stderr)
    (record,) = read_lines(tmp_path / "jobs.results.jsonl")
    cwd, files, *listing = record["check"]["output"].splitlines()
    assert not os.path.realpath(cwd).startswith(os.path.realpath(tmp_path))
    assert files == f"{cwd}/files" and listing[:3] == ["files", "stderr", "stdout"]
    assert not os.path.exists(cwd)  # removed after the check
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize("line,message", [
    ('{"id": "b", "module": "x.wasm", "expect": 3}', "jobs.jsonl:2: expect: expected an object"),
    ('{"id": "b", "module": "x.wasm", "expect": {"stdot": "x"}}', "jobs.jsonl:2: expect: unknown key 'stdot'"),
    ('{"id": "b", "module": "x.wasm", "expect": {"exit": "0"}}', "jobs.jsonl:2: expect.exit: expected an exit"),
    ('{"id": "b", "module": "x.wasm", "expect": {"stdout": {"path": "x"}}}',
     'jobs.jsonl:2: expect.stdout: expected a string or {"file": PATH}'),
    ('{"id": "b", "module": "x.wasm", "expect": {"files": {"out/x": "1"}}}',
     "jobs.jsonl:2: expect.files['out/x']: out/x is not inside any of the job's preopens"),
    ('{"id": "b", "module": "x.wasm", "preopens": ["out"], "expect": {"files": {"out/../x": "1"}}}',
     "jobs.jsonl:2: expect.files['out/../x']: out/../x is not inside any of the job's preopens"),
    ('{"id": "b", "module": "x.wasm", "check": "grade.sh"}', "jobs.jsonl:2: check: expected a command"),
    ('{"id": "b", "module": "x.wasm", "check": []}', "jobs.jsonl:2: check: expected a command"),
    ('{"id": "b", "module": "x.wasm", "outputs": ["/etc/passwd"]}',
     "jobs.jsonl:2: outputs[0]: /etc/passwd is not inside any of the job's preopens"),
])
def test_bad_expectations_are_named(tmp_path, line, message):
    manifest = tmp_path / "jobs.jsonl"
    manifest.write_text('{"id": "a", "module": "x.wasm"}\n' + line + "\n")
    err = assert_one_line_error(wasijail("batch", manifest, cwd=tmp_path))
    assert message in err


def test_bad_check_timeout_is_a_usage_error(tmp_path):
    err = assert_one_line_error(wasijail("batch", "--check-timeout", "0", tmp_path / "j.jsonl"), status=2)
    assert "--check-timeout must be more than 0 s" in err


def test_ctrl_c_kills_running_checkers_and_writes_no_verdict_for_them(tmp_path):
    pid_file = tmp_path / "checker.pid"
    write_jobs(tmp_path / "jobs.jsonl", {"id": "quick", "module": str(PROGRAMS / "demo_p1.wasm")},
               {"id": "judged", "module": str(PROGRAMS / "demo_p1.wasm"),
                "check": ["sh", "-c", f'echo $$ > {pid_file}; sleep 60']})
    proc = subprocess.Popen([sys.executable, "-m", "wasijail", "batch", "--jobs", "1", str(tmp_path / "jobs.jsonl")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not (pid_file.exists() and pid_file.read_text().strip()):
        assert proc.poll() is None and time.monotonic() < deadline, text(proc.stderr.read())
        time.sleep(0.02)
    checker = int(pid_file.read_text())
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=15) == 130  # not the checker's 60 s
    assert text(proc.stderr.read()).endswith("rerun to resume\n")
    time.sleep(0.2)
    assert not os.path.exists(f"/proc/{checker}") or open(f"/proc/{checker}/stat").read().split()[2] == "Z"
    assert [r["id"] for r in read_lines(tmp_path / "jobs.results.jsonl")] == ["quick"]
