"""Rate limits: how close corral runs to a provider's limit, and how many 429s it draws.

    python bench/limits.py                 # all four cases (about six minutes: they run at the limit)
    python bench/limits.py --only given    # or: headers, adaptive, tokens

Against `corral sim` enforcing 600 requests/min (OpenAI-style buckets that start full), 300 ms latency:
given     corral told `rpm=600`                         target: ≥ 95% of the limit, zero 429s
headers   no limit given; learned from x-ratelimit-*     target: ≥ 90%, 429s ≤ 2% of requests
adaptive  no limit, no headers, no retry-after           target: ≥ 80%, 429s ≤ 5%
tokens    long prompts, the simulator enforcing tokens/min, corral told `tpm`:  ≥ 90%, zero 429s

The achieved rate is measured over the last quarter of the run, when the simulator's initial allowance
(a full minute's worth, as a real provider's bucket starts) is long spent and only pacing counts; the
whole-run rate is printed too.
"""

from __future__ import annotations

import argparse
import json
import time
import urllib.request
from dataclasses import dataclass

import uvloop
from throughput import Person, simulator

from corral import Extractor
from corral.tuning import tune_gc

LIMIT_RPM = 600
LATENCY_MS = "300"
SHORT = [f"My name is Person{n} and I am {20 + n % 60} years old" for n in range(1000)]
FILLER = (
    "The quarterly report covers revenue, staffing and the move to the new office, none of which "
    "concerns the person described at the end of this note. "
) * 10


@dataclass
class Result:
    items: int
    ok: int
    wall_s: float
    last_quarter_s: float
    requests: int
    rate_limited: int
    tokens_charged: int
    #: 429s as the simulator counted them (the client's count also includes 503/529 overloads)
    server_429s: int = 0


async def run_case(
    url: str, texts: list[str], *, rpm: float | None, tpm: float | None, max_tokens: int
) -> Result:
    extractor: Extractor[Person] = Extractor(
        Person, base_url=url, model="sim-1", concurrency=16, rpm=rpm, tpm=tpm, max_tokens=max_tokens
    )
    finished: list[float] = []
    charged = 0
    async with extractor:
        started = time.perf_counter()
        async for outcome in extractor.map(texts):
            finished.append(time.perf_counter())
            # What an OpenAI-style limiter charges: the prompt plus max_tokens, per request.
            charged += outcome.usage.prompt_tokens + max_tokens * max(outcome.attempts, 1)
        stats = extractor.scheduler.stats
    quarter = len(finished) - len(finished) // 4
    return Result(
        items=len(texts),
        ok=len(finished),
        wall_s=finished[-1] - started,
        last_quarter_s=finished[-1] - finished[quarter],
        requests=stats.requests,
        rate_limited=stats.rate_limited,
        tokens_charged=charged,
    )


def simulator_429s(url: str) -> int:
    with urllib.request.urlopen(url.removesuffix("/v1") + "/sim/stats", timeout=10) as response:
        stats = json.load(response)
    return int(stats["by_status"].get("429", 0))


def report(name: str, result: Result, limit_per_s: float, *, rate_target: float, max_429: float) -> None:
    last_quarter = (result.ok - (result.ok - result.ok // 4) - 1) / result.last_quarter_s
    overall = result.items / result.wall_s
    share_429 = result.server_429s / max(result.requests, 1)
    rate_ok = last_quarter >= rate_target * limit_per_s
    limit_ok = share_429 <= max_429
    verdict = "met" if rate_ok and limit_ok else "NOT met"
    print(
        f"{name:<9} {last_quarter / limit_per_s:>8.1%} {overall / limit_per_s:>9.1%} {result.server_429s:>6} "
        f"{share_429:>7.2%} {result.ok:>6}/{result.items}   "
        f"≥{rate_target:.0%} & 429s ≤{max_429:.0%}: {verdict}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", choices=["given", "headers", "adaptive", "tokens"])
    parser.add_argument("--items", type=int, default=1000)
    args = parser.parse_args()
    tune_gc()
    texts = SHORT[: args.items]
    limit_per_s = LIMIT_RPM / 60
    print(f"{args.items} items, simulator limited to {LIMIT_RPM} requests/min, {LATENCY_MS} ms latency\n")
    print(f"{'case':<9} {'last 1/4':>8} {'whole run':>9} {'429s':>6} {'share':>7} {'ok':>10}   target")
    rpm = ["--rpm", str(LIMIT_RPM), "--latency-ms", LATENCY_MS]
    if args.only in (None, "given"):
        with simulator(*rpm, core=None) as url:
            result = uvloop.run(run_case(url, texts, rpm=LIMIT_RPM, tpm=None, max_tokens=200))
            result.server_429s = simulator_429s(url)
        report("given", result, limit_per_s, rate_target=0.95, max_429=0.0)
    if args.only in (None, "headers"):
        with simulator(*rpm, core=None) as url:
            result = uvloop.run(run_case(url, texts, rpm=None, tpm=None, max_tokens=200))
            result.server_429s = simulator_429s(url)
        report("headers", result, limit_per_s, rate_target=0.90, max_429=0.02)
    if args.only in (None, "adaptive"):
        with simulator(*rpm, "--no-rate-limit-headers", core=None) as url:
            result = uvloop.run(run_case(url, texts, rpm=None, tpm=None, max_tokens=200))
            result.server_429s = simulator_429s(url)
        report("adaptive", result, limit_per_s, rate_target=0.80, max_429=0.05)
    if args.only in (None, "tokens"):
        # ~560 prompt tokens + 100 max_tokens per request: 120,000 tokens/min is ~180 requests/min.
        tpm = 120_000
        long_texts = [f"{FILLER}{text}" for text in texts[:300]]
        with simulator("--tpm", str(tpm), "--latency-ms", LATENCY_MS, core=None) as url:
            result = uvloop.run(run_case(url, long_texts, rpm=None, tpm=tpm, max_tokens=100))
            result.server_429s = simulator_429s(url)
        tokens_per_s = result.tokens_charged / result.wall_s
        print(
            f"tokens    {tokens_per_s / (tpm / 60):>8.1%} of {tpm:,} tokens/min over the whole run; "
            f"429s {result.server_429s}; ok {result.ok}/{result.items}   target ≥90% & zero 429s: "
            f"{'met' if tokens_per_s >= 0.9 * tpm / 60 and result.server_429s == 0 else 'NOT met'}"
        )


if __name__ == "__main__":
    main()
