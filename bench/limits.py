"""Rate limits: how close corral runs to a provider's limit, start-up included, and how many 429s.

    python bench/limits.py                 # every case (about seven minutes: they run at the limit)
    python bench/limits.py --only headers  # or: given, adaptive, second, tokens

Against `corral sim` enforcing 1,200 requests/min *quantized*, as OpenAI documents it (a bucket of one
second's worth, starting with one second's worth: 20 requests, then 20 more each second), 300 ms
latency, 1,000 items, 64 requests in flight at most:

given     corral told `rpm=1200`                                   target: ≥ 95%, zero 429s
headers   no limit given; learned from x-ratelimit-* (slow start)  target: ≥ 90%, 429s ≤ 1%
adaptive  no limit, no headers, no retry-after                     target: ≥ 80%, 429s ≤ 3%, no stall
second    the headers case again, on the same run store: the limits it learned apply from the
          first request                                  target: ≥ 95% from its first second, zero 429s
tokens    long prompts, the simulator enforcing tokens/min, corral told `tpm`:  ≥ 90%, zero 429s

Rates are over the whole run, start-up included (items finished ÷ wall time, against the limit);
"first 5 s" is what was sent in the run's first five seconds against five seconds' worth of the limit.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvloop
from throughput import Person, simulator

from corral import Extractor
from corral.cli._tuning import tune_gc
from corral.io.sinks import open_sink
from corral.jobs import run_job
from corral.store import RunStore
from corral.types import Item, Outcome

LIMIT_RPM = 1200
LATENCY_S = 0.3
CONCURRENCY = 64
TEXTS = [f"My name is Person{n} and I am {20 + n % 60} years old" for n in range(4000)]
FILLER = (
    "The quarterly report covers revenue, staffing and the move to the new office, none of which "
    "concerns the person described at the end of this note. "
) * 10


@dataclass
class Result:
    items: int
    ok: int
    wall_s: float
    #: items finished by the end of the run's first five seconds (plus one latency)
    first_5s: int
    requests: int
    tokens_charged: int
    #: the longest gap between two finished items: a stalled run shows here
    longest_gap_s: float
    #: 429s as the simulator counted them (the client's count also includes 503/529 overloads)
    server_429s: int = 0


async def run_case(
    url: str,
    texts: list[str],
    *,
    rpm: float | None = None,
    tpm: float | None = None,
    max_tokens: int = 200,
    store: Path | None = None,
) -> Result:
    """One run of ``texts``; with ``store``, a durable run through corral's job layer (which
    remembers the endpoint's limits there for the next run)."""
    extractor: Extractor[Person] = Extractor(
        Person, base_url=url, model="sim-1", concurrency=CONCURRENCY, rpm=rpm, tpm=tpm, max_tokens=max_tokens
    )
    finished: list[float] = []
    charged = 0

    def seen(outcome: Outcome[Any]) -> None:
        nonlocal charged
        finished.append(time.perf_counter())
        # What an OpenAI-style limiter charges: the prompt plus max_tokens, per request.
        charged += outcome.usage.prompt_tokens + max_tokens * max(outcome.attempts, 1)

    async with extractor:
        started = time.perf_counter()
        if store is None:
            async for outcome in extractor.map(texts):
                seen(outcome)
        else:
            with RunStore.open(store) as run_store, tempfile.TemporaryDirectory() as out:
                job = run_store.open_job(f"limits from {texts[0]}", {"bench": "limits"})
                with open_sink(str(Path(out) / "out.jsonl"), "jsonl", extractor.spec) as sink:
                    items = [Item(str(n), text) for n, text in enumerate(texts)]
                    await run_job(extractor, items, sink, extractor.stats, store=run_store, job=job,
                                  order="completion", on_outcome=seen)  # fmt: skip
        stats = extractor.stats
    gaps = [b - a for a, b in zip([started, *finished], finished, strict=False)]
    return Result(
        items=len(texts),
        ok=len(finished),
        wall_s=finished[-1] - started,
        first_5s=sum(1 for t in finished if t - started <= 5.0 + LATENCY_S),
        requests=stats.requests,
        tokens_charged=charged,
        longest_gap_s=max(gaps),
    )


