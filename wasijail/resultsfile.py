"""A batch's results file: JSON Lines, one record per finished job, appended whole.

The last line for an id is that job's result (a job that ran again
supersedes its earlier lines), everywhere results are read: resume, the
summary, `wasijail batch report`. A line that cannot be read is reported by
its line number and ignored; a last line cut short by a kill is dropped (and
cut off the file before anything is appended after it).
"""

from __future__ import annotations

import json
import os
from contextlib import ExitStack
from pathlib import Path

from .nofollow import open_regular
from .results import WasijailError


class ResultsError(WasijailError):
    """The results file cannot be opened or read."""


def parse_results(data: bytes, name: str) -> tuple[dict[str, dict], list[str], int]:
    """(latest record per id, one problem line per unreadable line, length of the whole lines).

    A record is a JSON object with a string `id`; the rest is up to its writer.
    """
    records: dict[str, dict] = {}
    problems: list[str] = []
    whole = data.rfind(b"\n") + 1
    lines = data[:whole].split(b"\n")[:-1]
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            why = exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8"
            problems.append(f"{name}:{number}: unreadable line ignored ({why})")
            continue
        if not isinstance(record, dict) or not isinstance(record.get("id"), str):
            problems.append(f"{name}:{number}: unreadable line ignored (not a record with an id)")
            continue
        records[record["id"]] = record  # the dict keeps the position of each id's first line
    if whole < len(data):
        problems.append(f"{name}:{len(lines) + 1}: incomplete last line (a write cut short) ignored")
    return records, problems, whole


def read_results(path: Path) -> tuple[dict[str, dict], list[str]]:
    """The latest record per id in `path` and the problems met; a missing file is a ResultsError."""
    try:
        fd = open_regular(path, os.O_RDONLY)
    except FileNotFoundError:
        raise ResultsError(f"{path}: no such file") from None
    except OSError as exc:
        raise ResultsError(f"{path}: cannot read: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        records, problems, _ = parse_results(f.read(), str(path))
    return records, problems


class ResultsFile:
    """The results file opened for a batch: read once, repaired, then appended to.

    Opened once with O_NOFOLLOW (a link planted at its name is refused, not
    followed) and O_APPEND, so every record is one write at the end.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            fd = open_regular(path, os.O_RDWR | os.O_APPEND | os.O_CREAT)
        except OSError as exc:
            raise ResultsError(f"{path}: cannot open the results file: {exc.strerror}") from None
        with ExitStack() as on_fail:
            on_fail.callback(os.close, fd)
            data = b""
            while chunk := os.pread(fd, 1 << 20, len(data)):
                data += chunk
            self.records, self.problems, whole = parse_results(data, str(path))
            if whole < len(data):
                os.ftruncate(fd, whole)  # so the next record starts a line of its own
            on_fail.pop_all()
        self._fd: int | None = fd  # None once closed

    def append(self, record: dict) -> None:
        """Write one record as one whole line: an interrupt never leaves half of it."""
        if self._fd is None:
            raise ResultsError(f"{self.path}: the results file is closed")
        line = (json.dumps(record) + "\n").encode()
        view = memoryview(line)
        while view:
            view = view[os.write(self._fd, view):]
        self.records[record["id"]] = record

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> ResultsFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
