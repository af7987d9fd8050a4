"""What a durable job is asked to do, as data: :class:`JobSpec` (input, output, store, cost, how it
runs) around :class:`ExtractOptions` (what each request is). The command line maps its flags to a
spec once; a batch job keeps its spec in the run store (by field name, with a version) so that
``corral batch collect`` carries on from nothing but the output's name."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import orjson

from corral.engine import Order, Strategy
from corral.errors import ConfigError, StoreError
from corral.io import Documents, Format, SinkFormat, Template
from corral.io.items import ItemReader, read_items
from corral.store import without_credentials
from corral.types import keep_fields

__all__ = ["BatchOptions", "DocumentOptions", "ExtractOptions", "JobSpec", "RayOptions"]

#: the version of a spec kept in the run store; a spec without one was kept by corral 0.1's CLI
SPEC_VERSION = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class ExtractOptions:
    """How each item's request is made: the :class:`~corral.Extractor`'s options, minus the parts a
    job supplies itself (the schema, the cache, the prices, the budget)."""

    model: str | None = None
    base_url: str | None = None
    #: the variable that holds the key (the key itself is never part of a spec)
    api_key_env: str | None = None
    allow_plain_http: bool = False
    mode: str | None = None
    prompt: str | None = None
    max_retries: int = 2
    max_tokens: int = 1024
    reasoning_effort: str | None = None
    concurrency: int = 16
    timeout: float = 120.0
    many: bool = False
    rpm: float | None = None
    tpm: float | None = None
    adaptive: bool = True
    retries: int = 6
    #: the model's context window in tokens (None: the server's report or corral's data)
    context_window: int | None = None
    #: ask for token log-probabilities, each value's confidence (None: where the provider gives them)
    confidence: bool | None = None
    #: answers per item for confidence by agreement where no log-probabilities come (1: none)
    samples: int = 1
    #: a JSON file mapping confidences to how often they were right (``corral eval --fit-calibration``)
    calibration: str | None = None

    def extractor_options(self) -> dict[str, Any]:
        """Keyword arguments for :class:`~corral.Extractor`."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchOptions:
    """The job's requests go in provider batches (half price, answered within 24 h)."""

    #: resubmit a line that errored or expired in up to this many follow-up batches
    retries: int = 2
    #: re-ask invalid answers and resubmit failed lines online (full price, no wait)
    reask_online: bool = False
    #: first wait between status checks (it grows to 5 minutes)
    poll_every: float = 10.0
    #: the provider's enqueued-token limit (None: learned when a batch fails on it)
    token_limit: int | None = None
    #: a batch whose creation answer was lost and that cannot be found again: resubmit or wait
    lost: Literal["resubmit", "wait"] = "resubmit"


@dataclass(frozen=True, slots=True, kw_only=True)
class DocumentOptions:
    """Long texts: cut into chunks, their answers merged, every value grounded in the text (see
    :mod:`corral.documents`)."""

    #: cut a text too long for one request into chunks (False: such a text is a ``too_long`` error)
    chunking: bool = True
    #: tokens of text per chunk at most (fewer when the model's context window leaves less room)
    chunk_tokens: int = 2000
    #: tokens of the previous chunk's last sentences that begin the next one
    overlap: int = 50
    #: extraction passes over every chunk, merged (more finds more, at the price of more requests)
    passes: int = 1
    #: find every extracted string's span in the text (the record's ``grounding`` map)
    ground: bool = True
    #: a value found nowhere in the text: "keep" it (flagged), "drop" it, or "reask" the model
    ungrounded: Literal["keep", "drop", "reask"] = "keep"
    #: for a list of objects, by its path (``people``), the fields that make two entries one
    keys: tuple[tuple[str, tuple[str, ...]], ...] = ()
    #: a fuzzy match under this similarity (0-1) grounds nothing
    min_score: float = 0.85
    #: mark for review (``review`` in the record) the values less sure than this, or not in the text
    review_below: float | None = None

    def __post_init__(self) -> None:
        if self.chunk_tokens < 100:
            raise ConfigError(f"chunk_tokens must be at least 100, not {self.chunk_tokens}")
        if self.overlap < 0 or self.overlap >= self.chunk_tokens // 2:
            raise ConfigError(f"overlap must be 0 or more and under half of chunk_tokens, not {self.overlap}")
        if not 1 <= self.passes <= 10:
            raise ConfigError(f"passes must be from 1 to 10, not {self.passes}")
        if not 0.0 < self.min_score <= 1.0:
            raise ConfigError(f"min_score must be over 0 and at most 1, not {self.min_score}")
        if self.review_below is not None and not 0.0 < self.review_below <= 1.0:
            raise ConfigError(f"review_below must be over 0 and at most 1, not {self.review_below}")
        if self.ungrounded != "keep" and not self.ground:
            raise ConfigError(f"ungrounded={self.ungrounded!r} needs grounding: drop --no-ground")


