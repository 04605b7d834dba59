"""`wasijail batch --cluster`: the same manifest on a Dask distributed cluster.

Two halves, a module each, sharing the local batch's job runner
(`batch.run_job`) and its error results (`batch.job_error`):

* `worker.py`: the Dask preload (`dask worker tcp://HOST:PORT --preload
  wasijail.cluster` runs `dask_setup` here): one supervisor, fork server and
  compiled-module cache per worker process, and the task that runs jobs.
* `client.py`: `open_cluster` and `run_cluster_batch`, which send modules
  and jobs to the workers and write the results file through `batch.Batch`.

Dask is an optional extra (`pip install 'wasijail[cluster]'`): neither half
imports it at module level, so the preload and the CLI import this package
without it.
"""

from .client import (INSTALL_HINT, PRELOAD, ClusterError, ClusterSummary, check_address, import_distributed,
                     open_cluster, run_cluster_batch, worker_reports)
from .worker import (Task, WorkerRuntime, WorkerUnavailable, dask_setup, dask_teardown, run_jobs, worker_report,
                     worker_stats)

__all__ = ["INSTALL_HINT", "PRELOAD", "ClusterError", "ClusterSummary", "Task", "WorkerRuntime", "WorkerUnavailable",
           "check_address", "dask_setup", "dask_teardown", "import_distributed", "open_cluster", "run_cluster_batch",
           "run_jobs", "worker_report", "worker_reports", "worker_stats"]
