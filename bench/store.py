"""What durability costs: the run store per item, and the client's speed with it, in one run.

    python bench/store.py              # 5,000 items, concurrency 64, 3 rounds (about a minute)
    python bench/store.py -n 20000

Against `corral sim` answering at once (server pinned to core 0, this process to core 1), each
round runs the same job four ways, every one writing JSONL through :func:`corral.jobs.run_job`:

    no store     store=None: the engine and the sink alone (the baseline)
    store        a fresh SQLite store: every result and answer committed before it is written
    resume       the same job again: every item answered from the store, nothing sent
    cache        the job again with --fresh: every request answered from the cache

and instructor + AsyncOpenAI once, for the throughput target of the "corral core" issue (≥ 20×).
The store's cost is the CPU per item of "store" minus "no store" (medians over rounds), in µs.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import uvloop
from throughput import TEXTS, Person, run_instructor, simulator

from corral import Extractor
from corral.cli._tuning import tune_gc
from corral.engine._stats import RunStats
from corral.io.items import as_items
from corral.io.sinks import open_sink
from corral.jobs import run_job
from corral.store import RunStore
from corral.store._cache import ResponseCache

SETTINGS = {"model": "sim-1", "schema": "Person", "prompt": "bench", "mode": "tools", "many": False}


async def one_job(
    url: str, n: int, concurrency: int, out: Path, *, store_path: Path | None, fresh: bool
) -> int:
    store = RunStore.open(store_path) if store_path is not None else None
    try:
        cache = ResponseCache(store) if store is not None else None
        extractor: Extractor[Person] = Extractor(
            Person,
            base_url=url,
            model="sim-1",
            mode="tools",
            concurrency=concurrency,
            max_retries=0,
            cache=cache,
            adaptive=False,  # a server without limits: no slow start (as in bench/throughput.py)
        )
        async with extractor:
            job = store.open_job(out.name, SETTINGS, fresh=fresh) if store is not None else None
            counters = RunStats()
            texts = (TEXTS[i % len(TEXTS)] + f" #{i}" for i in range(n))  # distinct: no cache hits in-run
            with open_sink(str(out), "jsonl", extractor.spec) as sink:
                await run_job(extractor, as_items(texts), sink, counters, store=store, job=job)
            return counters.ok
    finally:
        if store is not None:
            store.close()


def timed(coro_fn: Callable[[], Coroutine[Any, Any, int]]) -> tuple[int, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    ok = uvloop.run(coro_fn())
    return ok, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    n, c = args.n, args.concurrency
    tune_gc()
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})
    results: dict[str, list[tuple[float, float]]] = {k: [] for k in ("no store", "store", "resume", "cache")}
    with simulator("--latency-ms", "0") as url, tempfile.TemporaryDirectory() as tmp:
        timed(lambda: one_job(url, 500, c, Path(tmp) / "warm.jsonl", store_path=None, fresh=False))
        for round_ in range(args.rounds):
            base = Path(tmp) / f"round{round_}"
            base.mkdir()
            plan = {  # name: (output, store, fresh); the last three share one job and store
                "no store": (base / "plain.jsonl", None, False),
                "store": (base / "out.jsonl", base / "corral.db", False),
                "resume": (base / "out.jsonl", base / "corral.db", False),
                "cache": (base / "out.jsonl", base / "corral.db", True),
            }
            for name, (out, store, fresh) in plan.items():
                job = functools.partial(one_job, url, n, c, out, store_path=store, fresh=fresh)
                ok, wall, cpu = timed(job)
                assert ok == n, f"{name}: {ok} of {n} ok"
                results[name].append((wall, cpu))
        ok, instructor_wall, _ = timed(lambda: run_instructor(url, n, c))
        assert ok == n

    def median(name: str, index: int) -> float:
        return statistics.median(r[index] for r in results[name])

    print(
        f"{n:,} extractions, concurrency {c}, simulator answering at once; medians of {args.rounds} rounds\n"
    )
    print(f"{'run':<10} {'items/s':>10} {'CPU µs/item':>12}")
    for name in results:
        print(f"{name:<10} {n / median(name, 0):>10,.0f} {1e6 * median(name, 1) / n:>12.1f}")
    print(f"{'instructor':<10} {n / instructor_wall:>10,.0f}")
    cost = 1e6 * (median("store", 1) - median("no store", 1)) / n
    ratio = instructor_wall / median("store", 0)
    print(
        f"\nthe store costs {cost:.1f} µs of CPU per item ({cost / (1e6 * median('no store', 1) / n):+.0%})"
    )
    print(f"corral with the store: {ratio:.1f}× instructor + AsyncOpenAI (target ≥ 20×)")


if __name__ == "__main__":
    main()