@dataclass(frozen=True, slots=True, kw_only=True)
class RayOptions:
    """The job runs on a Ray cluster (``address``; None: a Ray of this machine's own)."""

    address: str | None = None
    workers: int = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class JobSpec:
    """One durable job: ``input`` through ``extract`` into ``output``, every result in the run store.

    ``schema``: a pydantic model, a JSON Schema dict, a ``.json`` path or ``file.py:Class`` (a spec
    kept for ``corral batch collect`` needs one of the last two). ``store``: the run store's path
    (default: ``.corral/`` beside the output, or ``$CORRAL_STORE``); ``durable=False`` keeps none (no
    resume, no cache). ``fresh``: forget the output's earlier results. ``retry_errors``: extract
    again the items that ended in error. ``max_cost``: stop starting requests before the job (all its
    runs) would spend more (USD); ``prices``: a JSON file of prices per million tokens.
    ``template``: each item's text built from its row's fields (``'Title: {title}\\n\\n{body}'``)
    instead of ``text_field``; ``keep``: input fields passed through to every output record.
    """

    schema: Any
    input: str | None = None
    output: str | None = None
    extract: ExtractOptions = field(default_factory=ExtractOptions)
    input_format: Format | None = None
    text_field: str = "text"
    id_field: str = "id"
    #: the user message built from several fields of each row (:class:`~corral.io.Template`)
    template: str | None = None
    #: input fields written into every output record, right after its id
    keep: tuple[str, ...] = ()
    output_format: SinkFormat | None = None
    csv_formulas: bool = False
    strategy: Strategy = "as_completed"
    order: Order = "input"
    store: str | None = None
    durable: bool = True
    fresh: bool = False
    cache: bool = True
    retry_errors: bool = False
    max_cost: float | None = None
    prices: str | None = None
    batch: BatchOptions | None = None
    ray: RayOptions | None = None
    documents: DocumentOptions = field(default_factory=DocumentOptions)
    #: a stronger model asked again for the items with a value under ``documents.review_below``
    #: (served where ``extract.model`` is: the same base URL and key)
    escalate: str | None = None

    def __post_init__(self) -> None:
        # Refused when the job is described, not when its input is opened: a batch job's spec is
        # kept in the store, and a Ray job reads its input only on the cluster.
        if self.template is not None:
            Template(self.template)
        keep_fields(self.keep)

    def read_input(self, source: str | None = None) -> ItemReader | Documents:
        """The items of ``source`` (default: :attr:`input`) as this spec reads them (format, fields,
        template, kept fields), opened now; ``close()`` the reader."""
        source = self.input if source is None else source
        if source is None:
            raise ConfigError("the job has no input: pass items to Job.run")
        return read_items(
            source,
            format=self.input_format,
            text_field=self.text_field,
            id_field=self.id_field,
            template=self.template,
            keep=self.keep,
        )

    def replace(self, **changes: Any) -> JobSpec:
        """A copy with ``changes``."""
        return dataclasses.replace(self, **changes)

    # --- kept in the run store -------------------------------------------------------------------

    def to_json(self) -> bytes:
        """The spec as the run store keeps it: by field name, paths made absolute (a later ``collect``
        may run from anywhere), never a key nor a base URL's ``user:password@`` (the store is a file
        anyone with a copy of it reads: they are given again with ``--base-url``)."""
        if not isinstance(self.schema, str):
            raise ConfigError(
                "a job that is collected later keeps its schema by name: pass a .json file or file.py:Class"
            )
        data = _as_dict(self)
        data["version"] = SPEC_VERSION
        data["schema"] = _absolute_schema(self.schema)
        for name in ("input", "output", "prices"):
            if data[name] not in (None, "-"):
                data[name] = str(Path(data[name]).resolve())
        base_url = self.extract.base_url
        if base_url:
            data["extract"]["base_url"] = without_credentials(base_url)
            parts = urlsplit(base_url)
            data["base_url_credentials"] = bool(parts.username or parts.password)
        # How this invocation runs, not what the job is: collect is a new invocation.
        for name in ("ray", "store", "durable", "fresh", "retry_errors"):
            data.pop(name)
        return orjson.dumps(data)

    @classmethod
    def from_json(cls, text: str | bytes) -> tuple[JobSpec, bool]:
        """A kept spec, and whether its base URL had a ``user:password@`` (to be given again)."""
        data = orjson.loads(text)
        if not isinstance(data, dict):
            raise StoreError("a job's kept options are not an object: the run store is damaged")
        if "version" not in data:
            data = _from_cli_0_1(data)
        elif data["version"] > SPEC_VERSION:
            raise StoreError(
                f"the job was submitted by a newer corral (spec version {data['version']}): upgrade corral"
            )
        credentials = bool(data.pop("base_url_credentials", False))
        data.pop("version", None)
        extract = ExtractOptions(**data.pop("extract"))
        batch = data.pop("batch", None)
        documents = data.pop("documents", None) or {}
        documents["keys"] = tuple((path, tuple(names)) for path, names in documents.get("keys", ()))
        data["keep"] = tuple(data.get("keep") or ())  # a list in JSON; absent from older specs
        spec = cls(
            **data,
            extract=extract,
            batch=None if batch is None else BatchOptions(**batch),
            documents=DocumentOptions(**documents),
        )
        return spec, credentials


