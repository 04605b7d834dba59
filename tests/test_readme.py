"""The README's API example runs as written."""

from __future__ import annotations

import subprocess
import sys

from helpers import REPO


def test_api_example_runs():
    readme = (REPO / "README.md").read_text()
    start = readme.index("```python\nimport trio\nimport wasijail") + len("```python\n")
    source = readme[start:readme.index("```", start)]
    proc = subprocess.run([sys.executable, "-c", source], cwd=REPO, capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.decode().splitlines()[1:] == ["['exit', 'exit', 'trap']", "b'hello\\n'", "0"]


def test_readme_lists_every_wasmtime_run_option():
    from wasijail.wasmtime_options import markdown_table

    assert markdown_table() in (REPO / "README.md").read_text()
