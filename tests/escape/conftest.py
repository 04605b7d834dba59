"""Make the test-only harness importable from the escape tests, whatever
pytest's import mode (this folder has no __init__.py on purpose), and the
`attempt` fixture: Python source run as a compromised child through the real
supervisor and fork server."""

import itertools
import sys
import textwrap
from pathlib import Path

import pytest

from wasijail import Policy
from wasijail.launcher import Launcher
from wasijail.supervisor import RunSpec, open_supervisor

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

SERVER = Path(__file__).with_name("compromised_forkserver.py")


@pytest.fixture
async def attempt(tmp_path):
    """Run Python source as the compromised child; return the supervisor's RunResult.

    Keyword arguments go to `Supervisor.run_spec` (stdio); by default both
    outputs are captured.
    """
    async with open_supervisor(launcher=Launcher([sys.executable, str(SERVER)])) as supervisor:
        numbers = itertools.count()

        async def run(source: str, policy: Policy = Policy(), **stdio):
            script = tmp_path / f"attempt{next(numbers)}.py"
            script.write_text(textwrap.dedent(source))
            stdio = stdio or {"capture_stdout": True, "capture_stderr": True}
            return await supervisor.run_spec(RunSpec(script, (), policy), **stdio)

        run.supervisor = supervisor
        yield run
