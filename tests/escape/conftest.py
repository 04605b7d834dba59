"""Make the test-only harness importable from the escape tests, whatever
pytest's import mode (this folder has no __init__.py on purpose)."""

import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
