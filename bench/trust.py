"""How far the embedded model can be trusted, value by value: accuracy per field against known answers,
and whether its confidence (the probability of the tokens that spell each value, from its own logits)
says which values to check.

    python bench/trust.py                 # 240 texts, about five minutes on two cores
    python bench/trust.py --quick         # 60 texts
    python bench/trust.py --plot docs/embedded-reliability.png

The texts are generated here, seeded, with their answers known: a person's name, age and city in a
dozen phrasings, some plain ("My name is Ana Costa and I am 34 years old, from Porto."), some that
trip a small model (an age it must not compute from a birth year, a number that is not an age, no
city at all, two people). Each runs through ``corral.Extractor`` with the embedded Gemma 3 270M
(greedy, so a second run gives the same figures), and ``corral.evaluate`` scores the output against
the answers: precision, recall and F1 per field with bootstrap intervals, the expected calibration
error (ECE) of the confidence, and the accuracy of the values at or above 0.8 confidence against the
accuracy of all of them (the issue's targets: ECE ≤ 0.10, and a clear margin above 0.8). Then the
recalibration: a map fitted on the first half's confidences, measured on the second half.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

FIRST = ["Ana", "Bruno", "Chiara", "Dmitri", "Elena", "Farid", "Greta", "Hugo", "Ines", "Jonas", "Kira",
         "Lars", "Mona", "Nils", "Olga", "Pavel", "Rosa", "Samir", "Tove", "Yusuf"]  # fmt: skip
LAST = ["Costa", "Rossi", "Novak", "Ivanova", "Schmidt", "Haddad", "Berg", "Lund", "Moreau", "Weber",
        "Sato", "Okafor", "Silva", "Kowalski", "Nieminen"]  # fmt: skip
CITIES = ["Porto", "Lyon", "Bergen", "Graz", "Turin", "Gdansk", "Leeds", "Tartu", "Malmo", "Ghent",
          "Bilbao", "Cork", "Brno", "Split", "Lille"]  # fmt: skip

#: (template, whether the answer keeps the age, whether it keeps the city, hard)
TEMPLATES: list[tuple[str, bool, bool, bool]] = [
    ("My name is {name} and I am {age} years old, from {city}.", True, True, False),
    ("{name}, {age}, moved to {city} last spring.", True, True, False),
    ("Meet {name} from {city}. {first} turned {age} in May.", True, True, False),
    ("In {city}, a {age}-year-old named {name} opened a bakery.", True, True, False),
    ("{name} ({age}) lives in {city} with two cats.", True, True, False),
    ("This is {name}. Age: {age}. Home town: {city}.", True, True, False),
    ("{name} works at the harbour in {city}.", False, True, True),  # no age: none to give
    ("{name}, {age}, has 12 bicycles and no car.", True, False, True),  # no city; 12 is not the age
    ("{name} was born in {year} and grew up in {city}.", False, True, True),  # an age must not be computed
    ("Last week {name} of {city} ran 42 kilometres; {first} is {age}.", True, True, True),
    ("Our new colleague {name} is {age} years young and commutes from {city}.", True, True, False),
    ("{name} and her brother Tom, both from {city}, are {age} and 30.", True, True, True),
]

SCHEMA = """from pydantic import BaseModel


class Person(BaseModel):
    name: str
    age: int | None = None
    city: str | None = None