def simulator_429s(url: str) -> int:
    with urllib.request.urlopen(url.removesuffix("/v1") + "/sim/stats", timeout=10) as response:
        stats = json.load(response)
    return int(stats["by_status"].get("429", 0))


def report(
    name: str, result: Result, *, rate_target: float, max_429: float, first_target: float = 0.0
) -> bool:
    limit_per_s = LIMIT_RPM / 60
    overall = result.ok / result.wall_s / limit_per_s
    first = result.first_5s / (5.0 * limit_per_s)
    share_429 = result.server_429s / max(result.requests, 1)
    met = (
        overall >= rate_target
        and share_429 <= max_429
        and first >= first_target
        and result.ok == result.items
    )
    target = f"≥{rate_target:.0%} & 429s ≤{max_429:.0%}" + (
        f" & first 5 s ≥{first_target:.0%}" if first_target else ""
    )
    print(
        f"{name:<9} {overall:>9.1%} {first:>9.1%} {result.server_429s:>6} {share_429:>7.2%} "
        f"{result.longest_gap_s:>7.2f}s {result.ok:>5}/{result.items}   "
        f"{target}: {'met' if met else 'NOT met'}"
    )
    return met


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", choices=["given", "headers", "adaptive", "second", "tokens"])
    parser.add_argument("--items", type=int, default=1000)
    args = parser.parse_args()
    tune_gc()
    texts = TEXTS[: args.items]
    sim = ["--rpm", str(LIMIT_RPM), "--latency-ms", str(LATENCY_S * 1000), "--latency-dist", "fixed"]
    print(
        f"{args.items} items, C={CONCURRENCY}, simulator enforcing {LIMIT_RPM} requests/min per second "
        f"({LIMIT_RPM // 60}/s, bucket of one second's worth), {LATENCY_S * 1000:.0f} ms latency\n"
    )
    header = f"{'case':<9} {'whole run':>9} {'first 5 s':>9} {'429s':>6} {'share':>7} {'max gap':>8}"
    print(f"{header} {'ok':>11}   target")
    if args.only in (None, "given"):
        with simulator(*sim, core=None) as url:
            result = uvloop.run(run_case(url, texts, rpm=LIMIT_RPM))
            result.server_429s = simulator_429s(url)
        report("given", result, rate_target=0.95, max_429=0.0)
    if args.only in (None, "headers", "second"):
        with tempfile.TemporaryDirectory() as store, simulator(*sim, core=None) as url:
            result = uvloop.run(run_case(url, texts, store=Path(store)))
            result.server_429s = simulator_429s(url)
            if args.only != "second":
                report("headers", result, rate_target=0.90, max_429=0.01)
            if args.only in (None, "second"):
                before = result.server_429s
                again = TEXTS[args.items : 2 * args.items]  # new texts: nothing from the cache
                result = uvloop.run(run_case(url, again, store=Path(store)))
                result.server_429s = simulator_429s(url) - before
                report("second", result, rate_target=0.95, max_429=0.0, first_target=0.95)
    if args.only in (None, "adaptive"):
        with simulator(*sim, "--no-rate-limit-headers", core=None) as url:
            result = uvloop.run(run_case(url, texts))
            result.server_429s = simulator_429s(url)
        report("adaptive", result, rate_target=0.80, max_429=0.03)
    if args.only in (None, "tokens"):
        # ~560 prompt tokens + 100 max_tokens per request: 120,000 tokens/min is ~180 requests/min.
        tpm = 120_000
        long_texts = [f"{FILLER}{text}" for text in texts[:300]]
        with simulator("--tpm", str(tpm), "--latency-ms", str(LATENCY_S * 1000), core=None) as url:
            result = uvloop.run(run_case(url, long_texts, tpm=tpm, max_tokens=100))
            result.server_429s = simulator_429s(url)
        tokens_per_s = result.tokens_charged / result.wall_s
        met = tokens_per_s >= 0.9 * tpm / 60 and result.server_429s == 0
        print(
            f"tokens    {tokens_per_s / (tpm / 60):>9.1%} of {tpm:,} tokens/min over the whole run; "
            f"429s {result.server_429s}; ok {result.ok}/{result.items}   target ≥90% & zero 429s: "
            f"{'met' if met else 'NOT met'}"
        )


if __name__ == "__main__":
    main()
