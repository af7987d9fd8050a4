"""corral: turn a dataset of texts into validated, typed records with a language model.

Start with :class:`Extractor` (async) or :func:`run` (sync); see the README for the CLI.

``__all__`` below is the supported API, and the only one: every other module is free to change.
tests/typing/api.py pins each name's type (mypy fails when one is removed or retyped) and
tests/test_public_api.py checks that the list is complete. What it holds, by kind:

- extracting: :class:`Extractor`, :func:`run`, the nouns :class:`Item`, :class:`Outcome`,
  :class:`Usage`, :class:`ErrorInfo`, and the strategy names :data:`Strategy`, :data:`Order`;
- durable jobs (what ``corral run`` does, from Python): :func:`open_job` → :class:`Job`, described by
  a :class:`JobSpec` around :class:`ExtractOptions` (with :class:`BatchOptions` for provider batches,
  :class:`RayOptions` for :func:`run_job_on_ray`); a pass ends in a :class:`JobResult`;
- documents: :func:`run_documents`, a job's pass with long texts chunked, merged and grounded as
  :class:`DocumentOptions` say (what ``corral run`` runs), counting into :class:`DocumentCounts`;
  :func:`read_documents` for a folder, glob or file of documents;
- tables: :func:`extract_frame` (sync) and :func:`aextract_frame` take a pandas or polars
  DataFrame, a pyarrow Table or a ``datasets.Dataset`` and give it back with typed extraction columns;
- trust: :func:`evaluate` an output against gold records (an :class:`Evaluation`: scores per field
  with intervals, calibration of the values' confidence);
- what an extractor is built from: :func:`load_spec` → :class:`ResponseSpec`; a backend
  (:func:`open_backend`, or your own :class:`Backend` taking a :class:`Request` and answering a
  :class:`Completion`, described by its :class:`Profile` and the :class:`Mode` it puts the schema
  in); the run store's :class:`ResponseCache` (over a :class:`RunStore`); a :class:`Budget`, and a
  :class:`Price` per model;
  :class:`EndpointLimits` shared by several extractors; :func:`read_items` for the CLI's input formats;
- every error of the tree in :mod:`corral.errors`.

Names are loaded on first use (``import corral`` alone loads only the error tree), so ``corral
--help`` and a script that needs one part do not pay for the rest.

Not exported: ``corral.engine.run_strategy`` (the pipeline under :meth:`Extractor.map`, which is its
public form; its callback type is the engine's own business).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from corral.errors import (
    AuthError,
    BadRequest,
    BatchCanceled,
    BatchExpired,
    BudgetReached,
    ConfigError,
    CorralError,
    InputError,
    InputTooLong,
    ItemError,
    ModelNotFound,
    ModeRefused,
    OutputError,
    OutputInvalid,
    ProviderError,
    RateLimited,
    SchemaError,
    ServerError,
    StoreError,
    TransportError,
    UnsupportedParameter,
    UsageError,
)

if TYPE_CHECKING:
    from corral._extractor import Extractor, run
    from corral.backends import Backend, Completion, Mode, Profile, Request, open_backend
    from corral.cost import Budget, Price
    from corral.documents import DocumentCounts, run_documents
    from corral.engine import Order, Strategy
    from corral.engine._limits import EndpointLimits
    from corral.evaluation import Evaluation, evaluate
    from corral.frames import aextract_frame, extract_frame
    from corral.io import read_documents, read_items
    from corral.jobs import (
        BatchOptions,
        DocumentOptions,
        ExtractOptions,
        Job,
        JobResult,
        JobSpec,
        RayOptions,
        open_job,
        run_job_on_ray,
    )
    from corral.schema import ResponseSpec, load_spec
    from corral.store import RunStore
    from corral.store._cache import ResponseCache
    from corral.types import ErrorInfo, Item, Outcome, Usage

__version__ = "0.1.0"

#: where each public name lives, imported when first asked for
_HOMES = {
    "Extractor": "corral._extractor",
    "run": "corral._extractor",
    "Backend": "corral.backends",
    "Completion": "corral.backends",
    "Mode": "corral.backends",
    "Profile": "corral.backends",
    "Request": "corral.backends",
    "open_backend": "corral.backends",
    "Budget": "corral.cost",
    "Price": "corral.cost",
    "Order": "corral.engine",
    "Strategy": "corral.engine",
    "EndpointLimits": "corral.engine._limits",
    "Evaluation": "corral.evaluation",
    "evaluate": "corral.evaluation",
    "aextract_frame": "corral.frames",
    "extract_frame": "corral.frames",
    "DocumentCounts": "corral.documents",
    "run_documents": "corral.documents",
    "read_documents": "corral.io",
    "read_items": "corral.io",
    "BatchOptions": "corral.jobs",
    "DocumentOptions": "corral.jobs",
    "ExtractOptions": "corral.jobs",
    "Job": "corral.jobs",
    "JobResult": "corral.jobs",
    "JobSpec": "corral.jobs",
    "RayOptions": "corral.jobs",
    "open_job": "corral.jobs",
    "run_job_on_ray": "corral.jobs",
    "ResponseSpec": "corral.schema",
    "load_spec": "corral.schema",
    "RunStore": "corral.store",
    "ResponseCache": "corral.store._cache",
    "ErrorInfo": "corral.types",
    "Item": "corral.types",
    "Outcome": "corral.types",
    "Usage": "corral.types",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'corral' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # asked once: the module attribute answers from then on
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "AuthError",
    "Backend",
    "BadRequest",
    "BatchCanceled",
    "BatchExpired",
    "BatchOptions",
    "Budget",
    "BudgetReached",
    "Completion",
    "ConfigError",
    "CorralError",
    "DocumentCounts",
    "DocumentOptions",
    "EndpointLimits",
    "ErrorInfo",
    "Evaluation",
    "ExtractOptions",
    "Extractor",
    "InputError",
    "InputTooLong",
    "Item",
    "ItemError",
    "Job",
    "JobResult",
    "JobSpec",
    "Mode",
    "ModeRefused",
    "ModelNotFound",
    "Order",
    "Outcome",
    "OutputError",
    "OutputInvalid",
    "Price",
    "Profile",
    "ProviderError",
    "RateLimited",
    "RayOptions",
    "Request",
    "ResponseCache",
    "ResponseSpec",
    "RunStore",
    "SchemaError",
    "ServerError",
    "StoreError",
    "Strategy",
    "TransportError",
    "UnsupportedParameter",
    "Usage",
    "UsageError",
    "__version__",
    "aextract_frame",
    "evaluate",
    "extract_frame",
    "load_spec",
    "open_backend",
    "open_job",
    "read_documents",
    "read_items",
    "run",
    "run_documents",
    "run_job_on_ray",
]
