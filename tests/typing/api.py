"""The supported API, pinned for the type checker: every name in ``corral.__all__``, used as a user would.

mypy checks this file (``files`` in pyproject.toml holds ``tests``); pytest never collects it (its
name is not ``test_*.py``) and nothing runs it. Removing a public name, or changing the type of what
it takes or gives, makes mypy fail here: the surface changes only on purpose.
tests/test_public_api.py checks that every name in ``__all__`` is used below.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Iterator, Mapping
from typing import Any

import pandas as pd
import pyarrow as pa
from pydantic import BaseModel

import corral


class Person(BaseModel):
    name: str
    age: int


# --- extracting ------------------------------------------------------------------------------


async def extract_with_an_extractor(texts: list[str]) -> None:
    strategy: corral.Strategy = "as_completed"
    order: corral.Order = "input"
    async with corral.Extractor(Person, model="openai/gpt-4o-mini", concurrency=8) as ex:
        one: corral.Outcome[Person] = await ex.extract("My name is John and I am 20 years old")
        person: Person | None = one.value
        outcomes: AsyncGenerator[corral.Outcome[Person], None] = ex.map(
            texts, strategy=strategy, concurrency=None, order=order
        )
        async for outcome in outcomes:
            print(outcome.id, outcome.value or outcome.error)
        everything: list[corral.Outcome[Person]] = await ex.gather(texts, concurrency=4)
        print(person, everything, ex.spec)


def extract_in_a_script(texts: list[str | corral.Item]) -> list[corral.Outcome[Any]]:
    return corral.run(texts, Person, model="openai/gpt-4o-mini", strategy="gather", order="input")


def read_the_nouns(outcome: corral.Outcome[Person]) -> None:
    item = corral.Item(id="1", text="My name is John", fields={"source": "a"})
    text: str = item.text
    ok: bool = outcome.ok
    value: Person = outcome.unwrap()
    attempts: int = outcome.attempts
    latency: float = outcome.latency
    usage: corral.Usage = outcome.usage
    tokens: int = usage.prompt_tokens + usage.completion_tokens + usage.total_tokens
    error: corral.ErrorInfo | None = outcome.error
    why: str = "" if error is None else f"{error.kind}: {error.message}"
    record: dict[str, Any] = outcome.to_record()
    print(text, ok, value, attempts, latency, tokens, why, record)


def read_input_files() -> Iterator[corral.Item]:
    return corral.read_items("reviews.csv", format="csv", text_field="body", id_field="review_id")


# --- durable jobs ----------------------------------------------------------------------------


async def run_a_durable_job() -> corral.JobResult:
    extract = corral.ExtractOptions(model="openai/gpt-4o-mini", rpm=500, concurrency=8)
    spec = corral.JobSpec(schema="person.py:Person", input="in.jsonl", output="out.jsonl", extract=extract)
    async with corral.open_job(spec.replace(max_cost=2.0)) as job:
        fingerprint: Mapping[str, Any] = job.fingerprint
        key: str | None = job.key
        result: corral.JobResult = await job.run()
        print(fingerprint, key, result.status, result.counts.not_started)
    confident = corral.Extractor(Person, model="openai/gpt-4o-mini", mode="json_schema", confidence=True)
    print(confident)
    opened: corral.Job = await corral.open_job(spec, key="elsewhere")
    try:
        return await opened.run([corral.Item(id="1", text="Bob is 3")])
    finally:
        await opened.aclose()


async def run_documents() -> corral.DocumentCounts:
    options = corral.DocumentOptions(
        chunk_tokens=1500, passes=2, ungrounded="reask", keys=(("people", ("name",)),)
    )
    spec = corral.JobSpec(
        schema="people.py:People", input="contracts/", output="out.jsonl", documents=options
    )
    counts = corral.DocumentCounts()
    documents: Iterator[corral.Item] = corral.read_documents("contracts/**/*.pdf")
    async with corral.open_job(spec) as job:
        result: corral.JobResult = await corral.run_documents(job, documents, documents=counts)
        print(result.status, counts.ok, counts.errors, counts.ungrounded, counts.chunks)
    return counts


def tables(frame: pd.DataFrame, table: pa.Table) -> tuple[pd.DataFrame, pa.Table]:
    people: pd.DataFrame = corral.extract_frame(frame, "person.py:Person", text="bio", model="gpt-4.1-mini")
    typed: pa.Table = corral.extract_frame(
        table, "person.py:Person", template="{title}: {body}", store=".corral", flatten=True, concurrency=8
    )
    return people, typed


async def tables_async(frame: pd.DataFrame) -> pd.DataFrame:
    return await corral.aextract_frame(frame, "person.py:Person", max_cost=2.0, id="doc_id")


def evaluate_an_output() -> float | None:
    result: corral.Evaluation = corral.evaluate("out.jsonl", "gold.csv", "person.py:Person", bootstrap=200)
    print(result.table(worst=5), result.to_json()["fields"], result.calibration)
    f1: float | None = result.overall.f1
    return f1


def durable_jobs_elsewhere() -> corral.JobSpec:
    spec = corral.JobSpec(schema="review.json", input="in.jsonl", output="out.jsonl")
    batched = spec.replace(batch=corral.BatchOptions(retries=1, reask_online=True, token_limit=90_000))
    corral.run_job_on_ray(spec.replace(ray=corral.RayOptions(address="auto", workers=4)))
    return batched


# --- what an extractor is built from ---------------------------------------------------------


def load_a_schema() -> corral.ResponseSpec[Any]:
    spec: corral.ResponseSpec[Any] = corral.load_spec(list[Person])
    many: bool = spec.many
    schema: Mapping[str, Any] = spec.schema
    print(many, schema, spec.parse('{"name": "John", "age": 20}'))
    return spec


def open_the_run_store_and_budget() -> corral.Extractor[Person]:
    store: corral.RunStore = corral.RunStore.open(".corral")
    cache = corral.ResponseCache(store, read=True)
    price = corral.Price(input=0.15, output=0.60)
    budget = corral.Budget(5.0)
    limits = corral.EndpointLimits(rpm=500, tpm=200_000)
    return corral.Extractor(Person, cache=cache, prices={"gpt-4o-mini": price}, budget=budget, limits=limits)


class EchoBackend:
    """A backend of one's own: anything that meets the :class:`corral.Backend` protocol."""

    @property
    def profile(self) -> corral.Profile:
        return corral.Profile(name="echo", modes=(corral.Mode.JSON_SCHEMA, corral.Mode.TOOLS))

    @property
    def model(self) -> str:
        return "echo-1"

    @property
    def endpoint(self) -> str:
        return "memory://echo"

    @property
    def context_window(self) -> int | None:
        return None

    async def complete(self, request: corral.Request) -> corral.Completion:
        mode: corral.Mode = request.mode
        reply = {"role": "assistant", "content": "{}"}
        return corral.Completion(text="{}", finish_reason=str(mode), usage=corral.Usage(), reply=reply)

    async def aclose(self) -> None:
        await asyncio.sleep(0)


