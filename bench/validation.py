"""Validation off the event loop: what it costs a JSON Schema run, and what it buys a server.

    python bench/validation.py          # about a minute on 2 cores

cost      3,000 extractions with a JSON Schema (no patterns) against `corral sim` answering at once,
          the server on core 0 and this process on core 1, concurrency 64: items/s with each reply
          validated in a worker thread (what corral does for a JSON Schema) against validated on
          the event loop (what it does for a pydantic model). Five runs each, alternating; the
          median ratio is printed.
healthz   `corral serve` validating replies that each spend the whole pattern budget (five
          `^(a|aa)+$` against sixty a's and a "!"), 64 items asked 4 times each, while /healthz is
          polled: the slowest answer, against the one-second target of issue 15.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from typing import Any

import uvloop
from throughput import TEXTS, simulator

from corral import Extractor
from corral.sim import ScriptCall, SimConfig, SimReply, SimulatorThread

PERSON = {
    "title": "Person",
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}
EVIL = {
    "title": "Evil",
    "type": "object",
    "properties": {f"name{i}": {"type": "string", "pattern": "^(a|aa)+$"} for i in range(5)},
    "required": [f"name{i}" for i in range(5)],
}
N = 3000
RUNS = 5


async def items_per_second(url: str, *, offload: bool) -> float:
    extractor: Extractor[Any] = Extractor(PERSON, base_url=url, model="sim-1", concurrency=64, adaptive=False)
    async with extractor:
        extractor.spec.offload = offload  # the one thing that differs between the two
        started = time.perf_counter()
        done = 0
        async for outcome in extractor.map(TEXTS * (N // len(TEXTS))):
            done += outcome.ok
        return done / (time.perf_counter() - started)


def cost() -> None:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})
    ratios = []
    with simulator("--latency-ms", "0", core=0) as url:
        for _ in range(RUNS):
            inline = uvloop.run(items_per_second(url, offload=False))
            threaded = uvloop.run(items_per_second(url, offload=True))
            ratios.append(threaded / inline)
            print(
                f"  inline {inline:,.0f}/s   worker thread {threaded:,.0f}/s   ratio {threaded / inline:.3f}"
            )
    print(f"cost: a JSON Schema run validating in a worker thread runs at {statistics.median(ratios):.3f}× "
          "the speed of validating on the event loop (median of 5)")  # fmt: skip


def _evil(call: ScriptCall) -> SimReply | None:
    return SimReply(answer_text=json.dumps({f"name{i}": "a" * 60 + "!" for i in range(5)}))


def _healthz(port: int) -> float:
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        while sock.recv(65536):
            pass
    return time.perf_counter() - started


def healthz() -> None:
    sim_config = SimConfig(latency_ms=5, latency_dist="fixed", seed=3)
    with SimulatorThread(sim_config, script=_evil) as sim, tempfile.TemporaryDirectory() as folder:
        argv = [sys.executable, "-m", "corral.cli", "serve", "--port", "0", "--base-url", sim.url,
                "--model", "sim-1", "--store", f"{folder}/corral.db", "--no-adaptive",
                "--max-retries", "3"]  # fmt: skip
        server = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
        try:
            assert server.stderr is not None
            port = 0
            for line in server.stderr:
                if match := re.search(r"listening on http://127\.0\.0\.1:(\d+)/", line):
                    port = int(match[1])
                    break
            body = json.dumps({"schema": EVIL, "texts": [f"Evil {i}" for i in range(64)]}).encode()
            post = urllib.request.Request(
                f"http://127.0.0.1:{port}/v1/jobs", data=body, headers={"Content-Type": "application/json"}
            )
            job = threading.Thread(target=lambda: urllib.request.urlopen(post, timeout=600).read())
            job.start()
            times = []
            while job.is_alive():
                times.append(_healthz(port))
                time.sleep(0.05)
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(60)
    slowest = max(times) if times else float("nan")
    print(
        f"healthz: {len(times)} polls while the hostile job ran; slowest {slowest * 1000:.0f} ms, "
        f"median {statistics.median(times) * 1000:.0f} ms (target: under 1,000 ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", choices=("cost", "healthz"))
    args = parser.parse_args()
    cases: dict[str, Any] = {"cost": cost, "healthz": healthz}
    for name, case in cases.items():
        if args.only in (None, name):
            case()


if __name__ == "__main__":
    main()
