"""Client speed, latency hiding and memory: corral against instructor + AsyncOpenAI, in one run.

    python bench/throughput.py                  # everything (about two minutes on 2 cores)
    python bench/throughput.py --only client    # or: latency, memory

client   N extractions against `corral sim` answering instantly, the server pinned to core 0 and this
         process to core 1: requests/s and client CPU per validated extraction for corral, a bare
         aiohttp + orjson + pydantic loop (the floor), and instructor + AsyncOpenAI (TOOLS mode).
latency  N extractions at a fixed 200 ms server latency and concurrency 1,000: wall time against the
         ideal N × latency / concurrency.
memory   `corral run` over 20,000 and 200,000 lines (subprocesses): peak RSS of each.

Every figure is a ratio against a baseline measured in the same run, so the machine's speed cancels.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import orjson
import uvloop
from pydantic import BaseModel

from corral import Extractor
from corral.cli._tuning import tune_gc

TEXTS = [f"My name is Person{n} and I am {20 + n % 60} years old" for n in range(1000)]


class Person(BaseModel):
    name: str
    age: int


@dataclass
class Measure:
    name: str
    requests: int
    ok: int
    wall_s: float
    cpu_s: float

    @property
    def rate(self) -> float:
        return self.requests / self.wall_s

    @property
    def cpu_ms_per_ok(self) -> float:
        return 1000 * self.cpu_s / max(self.ok, 1)


# --- the simulator in its own process --------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def simulator(*args: str, core: int | None = 0) -> Iterator[str]:
    port = _free_port()
    command = [sys.executable, "-m", "corral.cli", "sim", "--port", str(port), *args]
    if core is not None and hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        command = ["taskset", "-c", str(core), *command]
    process = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            time.sleep(0.05)
        else:
            raise RuntimeError("the simulator did not start")
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.terminate()
        process.wait(10)


# --- the stacks ------------------------------------------------------------------------------


async def run_corral(url: str, n: int, concurrency: int) -> int:
    # The server has no limits and says so (adaptive=False): no slow start to find them, so the
    # engine's own cost is measured, as it is for the stacks it is compared with.
    extractor: Extractor[Person] = Extractor(
        Person, base_url=url, model="sim-1", mode="tools", concurrency=concurrency, max_retries=0,
        adaptive=False,
    )  # fmt: skip
    texts = (TEXTS[i % len(TEXTS)] for i in range(n))
    async with extractor:
        return sum([o.ok async for o in extractor.map(texts)])


async def run_bare_aiohttp(url: str, n: int, concurrency: int) -> int:
    """The floor: one aiohttp session, orjson, pydantic, no retries, no engine."""
    schema = Person.model_json_schema()
    tools = [{"type": "function", "function": {"name": "Person", "parameters": schema}}]
    choice = {"type": "function", "function": {"name": "Person"}}
    limit = asyncio.Semaphore(concurrency)
    ok = 0

    async def one(session: aiohttp.ClientSession, text: str) -> None:
        nonlocal ok
        body = {
            "model": "sim-1",
            "messages": [{"role": "user", "content": text}],
            "tools": tools,
            "tool_choice": choice,
        }
        async with limit, session.post(f"{url}/chat/completions", data=orjson.dumps(body)) as response:
            data = orjson.loads(await response.read())
        Person.model_validate_json(data["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"])
        ok += 1

    connector = aiohttp.TCPConnector(limit=concurrency)
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        await asyncio.gather(*(one(session, TEXTS[i % len(TEXTS)]) for i in range(n)))
    return ok


async def run_instructor(url: str, n: int, concurrency: int) -> int:
    import instructor
    from openai import AsyncOpenAI

    openai_client = AsyncOpenAI(base_url=url, api_key="sk-bench", max_retries=0)
    client = instructor.from_openai(openai_client, mode=instructor.Mode.TOOLS)
    limit = asyncio.Semaphore(concurrency)

    async def one(text: str) -> bool:
        async with limit:
            await client.chat.completions.create(
                model="sim-1",
                messages=[{"role": "user", "content": text}],
                response_model=Person,
                max_retries=0,
            )
            return True

    results = await asyncio.gather(*(one(TEXTS[i % len(TEXTS)]) for i in range(n)))
    await openai_client.close()
    return sum(results)


Stack = Callable[[str, int, int], Coroutine[None, None, int]]


def measure(name: str, stack: Stack, url: str, n: int, concurrency: int) -> Measure:
    uvloop.run(stack(url, min(200, n), concurrency))  # warm-up: imports, connections, caches
    cpu0, wall0 = time.process_time(), time.perf_counter()
    ok = uvloop.run(stack(url, n, concurrency))
    return Measure(name, n, ok, time.perf_counter() - wall0, time.process_time() - cpu0)


# --- the three benchmarks --------------------------------------------------------------------


def bench_client(n: int, concurrency: int, with_instructor: bool) -> None:
    print(f"\n## Client speed: {n:,} extractions, concurrency {concurrency}, simulator answering at once")
    print("   (server on core 0, this client on core 1; every stack under uvloop)")
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})
    stacks: list[tuple[str, Stack]] = [
        ("corral", run_corral),
        ("bare aiohttp+orjson+pydantic", run_bare_aiohttp),
    ]
    if with_instructor:
        stacks.append(("instructor + AsyncOpenAI", run_instructor))
    with simulator("--latency-ms", "0") as url:
        results = [measure(name, stack, url, n, concurrency) for name, stack in stacks]
    print(f"{'stack':<30} {'requests/s':>11} {'CPU ms/extraction':>18} {'ok':>7}")
    for m in results:
        print(f"{m.name:<30} {m.rate:>11,.0f} {m.cpu_ms_per_ok:>18.3f} {m.ok:>7,}")
    corral, floor = results[0], results[1]
    print(f"corral reaches {corral.rate / floor.rate:.0%} of the bare-aiohttp floor")
    if with_instructor:
        baseline = results[2]
        speedup = corral.rate / baseline.rate
        verdict = "met" if speedup >= 20 else "NOT met"
        print(
            f"corral vs instructor: {speedup:.1f}× requests/s, {baseline.cpu_s / corral.cpu_s:.1f}× less CPU "
            f"(target ≥ 20×: {verdict})"
        )


def bench_latency(n: int, concurrency: int, latency_ms: float) -> None:
    ideal = n * latency_ms / 1000 / concurrency
    print(f"\n## Latency hiding: {n:,} extractions at {latency_ms:g} ms fixed latency, ", end="")
    print(f"concurrency {concurrency:,}; ideal {ideal:.2f} s")

    async def twice(url: str) -> list[tuple[float, int, float]]:
        # The same extractor twice: the first run opens its connections as it goes (cold), the
        # second finds them pooled (warm), as every run after the first would.
        extractor: Extractor[Person] = Extractor(
            Person, base_url=url, model="sim-1", mode="tools", concurrency=concurrency, max_retries=0,
            adaptive=False,  # a server without limits: nothing to slow-start against (see run_corral)
        )  # fmt: skip
        timings = []
        async with extractor:
            for _ in range(2):
                started = time.perf_counter()
                done: list[float] = []
                async for outcome in extractor.map(TEXTS[i % len(TEXTS)] for i in range(n)):
                    if outcome.ok:
                        done.append(time.perf_counter())
                wall = time.perf_counter() - started
                # Steady state: completions per second between the first and last quarter of the run,
                # free of the start-up burst (every request sent at once) and the last wave's tail.
                quarter = len(done) // 4
                steady = (len(done) - 2 * quarter) / (done[-quarter - 1] - done[quarter])
                timings.append((wall, len(done), steady))
        return timings

    with simulator("--latency-ms", str(latency_ms), "--latency-dist", "fixed", core=0) as url:
        uvloop.run(run_corral(url, 1000, 64))  # warm-up: imports, simulator caches
        timings = uvloop.run(twice(url))
    ideal_rate = concurrency / (latency_ms / 1000)
    for label, (wall, ok, steady) in zip(("cold pool", "warm pool"), timings, strict=True):
        over = wall / ideal - 1
        verdict = "met" if over <= 0.10 else "NOT met"
        print(f"{label}: wall {wall:.2f} s, {over:+.1%} over ideal (target ≤ +10%: {verdict}); ", end="")
        print(f"steady state {steady:,.0f}/s = {steady / ideal_rate:.0%} of {ideal_rate:,.0f}/s; ok {ok:,}")


def bench_memory(small: int, large: int) -> None:
    print(f"\n## Memory: peak RSS of `corral run` over {small:,} and {large:,} lines (concurrency 64)")
    peaks = {}
    with tempfile.TemporaryDirectory() as tmp, simulator("--latency-ms", "0") as url:
        for n in (small, large):
            path = Path(tmp, f"{n}.txt")
            with path.open("w") as handle:
                for i in range(n):
                    handle.write(TEXTS[i % len(TEXTS)] + "\n")
            schema = Path(tmp, "person.json")
            schema.write_bytes(orjson.dumps(Person.model_json_schema()))
            command = [
                sys.executable,
                "-m",
                "corral.cli",
                "run",
                str(path),
                "--schema",
                str(schema),
                "--base-url",
                url,
                "--model",
                "sim-1",
                "--concurrency",
                "64",
                "-o",
                os.devnull,
                "-q",
            ]
            process = subprocess.Popen(command)
            _, status, usage = os.wait4(process.pid, 0)
            if status != 0:
                raise RuntimeError(f"corral run failed with status {status}")
            peaks[n] = usage.ru_maxrss / 1024  # KiB on Linux
            print(f"{n:>9,} items: peak RSS {peaks[n]:.1f} MiB")
    growth = peaks[large] / peaks[small] - 1
    verdict = "met" if growth <= 0.20 else "NOT met"
    print(f"{large // small}× the items: {growth:+.1%} peak memory (target ≤ +20%: {verdict})")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", choices=["client", "latency", "memory"])
    parser.add_argument("--n", type=int, default=5000, help="extractions for the client benchmark")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--no-instructor", action="store_true", help="skip the instructor baseline")
    args = parser.parse_args()
    resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
    tune_gc()  # as `corral run` does
    if args.only in (None, "latency"):
        bench_latency(n=20_000, concurrency=1_000, latency_ms=200)
    if args.only in (None, "memory"):
        bench_memory(20_000, 200_000)
    if args.only in (None, "client"):
        bench_client(args.n, args.concurrency, with_instructor=not args.no_instructor)


if __name__ == "__main__":
    main()
