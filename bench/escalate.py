"""Escalation, measured: a small model for every item, a stronger one only for the values the small
one doubts, against each model alone and against the best the two can do by splitting the items
between them at the same spend.

    python bench/escalate.py             # 400 items, about 20 seconds
    python bench/escalate.py --quick     # 120 items

Against the simulator, which gets ages wrong for a share of items that depends on the model
(``gpt-4o-mini`` 30%, ``gpt-4o`` 3%; names 3% and 1%) and gives token log-probabilities that follow its
own mistakes; both models priced as OpenAI prices them (corral's price table). Each configuration is
a job of its own (``corral.open_job`` + ``corral.run_documents``: what ``corral run`` does), scored with
``corral.evaluate`` against the right answers.

"At the same spend": running the strong model on a share s of the items and the small one on the rest
costs and scores the straight line between the two models' points; escalation is worth its cost only
if it scores above that line at its own cost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
from pathlib import Path
from typing import Any

SCHEMA = """from pydantic import BaseModel


class Person(BaseModel):
    name: str
    age: int
"""
ERRORS = {"gpt-4o-mini:age": 0.30, "gpt-4o-mini:name": 0.03, "gpt-4o:age": 0.03, "gpt-4o:name": 0.01}
FIRST = ["Ana", "Bruno", "Chiara", "Dmitri", "Elena", "Farid", "Greta", "Hugo", "Ines", "Jonas"]
LAST = ["Costa", "Rossi", "Novak", "Ivanova", "Schmidt", "Haddad", "Berg", "Lund", "Moreau", "Weber"]


async def run(folder: Path, url: str, name: str, **options: Any) -> tuple[float, float]:
    from corral import evaluate
    from corral.documents import run_documents
    from corral.jobs import DocumentOptions, ExtractOptions, JobSpec, open_job

    schema = f"{folder / 'person.py'}:Person"
    output = folder / f"{name}.jsonl"
    review = options.pop("review_below", None)
    escalate = options.pop("escalate", None)
    spec = JobSpec(
        schema=schema,
        input=str(folder / "in.jsonl"),
        output=str(output),
        extract=ExtractOptions(base_url=url, mode="json_schema", concurrency=32, **options),
        documents=DocumentOptions(review_below=review),
        escalate=escalate,
        durable=False,
    )
    async with open_job(spec) as job:
        result = await run_documents(job)
    scored = evaluate(output, folder / "gold.jsonl", schema, bootstrap=0)
    return scored.overall.f1 or 0.0, result.counts.cost


async def main(count: int) -> None:
    from corral.sim import SimConfig, Simulator

    rng = random.Random(5)
    people = [(f"{rng.choice(FIRST)} {rng.choice(LAST)}", rng.randint(18, 80)) for _ in range(count)]
    with tempfile.TemporaryDirectory(prefix="corral-bench-escalate-") as name:
        folder = Path(name)
        (folder / "person.py").write_text(SCHEMA)
        (folder / "in.jsonl").write_text("".join(
            json.dumps({"id": str(n), "text": f"My name is {who} and I am {age} years old."}) + "\n"
            for n, (who, age) in enumerate(people, start=1)))  # fmt: skip
        (folder / "gold.jsonl").write_text("".join(
            json.dumps({"id": str(n), "output": {"name": who, "age": age}}) + "\n"
            for n, (who, age) in enumerate(people, start=1)))  # fmt: skip
        async with Simulator(SimConfig(seed=9, field_errors=ERRORS)) as sim:
            small = await run(folder, sim.url, "small", model="openai/gpt-4o-mini")
            strong = await run(folder, sim.url, "strong", model="openai/gpt-4o")
            rows = [("gpt-4o-mini alone", small), ("gpt-4o alone", strong)]
            for line in (0.5, 0.7, 0.9):
                options = {"model": "openai/gpt-4o-mini", "review_below": line, "escalate": "openai/gpt-4o"}
                scored = await run(folder, sim.url, f"e{line}", **options)
                rows.append((f"gpt-4o-mini, gpt-4o under {line:g}", scored))
    print(f"{count} items; the simulator errs on ages for 30% (gpt-4o-mini) and 3% (gpt-4o) of them\n")
    print("| configuration | F1 | cost | F1 of the same spend split between the two models |")
    print("| --- | --- | --- | --- |")
    (f1_small, cost_small), (f1_strong, cost_strong) = small, strong
    for label, (f1, cost) in rows:
        share = (cost - cost_small) / (cost_strong - cost_small) if cost_strong > cost_small else 0.0
        split = f1_small + min(max(share, 0.0), 1.0) * (f1_strong - f1_small)
        better = (
            "" if label.endswith("alone") else (" (escalation above it)" if f1 > split else " (not above it)")
        )
        print(f"| {label} | {f1:.3f} | ${cost:.4f} | {split:.3f}{better} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="120 items")
    arguments = parser.parse_args()
    asyncio.run(main(120 if arguments.quick else 400))
