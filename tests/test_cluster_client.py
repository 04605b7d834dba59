"""The cluster client's reading of a task that ended without results: by the exception's type."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

pytest.importorskip("distributed", reason="the cluster extra is not installed: pip install -e '.[cluster]'")

from distributed import KilledWorker  # noqa: E402
from distributed.client import FutureCancelledError  # noqa: E402

from wasijail.cluster.client import Failure, _failure  # noqa: E402
from wasijail.cluster.worker import WorkerUnavailable  # noqa: E402


def test_workers_dying_under_a_task_again_and_again_fail_its_jobs():
    exc = KilledWorker("wasijail-jobs-1", SimpleNamespace(address="tcp://10.0.0.9:4000"), 3)
    what, why = _failure(exc)
    assert what is Failure.FAIL
    assert why.startswith("cluster: the workers running this job died repeatedly (Attempted to run task")


def test_a_worker_that_cannot_run_jobs_now_has_them_submitted_again():
    assert _failure(WorkerUnavailable("worker tcp://w:1 is shutting down")) == (
        Failure.AGAIN, "cluster: worker tcp://w:1 is shutting down")


def test_a_task_cancelled_for_its_lost_inputs_has_them_sent_again():
    what, why = _failure(FutureCancelledError("wasijail-jobs-2", "lost dependencies"))
    assert what is Failure.LOST
    assert why == "cluster: the job's data was lost with its workers (wasijail-jobs-2 cancelled for reason: lost dependencies.)"


@pytest.mark.parametrize("exc", [RuntimeError("the connection was lost"), ValueError("Cancelled by the lost one")],
                         ids=["lost-in-message", "cancelled-in-message"])
def test_the_words_of_a_message_decide_nothing(exc):
    """Any other exception fails the jobs, whatever its text says (no string matching)."""
    assert _failure(exc) == (Failure.FAIL, f"cluster: {type(exc).__name__}: {exc}")
