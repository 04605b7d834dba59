"""The embedding API's type hints: `mypy --strict` accepts typed code that uses it, and rejects wrong types.

mypy sees wasijail as a user sees an installed package (its own modules are
followed silently); the public modules themselves are checked strictly too.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO

PUBLIC = ["wasijail/__init__.py", "wasijail/api.py", "wasijail/aio.py", "wasijail/results.py",
          "wasijail/engine.py"]


def mypy(tmp_path: Path, *files: str | Path) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "mypy.ini"
    config.write_text("[mypy]\nstrict = True\ncache_dir = /dev/null\n[mypy-wasijail.*]\nfollow_imports = silent\n")
    return subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(config), *map(str, files)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)


def readme_example() -> str:
    text = (REPO / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    example = [b for b in blocks if "open_supervisor" in b]
    assert len(example) == 1
    return example[0]


@pytest.fixture(scope="module")
def checked(tmp_path_factory: pytest.TempPathFactory) -> subprocess.CompletedProcess[str]:
    tmp = tmp_path_factory.mktemp("typing")
    (tmp / "readme_example.py").write_text(readme_example())
    (tmp / "wrong.py").write_text(
        "import wasijail\n"
        "async def f() -> None:\n"
        "    await wasijail.run('m.wasm', stdin='text')\n"
        "    await wasijail.run('m.wasm', policy='p.toml')\n")
    return mypy(tmp, "tests/typing_examples.py", tmp / "readme_example.py", tmp / "wrong.py", *PUBLIC)


def test_typed_code_and_the_readme_example_pass_mypy_strict(checked: subprocess.CompletedProcess[str]) -> None:
    errors = [line for line in checked.stdout.splitlines() if ": error:" in line and "wrong.py" not in line]
    assert errors == [], checked.stdout


def test_wrong_argument_types_are_mypy_errors(checked: subprocess.CompletedProcess[str]) -> None:
    wrong = [line for line in checked.stdout.splitlines() if "wrong.py" in line and ": error:" in line]
    assert [line.split(":")[1] for line in wrong] == ["3", "4"], checked.stdout
    assert all("[arg-type]" in line for line in wrong)


def test_the_package_ships_py_typed() -> None:
    assert (REPO / "wasijail" / "py.typed").exists()
    assert re.search(r'^wasijail = \[.*"py.typed".*\]', (REPO / "pyproject.toml").read_text(), re.M)
