"""`wasijail batch report`: the terminal table, CSV, and the HTML page rendered in headless Chromium.

The batch reported on is README's grading walk-through (docs/grading), run
here step by step as the README shows it: run, interrupt, resume, a
resubmitted module, --retry, report.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import PROGRAMS, REPO, assert_one_line_error, summary_rows, text, wasijail

GRADING = REPO / "docs" / "grading"
# What README's walk-through shows for each student once heidi has resubmitted.
VERDICTS = {"alice": "pass", "bob": "pass", "carol": "pass", "dave": "fail", "erin": "fail", "frank": "fail",
            "grace": "fail", "heidi": "pass", "ivan": "pass", "judy": "fail", "ken": "pass"}


def grading_copy(tmp_path: Path) -> Path:
    """docs/grading in a fresh folder, beside the test programs its manifest names (../../tests/programs)."""
    folder = tmp_path / "docs" / "grading"
    shutil.copytree(GRADING, folder)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "programs").symlink_to(PROGRAMS)
    (folder / "out").mkdir()
    return folder


@pytest.fixture(scope="module")
def graded(tmp_path_factory) -> Path:
    """The walk-through, step by step; returns the folder holding hw1.results.jsonl."""
    folder = grading_copy(tmp_path_factory.mktemp("walk"))
    command = [sys.executable, "-m", "wasijail", "batch", "--jobs", "1", "hw1.jsonl"]
    results = folder / "hw1.results.jsonl"
    # Run, and interrupt it (Ctrl-C) after a few jobs.
    proc = subprocess.Popen(command, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not (results.exists() and results.read_text().count("\n") >= 3):
        assert proc.poll() is None and time.monotonic() < deadline, text(proc.stderr.read())
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 130
    done = results.read_text().count("\n")
    # Resume: the finished jobs are skipped.
    resumed = subprocess.run(command, cwd=folder, capture_output=True, timeout=120)
    rows = summary_rows(text(resumed.stderr))
    assert resumed.returncode == 1 and (rows["skipped (unchanged)"], rows["ran"]) == (str(done), str(11 - done))
    assert rows["failed"] == "6: dave, erin, frank, grace, heidi, judy"
    # heidi resubmits: her job changed, so it runs again by itself.
    (folder / "submissions").mkdir()
    shutil.copy(PROGRAMS / "demo_p1.wasm", folder / "submissions" / "heidi.wasm")
    resubmitted = subprocess.run(command, cwd=folder, capture_output=True, timeout=120)
    assert summary_rows(text(resubmitted.stderr))["ran"] == "1"
    # grace's timeout may have been a loaded machine: run the timeouts again.
    retried = subprocess.run([*command[:-1], "--retry", "timeout", "hw1.jsonl"], cwd=folder, capture_output=True,
                             timeout=120)
    rows = summary_rows(text(retried.stderr))
    assert (rows["ran"], rows["pass"], rows["fail"]) == ("1", "6", "5")
    assert rows["failed"] == "5: dave, erin, frank, grace, judy"
    assert rows["score"] == "1.5 total, 0.75 mean of 2"
    return folder


def latest(path: Path) -> dict[str, dict]:
    return {r["id"]: r for r in map(json.loads, path.read_text().splitlines())}


def test_walkthrough_verdicts(graded):
    records = latest(graded / "hw1.results.jsonl")
    assert {k: v["verdict"] for k, v in records.items()} == VERDICTS
    assert records["dave"]["diff"]["stdout"] == ("--- expected stdout\n+++ actual stdout\n@@ -1 +1 @@\n"
                                                 "-hello world\n+Hello, World!\n")
    assert records["judy"]["score"] == 0.5 and records["ken"]["score"] == 1.0
    assert records["grace"]["why"] == "timeout instead of exit 0; stdout differs"
    assert (graded / "out" / "ivan.txt").read_text() == "3\n1\n4\n1\n5\n"


def test_report_table(graded):
    proc = wasijail("batch", "report", graded / "hw1.results.jsonl", env={**os.environ, "COLUMNS": "160"})
    assert proc.returncode == 0, text(proc.stderr)
    out = text(proc.stdout)
    lines = out.splitlines()
    assert lines[0].strip() == "11 jobs"
    assert " verdict pass  6" in out and " verdict fail  5" in out and " failed        5" in out
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]]
            for line in lines if line.startswith("│") and line.split("│")[1].strip()}
    assert set(rows) == set(VERDICTS)
    assert rows["dave"][:4] == ["exit", "0", "fail", ""] and rows["dave"][-1] == "status 0; stdout differs"
    assert rows["judy"][2:4] == ["fail", "0.5"]
    assert rows["grace"][0] == "timeout" and rows["grace"][-1].startswith("timed out after 1 s")


def test_report_csv_takes_the_last_line_per_id(graded, tmp_path):
    results = tmp_path / "r.jsonl"
    shutil.copy(graded / "hw1.results.jsonl", results)
    with results.open("a") as f:
        f.write("not json\n")
    proc = wasijail("batch", "report", "--csv", tmp_path / "r.csv", results)
    assert proc.returncode == 0
    line = len(results.read_text().splitlines())
    assert text(proc.stderr) == f"wasijail: warning: {results}:{line}: unreadable line ignored (Expecting value)\n"
    rows = list(csv.DictReader(io.StringIO((tmp_path / "r.csv").read_text())))
    assert [r["id"] for r in rows] == list(latest(graded / "hw1.results.jsonl"))  # in the order of their lines
    by_id = {r["id"]: r for r in rows}
    assert {k: r["verdict"] for k, r in by_id.items()} == VERDICTS
    assert by_id["heidi"]["outcome"] == "exit"  # her resubmission, not the first run's error
    assert by_id["grace"]["outcome"] == "timeout" and by_id["grace"]["detail"].startswith("timed out after 1 s")
    assert float(by_id["alice"]["wall_time"]) > 0 and int(by_id["alice"]["peak_memory"]) > 0
    assert by_id["judy"]["score"] == "0.5" and by_id["dave"]["why"] == "stdout differs"
    to_stdout = wasijail("batch", "report", "--csv", "-", results)
    assert to_stdout.stdout == (tmp_path / "r.csv").read_bytes()


def test_report_of_a_missing_file_is_one_line(tmp_path):
    err = assert_one_line_error(wasijail("batch", "report", tmp_path / "none.jsonl"))
    assert err == f"wasijail: error: {tmp_path / 'none.jsonl'}: no such file"


HOSTILE = '<script>document.title="pwned"</script><img src=x onerror="document.title=\'pwned\'">&amp;'


def hostile_results(tmp_path: Path) -> Path:
    """Results whose job output tries to become markup."""
    (tmp_path / "in.txt").write_text(HOSTILE + "\n")
    manifest = tmp_path / "jobs.jsonl"
    manifest.write_text(json.dumps({"id": "x<b>y", "module": str(PROGRAMS / "cat.wasm"), "stdin": "in.txt",
                                    "expect": {"stdout": "fine\n"}}) + "\n")
    wasijail("batch", manifest)
    return tmp_path / "jobs.results.jsonl"


def test_report_html_content(graded, tmp_path):
    page = tmp_path / "report.html"
    proc = wasijail("batch", "report", "--html", page, graded / "hw1.results.jsonl")
    assert proc.returncode == 0 and proc.stdout == b"", text(proc.stderr)
    html = page.read_text()
    assert "<title>Batch report: hw1.results.jsonl</title>" in html
    assert html.count("<svg ") == 2 and "Wall time per job" in html and "Peak memory per job" in html
    failed = html[html.index("<h2>Failed jobs (5)</h2>"):html.index("<h2>Slowest jobs</h2>")]
    assert [job for job in VERDICTS if f"<td>{job}</td>" in failed] == ["dave", "erin", "frank", "grace", "judy"]
    assert html[html.index("<h2>Slowest jobs</h2>"):].index("<td>grace</td>") < 400  # 1 s timeout: first
    assert "<b>diff of stdout</b>" in html and '<span class="add">+Hello, World!</span>' in html
    assert "words: [&#x27;hello&#x27;, &#x27;there&#x27;, &#x27;world&#x27;]" in html  # judy's checker output
    # Self-contained: nothing to load from anywhere.
    assert "src=" not in html and "href=" not in html and "@import" not in html and "url(" not in html
    hostile = wasijail("batch", "report", "--html", tmp_path / "hostile.html", hostile_results(tmp_path))
    assert hostile.returncode == 0
    escaped = (tmp_path / "hostile.html").read_text()
    assert "<script>document" not in escaped and "<img" not in escaped and "<b>y" not in escaped
    assert "&lt;script&gt;document.title=&quot;pwned&quot;&lt;/script&gt;" in escaped


# -- in a real browser --------------------------------------------------------------------------------------


def browser() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    reason = "no Chromium: apt-get install chromium (scripts/test installs it where apt is available)"
    if os.environ.get("CI"):
        pytest.fail(reason)  # the CI machine (Debian, root) has it: never skip there
    pytest.skip(reason)


def render(page: Path, folder: Path, *what: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Chromium, headless, on `page`: (the process, every console message it logged)."""
    folder.mkdir(exist_ok=True)
    command = [browser(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={folder / 'profile'}", "--enable-logging=stderr", "--v=0",
               "--window-size=1280,1800", *what, page.as_uri()]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=folder,
                          start_new_session=True) as browser_process:
        try:
            out, err = browser_process.communicate(timeout=120)
        finally:
            try:  # the browser's helper processes go with it
                os.killpg(browser_process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    proc = subprocess.CompletedProcess(command, browser_process.returncode, out, err)
    console = [line for line in text(proc.stderr).splitlines() if ":CONSOLE" in line]
    return proc, console


def screenshot(page: Path, folder: Path):
    from PIL import Image

    shot = folder / "shot.png"
    proc, console = render(page, folder, f"--screenshot={shot}")
    assert proc.returncode == 0 and shot.exists(), text(proc.stderr)
    return Image.open(shot).convert("RGB"), console


def test_html_report_renders_in_chromium(graded, tmp_path):
    # The console check can fail: a page with a script error and a blocked load is caught.
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><meta http-equiv="Content-Security-Policy" content="default-src \'none\';'
                   ' script-src \'unsafe-inline\'"><p>x</p><script>console.error("seen"); nosuch();</script>'
                   '<img src="https://example.com/x.png">')
    _, console = render(bad, tmp_path / "bad", "--dump-dom")
    assert len(console) == 3 and '"seen"' in console[0] and "nosuch is not defined" in console[1]
    assert "Content Security Policy" in console[2]

    page = tmp_path / "report.html"
    assert wasijail("batch", "report", "--html", page, graded / "hw1.results.jsonl").returncode == 0
    image, console = screenshot(page, tmp_path / "good")
    assert console == []
    colours = {colour: count for count, colour in image.getcolors(maxcolors=1 << 24)}
    assert colours.get((255, 255, 255), 0) < 0.97 * image.width * image.height  # not blank
    # The histogram bars, the fail and pass tags: the SVG and the CSS were drawn.
    assert (0x1E, 0x88, 0xE5) in colours and (0xC6, 0x28, 0x28) in colours and (0x2E, 0x7D, 0x32) in colours

    # The DOM after the page's script ran: the hostile job's output stayed text.
    hostile = tmp_path / "hostile.html"
    wasijail("batch", "report", "--html", hostile, hostile_results(tmp_path))
    proc, console = render(hostile, tmp_path / "dom", "--dump-dom")
    dom = text(proc.stdout)
    assert console == [] and "<title>Batch report: jobs.results.jsonl</title>" in dom
    assert "pwned" not in dom.split("<body>")[0] and "<img" not in dom
    assert "x&lt;b&gt;y" in dom


def test_report_shows_outputs_kept_in_the_output_dir(tmp_path):
    (tmp_path / "in.txt").write_text("from the output folder\n" + "x" * 5000)
    manifest = tmp_path / "jobs.jsonl"
    manifest.write_text(json.dumps({"id": "kept", "module": str(PROGRAMS / "cat.wasm"), "stdin": "in.txt"}) + "\n"
                        + json.dumps({"id": "linked", "module": str(PROGRAMS / "demo_p1.wasm")}) + "\n")
    assert wasijail("batch", "--output-dir", tmp_path / "out", manifest).returncode == 0
    (tmp_path / "secret.txt").write_text("SECRET\n")
    (tmp_path / "out" / "linked.stdout").unlink()
    (tmp_path / "out" / "linked.stdout").symlink_to(tmp_path / "secret.txt")  # replaced after the batch
    page = tmp_path / "report.html"
    assert wasijail("batch", "report", "--html", page, tmp_path / "jobs.results.jsonl").returncode == 0
    html = page.read_text()
    assert "<pre>from the output folder\nxxx" in html and "xxx\n... (cut)</pre>" in html  # an excerpt
    assert "SECRET" not in html and f"({tmp_path / 'out' / 'linked.stdout'}: Too many levels of symbolic links)" in html
