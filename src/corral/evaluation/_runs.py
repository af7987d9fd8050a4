"""``compare``: the same sample of an input through several configurations (models, prompts, modes),
each a durable job of its own, each scored against the gold: accuracy against cost and latency, and
which configurations no other beats on both (the Pareto front).

Every configuration is an ordinary job (:func:`~corral.jobs.open_job`, run as ``corral run`` runs it,
:func:`~corral.documents.run_documents`) writing ``DIR/NAME.jsonl`` with its store in ``DIR``: a
re-run of the comparison answers what it can from the store and the cache, and pays for nothing
twice; a configuration added later costs only its own requests.
"""

from __future__ import annotations

import dataclasses
import random
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from corral.documents import run_documents
from corral.errors import ConfigError
from corral.evaluation._evaluation import evaluate, read_gold
from corral.evaluation._results import Evaluation
from corral.io.items import read_items
from corral.jobs import ExtractOptions, JobSpec, open_job

__all__ = ["Compared", "Configuration", "compare", "pareto_front"]

#: the keys a configuration may set, and the ExtractOptions field each sets
_KEYS = {
    "model": "model",
    "base-url": "base_url",
    "mode": "mode",
    "prompt": "prompt",
    "max-tokens": "max_tokens",
    "reasoning-effort": "reasoning_effort",
    "api-key-env": "api_key_env",
}


@dataclass(frozen=True, slots=True)
class Configuration:
    """A named way to run the sample: the request options it changes from the shared ones."""

    name: str
    changes: Mapping[str, Any]

    @classmethod
    def parse(cls, text: str) -> Configuration:
        """``NAME:key=value,key=value`` (keys: model, base-url, mode, prompt, max-tokens,
        reasoning-effort, api-key-env); ``NAME`` alone, or no name (``model=...``), is named after
        its model."""
        name, colon, rest = text.partition(":")
        if not colon or "=" in name:
            name, rest = "", text
        changes: dict[str, Any] = {}
        for part in (p for p in rest.split(",") if p.strip()):
            key, equals, value = part.partition("=")
            key = key.strip()
            if not equals or key not in _KEYS:
                raise ConfigError(
                    f"--config {text!r}: {key or part!r} is not one of {', '.join(_KEYS)} (write key=value)"
                )
            changes[_KEYS[key]] = int(value) if key == "max-tokens" else value.strip()
        name = name.strip() or str(changes.get("model") or "default").replace("/", "-")
        if not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise ConfigError(f"--config {text!r}: the name {name!r} must be letters, digits, - _ .")
        return cls(name, changes)


@dataclass(slots=True)
class Compared:
    """One configuration's run of the sample and its scores."""

    configuration: Configuration
    output: Path
    evaluation: Evaluation
    #: dollars spent on the sample (this run and earlier ones), None when the model has no price
    cost: float | None
    #: median seconds an item took, from first request to answer
    latency: float | None
    status: str
    #: on the Pareto front: no other configuration is as accurate for less (cost, then latency)
    front: bool = False

    def to_json(self) -> dict[str, Any]:
        overall = self.evaluation.overall
        return {
            "name": self.configuration.name,
            "changes": dict(self.configuration.changes),
            "output": str(self.output),
            "f1": overall.f1,
            "f1_ci": overall.ci.get("f1"),
            "precision": overall.precision,
            "recall": overall.recall,
            "cost": self.cost,
            "latency_p50": self.latency,
            "status": self.status,
            "front": self.front,
        }


async def compare(
    source: str,
    gold: str,
    schema: str,
    configurations: Sequence[Configuration],
    folder: str | Path,
    *,
    shared: ExtractOptions | None = None,
    sample: int | None = None,
    seed: int = 0,
    bootstrap: int = 1000,
    prices: str | None = None,
) -> list[Compared]:
    """Run ``configurations`` over the same sample of ``source`` (``sample`` of its items that the
    gold has, chosen by ``seed``; all of them when None), into ``folder``, and score each."""
    if not configurations:
        raise ConfigError("give at least one --config to compare")
    names = [c.name for c in configurations]
    if len(set(names)) != len(names):
        raise ConfigError(f"two configurations share a name: {', '.join(names)}; name them NAME:...")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sampled, scored = _sample(source, gold, schema, folder, sample=sample, seed=seed)
    results = []
    for configuration in configurations:
        extract = dataclasses.replace(shared or ExtractOptions(), **configuration.changes)
        output = folder / f"{configuration.name}.jsonl"
        spec = JobSpec(schema=schema, input=str(sampled), output=str(output), extract=extract, prices=prices)
        async with open_job(spec) as job:
            result = await run_documents(job)
            spent = job.handle.spent_before if job.handle is not None else 0.0
            priced = job.extractor.price is not None
        cost = spent + result.counts.cost if priced else None
        evaluation = evaluate(output, scored, schema, bootstrap=bootstrap, seed=seed)
        results.append(Compared(configuration, output, evaluation, cost, _latency(output), result.status))
    for entry, on_front in zip(results, pareto_front(results), strict=True):
        entry.front = on_front
    return results


def pareto_front(results: Sequence[Compared]) -> list[bool]:
    """Whether each result is on the front: no other is at least as accurate (F1) and at least as
    cheap and fast, and better in one of them. An unknown cost or latency counts as the worst."""

    def key(entry: Compared) -> tuple[float, float, float]:
        f1 = entry.evaluation.overall.f1 or 0.0
        cost = entry.cost if entry.cost is not None else float("inf")
        latency = entry.latency if entry.latency is not None else float("inf")
        return f1, cost, latency

    keys = [key(entry) for entry in results]

    def beats(a: tuple[float, float, float], b: tuple[float, float, float]) -> bool:
        return a[0] >= b[0] and a[1] <= b[1] and a[2] <= b[2] and a != b

    return [not any(beats(other, mine) for other in keys) for mine in keys]


def _sample(
    source: str, gold: str, schema: str, folder: Path, *, sample: int | None, seed: int
) -> tuple[Path, Path]:
    """The items of ``source`` the gold has (``sample`` of them, by ``seed``), and their gold, as
    JSONL files in ``folder``; a file is written again only when it would differ, so a re-run is the
    same job."""
    wanted = read_gold(gold, schema)
    reader = read_items(source)
    try:
        items = [item for item in reader if item.id in wanted]
    finally:
        reader.close()
    if not items:
        raise ConfigError(f"no item of {source} has a gold record in {gold}: do their ids match?")
    if sample is not None and sample < len(items):
        chosen = set(random.Random(seed).sample(range(len(items)), sample))
        items = [item for index, item in enumerate(items) if index in chosen]
    sampled = _write(folder / "sample.jsonl", [{"id": item.id, "text": item.text} for item in items])
    scored = _write(
        folder / "sample-gold.jsonl", [{"id": item.id, "output": wanted[item.id]} for item in items]
    )
    return sampled, scored


def _write(path: Path, records: list[dict[str, Any]]) -> Path:
    data = b"".join(orjson.dumps(record) + b"\n" for record in records)
    if not path.exists() or path.read_bytes() != data:
        path.write_bytes(data)
    return path


def _latency(output: Path) -> float | None:
    latencies = []
    for line in output.read_bytes().splitlines():
        record = orjson.loads(line)
        if record.get("error") is None and isinstance(record.get("latency"), int | float):
            latencies.append(float(record["latency"]))
    return statistics.median(latencies) if latencies else None
