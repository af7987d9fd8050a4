"""What identifies a durable job: where its store is, its name in the store, and the settings its
runs must share. Every entry point (the CLI, ``--ray``, ``corral serve``, the Python API) asks here,
so that the same output always finds the same job."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from corral._extractor import Extractor
from corral.store import DEFAULT_DIR, STORE_FILE

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
    """What identifies a job in its store: its output (stdout: its input). ``store``: ``--store``."""
    explicit_store = bool(store or os.environ.get(STORE_ENV))
    if output and output != "-":
        path = Path(output)
        # Beside the output, the file name is enough, and survives moving the directory.
        return str(path.resolve()) if explicit_store else path.name
    return f"<stdout>:{'<stdin>' if source == '-' else Path(source).resolve()}"


def job_settings(extractor: Extractor[Any]) -> dict[str, Any]:
    """What must not change between runs of one job: the extractor's fingerprint."""
    return extractor.fingerprint