"""


class Person(BaseModel):
    name: str
    age: int | None = None
    city: str | None = None


def labelled(count: int, seed: int) -> list[tuple[str, dict[str, Any]]]:
    """``count`` texts with their answers."""
    rng = random.Random(seed)
    texts = []
    for number in range(count):
        template, has_age, has_city, _hard = TEMPLATES[number % len(TEMPLATES)]
        first, last = rng.choice(FIRST), rng.choice(LAST)
        age, city = rng.randint(19, 78), rng.choice(CITIES)
        text = template.format(name=f"{first} {last}", first=first, age=age, city=city, year=2024 - age)
        answer = {
            "name": f"{first} {last}",
            "age": age if has_age else None,
            "city": city if has_city else None,
        }
        texts.append((text, answer))
    return texts


async def extract(texts: list[tuple[str, dict[str, Any]]], out: Path) -> float:
    from corral import Extractor, Item

    started = time.perf_counter()
    async with Extractor(Person) as ex:  # the embedded model; its confidence comes with each value
        with out.open("w") as sink:
            items = [Item(id=str(n), text=text) for n, (text, _) in enumerate(texts, start=1)]
            async for outcome in ex.map(items, order="input"):
                sink.write(json.dumps(outcome.to_record()) + "\n")
    return time.perf_counter() - started


def _recalibrated(root: Path, out: Path, gold: Path, schema: str) -> tuple[float, float, int]:
    """The calibration error on the second half of the items, before and after a map fitted on the
    first half (what ``corral eval --fit-calibration`` and ``corral run --calibration`` do)."""
    from corral import evaluate
    from corral.evaluation import fit_recalibration

    records = [json.loads(line) for line in out.read_text().splitlines()]
    golds = gold.read_text().splitlines()
    half = len(records) // 2
    parts = {}
    for name, chosen, gold_lines in (
        ("fit", records[:half], golds[:half]),
        ("test", records[half:], golds[half:]),
    ):
        (root / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in chosen))
        (root / f"{name}-gold.jsonl").write_text("".join(line + "\n" for line in gold_lines))
        parts[name] = evaluate(root / f"{name}.jsonl", root / f"{name}-gold.jsonl", schema, bootstrap=0)
    fitted = fit_recalibration(parts["fit"].confidence_pairs)
    for record in records[half:]:
        for entry in (record.get("confidence") or {}).values():
            entry["value"] = fitted.apply(entry["method"], entry["value"])
    (root / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records[half:]))
    after = evaluate(root / "test.jsonl", root / "test-gold.jsonl", schema, bootstrap=0)
    before_cal, after_cal = parts["test"].calibration, after.calibration
    if before_cal is None or after_cal is None:
        raise SystemExit("no value carried a confidence: nothing to recalibrate")
    return before_cal.ece, after_cal.ece, sum(len(p) for p in fitted.points.values())


def plot(calibration: Any, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4.8, 4.2), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], color="#999", linestyle="--", linewidth=1, label="perfectly calibrated")
    bins = [b for b in calibration.bins if b.count]
    axes.plot([b.confidence for b in bins], [b.accuracy for b in bins], marker="o", color="#2563eb",
              label="Gemma 3 270M (embedded)")  # fmt: skip
    for b in bins:
        axes.annotate(str(b.count), (b.confidence, b.accuracy), textcoords="offset points", xytext=(4, -10),
                      fontsize=7, color="#555")  # fmt: skip
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.02)
    axes.set_xlabel("confidence (mean in the bin)")
    axes.set_ylabel("accuracy")
    axes.set_title(f"Reliability: ECE {calibration.ece:.3f} over {calibration.count} values", fontsize=10)
    axes.legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="60 texts")
    parser.add_argument("--count", type=int, help="texts (default 240; --quick 60)")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--plot", type=Path, help="write the reliability plot to this PNG")
    args = parser.parse_args()
    count = args.count or (60 if args.quick else 240)

    from corral import evaluate

    texts = labelled(count, args.seed)
    with tempfile.TemporaryDirectory(prefix="corral-bench-trust-") as folder:
        root = Path(folder)
        out, gold, schema = root / "out.jsonl", root / "gold.jsonl", root / "person.py"
        gold.write_text("".join(json.dumps({"id": str(n), "output": answer}) + "\n"
                                for n, (_, answer) in enumerate(texts, start=1)))  # fmt: skip
        schema.write_text(SCHEMA)
        wall = asyncio.run(extract(texts, out))
        result = evaluate(out, gold, f"{schema}:Person", bootstrap=1000, seed=args.seed)
        held_out = _recalibrated(root, out, gold, f"{schema}:Person")
    print(f"{count} texts ({sum(t[3] for t in TEMPLATES)} of the {len(TEMPLATES)} phrasings hard), "
          f"the embedded model, {wall:.0f} s ({wall / count:.2f} s a text)\n")  # fmt: skip
    print(result.table(worst=3))
    cal = result.calibration
    if cal is None:
        print("\nno value carried a confidence", file=sys.stderr)
        return
    margin = (cal.above_accuracy or 0.0) - cal.accuracy
    print(
        f"\ntargets: ECE {cal.ece:.3f} (≤ 0.10: {'met' if cal.ece <= 0.10 else 'not met'}); accuracy at "
        f"confidence ≥ {cal.threshold:g}: {cal.above_accuracy or 0:.3f} against {cal.accuracy:.3f} overall "
        f"({margin:+.3f}; {cal.above} values of {cal.count})"
    )
    before, after, points = held_out
    print(
        f"recalibrated (isotonic, fitted on the first half, {points} points): ECE on the other half "
        f"{before:.3f} before, {after:.3f} after (≤ 0.10: {'met' if after <= 0.10 else 'not met'})"
    )
    if args.plot:
        plot(cal, args.plot)
        print(f"reliability plot: {args.plot}")


if __name__ == "__main__":
    main()