def bring_a_backend() -> tuple[corral.Extractor[Person], corral.Extractor[Person]]:
    own: corral.Backend = EchoBackend()
    shared: corral.Backend = corral.open_backend("openai/gpt-4o-mini", concurrency=32, timeout=60.0)
    return corral.Extractor(Person, backend=own), corral.Extractor(Person, backend=shared, mode="tools")


version: str = corral.__version__


# --- the error tree --------------------------------------------------------------------------

# Each assignment pins a parent: moving a class elsewhere in the tree fails here.
usage_errors: tuple[type[corral.UsageError], ...] = (
    corral.SchemaError,
    corral.InputError,
    corral.ConfigError,
    corral.StoreError,
    corral.OutputError,
)
provider_errors: tuple[type[corral.ProviderError], ...] = (
    corral.RateLimited,
    corral.ServerError,
    corral.TransportError,
    corral.BadRequest,
    corral.AuthError,
    corral.ModelNotFound,
    corral.BatchExpired,
    corral.BatchCanceled,
)
bad_requests: tuple[type[corral.BadRequest], ...] = (
    corral.UnsupportedParameter,
    corral.ModeRefused,
    corral.InputTooLong,
)
item_errors: tuple[type[corral.ItemError], ...] = (corral.OutputInvalid,)
corral_errors: tuple[type[corral.CorralError], ...] = (
    corral.UsageError,
    corral.ProviderError,
    corral.ItemError,
    corral.BudgetReached,
)


def handle_errors(texts: list[str]) -> str:
    try:
        corral.run(texts, Person)
    except corral.BudgetReached as stop:
        spent: float = stop.spent
        limit: float = stop.limit
        return f"{stop.kind}: {spent} of {limit}"
    except corral.ProviderError as failure:
        retryable: bool = failure.retryable
        fatal: bool = failure.fatal
        status: int | None = failure.status
        retry_after: float | None = failure.retry_after
        return f"{failure.kind} {status} {retry_after} {retryable} {fatal}"
    except corral.InputError as bad_input:
        path: str | None = bad_input.path
        line: int | None = bad_input.line
        return f"{path}:{line}"
    except corral.OutputInvalid as invalid:
        problems: list[str] = invalid.problems
        return "; ".join(problems)
    except corral.CorralError as error:
        return error.kind
    return ""


def raise_errors() -> list[corral.CorralError]:
    return [
        corral.InputError("not JSON", path="in.jsonl", line=3),
        corral.OutputInvalid(["age: not an integer"]),
        corral.BudgetReached("budget reached", spent=5.0, limit=5.0),
        corral.RateLimited("slow down", status=429, retry_after=1.5, headers={"retry-after": "2"}),
        corral.TransportError("reset", connect=True),
    ]
