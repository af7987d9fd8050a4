"""Durable jobs: the layer every entry point uses (``corral run``, ``--batch`` and ``corral batch``,
``--ray``, ``corral serve``, and Python).

A *job* is one output; a *run* is one invocation of it; a *pass* is one sweep over its input; a
*round* is one submit-and-collect cycle of provider batches.

- :mod:`._spec`: :class:`JobSpec` and :class:`ExtractOptions`, a job as data;
- :mod:`._open`: :func:`open_job` → :class:`Job`, the one place a job is assembled;
- :mod:`._identity`: where a job's store is and its name there;
- :mod:`._durable`: one pass, durably (resume, group commit, output in order);
- :mod:`._record`: what a run keeps of its counters in the store (its row, its timeline);
- :mod:`._batch` and :mod:`._rounds`: requests in provider batches, and the rounds that see them through;
- :mod:`._ray`: the job on a Ray cluster (one global rate limit, the driver the only writer).
"""

from corral.jobs._durable import JobResult, run_job
from corral.jobs._identity import STORE_ENV, job_name, job_settings, store_path
from corral.jobs._open import Job, look_at_batches, open_job
from corral.jobs._ray import run_job_on_ray
from corral.jobs._spec import BatchOptions, DocumentOptions, ExtractOptions, JobSpec, RayOptions

__all__ = [
    "STORE_ENV",
    "BatchOptions",
    "DocumentOptions",
    "ExtractOptions",
    "Job",
    "JobResult",
    "JobSpec",
    "RayOptions",
    "job_name",
    "job_settings",
    "look_at_batches",
    "open_job",
    "run_job",
    "run_job_on_ray",
    "store_path",
]
