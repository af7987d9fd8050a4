"""Durable jobs: one output, any number of runs, every result through the run store.

- :func:`run_job` runs a job's items (resume, group commit, output in order);
- :mod:`._identity`: where a job's store is, its name there, and the settings its runs share.
"""

from corral.jobs._durable import JobResult, run_job
from corral.jobs._identity import STORE_ENV, job_name, job_settings, store_path

__all__ = ["STORE_ENV", "JobResult", "job_name", "job_settings", "run_job", "store_path"]
