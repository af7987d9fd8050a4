"""What identifies a durable job: where its store is, its name in the store, and the settings its
runs must share. Every entry point (the CLI, ``--ray``, ``corral serve``, the Python API) asks here,
so that the same output always finds the same job."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from corral._extractor import Extractor
from corral.store import DEFAULT_DIR, STORE_FILE, job_key

__all__ = ["STORE_ENV", "job_name", "job_settings", "store_path"]

#: names the store file (or directory) for every run, like --store
STORE_ENV = "CORRAL_STORE"


def store_path(output: str | None, explicit: str | None) -> Path:
    """The run store: ``explicit`` (``--store``), else ``$CORRAL_STORE``, else ``.corral/corral.db``
    beside the output (the working directory for stdout)."""
    chosen = explicit or os.environ.get(STORE_ENV)
    if chosen:
        return Path(chosen)
    beside = Path(output).parent if output and output != "-" else Path.cwd()
    return beside / DEFAULT_DIR / STORE_FILE


def job_name(output: str | None, source: str, *, store: str | None) -> str:
    """What identifies a job in its store (:func:`~corral.store.job_key`): its output (stdout: its
    input). ``store``: ``--store``; it, or ``$CORRAL_STORE``, puts the store apart from the output."""
    return job_key(output, source, store_apart=bool(store or os.environ.get(STORE_ENV)))


def job_settings(extractor: Extractor[Any]) -> dict[str, Any]:
    """What must not change between runs of one job: the extractor's fingerprint."""
    return extractor.fingerprint