def _as_dict(spec: JobSpec) -> dict[str, Any]:
    data = {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)}
    data["extract"] = spec.extract.extractor_options()
    data["batch"] = None if spec.batch is None else dataclasses.asdict(spec.batch)
    data["documents"] = dataclasses.asdict(spec.documents)
    return data


def _absolute_schema(schema: str) -> str:
    """``file.py:Class`` / ``schema.json`` made absolute, so that collect finds them from anywhere."""
    path, colon, name = schema.rpartition(":") if ":" in schema else (schema, "", "")
    if Path(path).is_file():
        return str(Path(path).resolve()) + colon + name
    return schema


#: corral 0.1 kept the submitting command line's option names; they map onto a spec as follows
_EXTRACT_0_1 = (
    "model",
    "base_url",
    "api_key_env",
    "allow_plain_http",
    "mode",
    "prompt",
    "max_retries",
    "max_tokens",
    "concurrency",
    "timeout",
    "many",
    "rpm",
    "tpm",
    "retries",
)


def _from_cli_0_1(old: dict[str, Any]) -> dict[str, Any]:
    """A job kept by corral 0.1 (its command line's ``argparse`` names) as a spec's fields."""
    extract = {name: old[name] for name in _EXTRACT_0_1 if old.get(name) is not None}
    extract["adaptive"] = not old.get("no_adaptive", False)
    batch = {"retries": old.get("batch_retries", 2), "reask_online": bool(old.get("reask_online"))}
    if old.get("batch_token_limit") is not None:
        batch["token_limit"] = old["batch_token_limit"]
    return {
        "schema": old["schema"],
        "input": old["input"],
        "output": old["output"],
        "extract": extract,
        "input_format": old.get("format"),
        "text_field": old.get("text_field", "text"),
        "id_field": old.get("id_field", "id"),
        "output_format": old.get("output_format"),
        "csv_formulas": bool(old.get("csv_formulas")),
        "strategy": old.get("strategy", "as_completed"),
        "order": old.get("order", "input"),
        "cache": not old.get("no_cache", False),
        "max_cost": old.get("max_cost"),
        "prices": old.get("prices"),
        "batch": batch,
        "base_url_credentials": old.get("base_url_credentials", False),
    }
