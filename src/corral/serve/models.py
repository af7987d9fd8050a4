"""What goes over the wire: request bodies, job status, records and errors, as pydantic models.

They validate JSON request bodies and they are the service's OpenAPI description (``/openapi.json``),
so the document says exactly what the code accepts and answers.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "JOB_ID_PATTERN",
    "ErrorBody",
    "ErrorDetail",
    "Health",
    "ItemIn",
    "JobRequest",
    "JobStatus",
    "Record",
    "RecordError",
    "RecordUsage",
]

#: ids clients may choose: safe in a URL path and in the store's job name
JOB_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class ItemIn(BaseModel):
    """One text with the id its result is reported under."""

    model_config = ConfigDict(extra="forbid")

    id: str | int = Field(description="unique within the job; numbers are taken as their decimal text")
    text: str


class JobRequest(BaseModel):
    """A job: a JSON Schema and the texts to extract it from (``texts`` or ``items``, not both)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    schema_: dict[str, Any] = Field(
        alias="schema",
        description="the JSON Schema of one record (an object; a root array means many per text)",
    )
    texts: list[str] | None = Field(None, description="texts; the results' ids are their positions, from 1")
    items: list[ItemIn] | None = Field(None, description="texts with ids of your own")
    many: bool = Field(False, description="extract every entity in each text (a list per item)")
    prompt: str | None = Field(None, description="the instruction sent as the system message")
    id: str | None = Field(
        None,
        pattern=JOB_ID_PATTERN,
        description="a job id of your own: posting it again resumes the job, extracting only what is "
        "not finished",
    )
    fresh: bool = Field(False, description="forget the job's earlier results and start it over")

    @model_validator(mode="after")
    def _one_source(self) -> JobRequest:
        if (self.texts is None) == (self.items is None):
            raise ValueError("send either texts (a list of strings) or items (a list of {id, text})")
        return self


class RecordError(BaseModel):
    kind: str = Field(description="stable name: invalid_output, rate_limited, server_error, input, ...")
    message: str


class RecordUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class Record(BaseModel):
    """One result, exactly as ``corral run`` writes it: the value or the reason there is none."""

    id: str
    input: str
    output: Any = Field(description="the extracted value (null when error is set)")
    error: RecordError | None
    attempts: int = Field(description="requests sent for the item, re-asks and retries included")
    usage: RecordUsage
    latency: float = Field(description="seconds from the first request to the final answer")


class ErrorDetail(BaseModel):
    type: str = Field(description="stable name: invalid_json, invalid_schema, unauthorized, not_found, ...")
    message: str = Field(description="what is wrong and how to fix it")


class ErrorBody(BaseModel):
    """Every 4xx and 5xx answer, and the last line of an NDJSON stream whose job did not finish."""

    error: ErrorDetail


class JobStatus(BaseModel):
    """A job as the server knows it: live counters while it runs, the store's record after."""

    id: str
    status: str = Field(
        description="running, completed, cancelled (DELETE), interrupted (the server stopped), "
        "stopped (the provider refused: bad key, unknown model), budget (--max-cost or --max-total-cost "
        "reached) or failed"
    )
    total: int | None = Field(None, description="items of the latest submission (unknown after a restart)")
    done: int = Field(description="results finished (in the store)")
    ok: int
    errors: int
    reused: int | None = Field(None, description="results answered from the store by this run")
    requests: int | None = Field(None, description="requests this run sent to the provider")
    cached: int | None = Field(None, description="requests this run answered from the response cache")
    shared: int | None = Field(
        None, description="requests this run answered by an identical request of the same job (sent once)"
    )
    retries: int | None = None
    cost: float | None = Field(None, description="dollars this run spent (null: the price is unknown)")
    created: str = Field(description="when the job was first submitted (ISO 8601, UTC)")
    updated: str = Field(description="when it was last (re)started")
    settings: dict[str, Any] = Field(
        description="what a resubmission must match: model, schema, prompt, mode"
    )
    error: ErrorDetail | None = Field(None, description="why the job stopped, when it did not complete")
    results: str = Field(description="where its results stream from")


class Health(BaseModel):
    status: str
    running_jobs: int
