"""Where the data already is: Parquet at scale, and a DataFrame with duplicate texts, in one run.

    python bench/frames.py                 # 1,000,000 rows (about 15 minutes on 2 cores)
    python bench/frames.py --rows 200000   # quicker: the small run is a tenth of --rows

Against ``corral sim`` answering at once (its own process, pinned to core 0), every job writes JSONL
through a run store, each ``corral run`` a child process pinned to core 1, measured from outside:
wall time (rows/s) and peak memory (the child's own ``VmHWM`` as it exits).

1. **Parquet at scale** — the same job over ``--rows`` rows and over a tenth of them, from Parquet
   (read a record batch at a time, only the text and id columns), and over ``--rows`` from JSONL:
   peak memory of the large Parquet run against the small one (target: within 20%), and its rows/s
   against the JSONL run's (target: within 10%). The texts are all distinct, so every row is a
   request: the figures are corral's, not its cache's.
2. **Duplicates** — a pandas DataFrame of 100,000 rows of which 30% repeat an earlier row's text,
   through :func:`corral.extract_frame` (no store): requests the simulator received against the
   distinct texts (target: equal), and the rows/s.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from throughput import simulator

ROOT = Path(__file__).resolve().parents[1]
PERSON = str(ROOT / "examples" / "person.py") + ":Person"


def text(n: int) -> str:
    return f"My name is Person{n} and I am {18 + n % 60} years old"


def write_inputs(folder: Path, rows: int) -> dict[str, Path]:
    """The inputs, written a slice at a time: Parquet of ``rows`` and of a tenth, JSONL of ``rows``."""
    paths = {
        "parquet": folder / "big.parquet",
        "small": folder / "small.parquet",
        "jsonl": folder / "big.jsonl",
    }
    schema = pa.schema([("id", pa.string()), ("text", pa.string()), ("source", pa.string())])
    for name, count in (("parquet", rows), ("small", rows // 10)):
        with pq.ParquetWriter(paths[name], schema) as writer:
            for start in range(0, count, 100_000):
                ids = range(start, min(start + 100_000, count))
                writer.write_table(
                    pa.table(
                        {
                            "id": [str(n) for n in ids],
                            "text": [text(n) for n in ids],
                            "source": [f"crawl-{n % 17}" for n in ids],
                        },
                        schema=schema,
                    )
                )
    with paths["jsonl"].open("w") as out:
        for n in range(rows):
            out.write(json.dumps({"id": str(n), "text": text(n), "source": f"crawl-{n % 17}"}) + "\n")
    return paths


#: runs ``corral`` and writes its own peak RSS (VmHWM, KiB) to $PEAK_FILE as it exits. Read in the
#: child because a process's ``ru_maxrss`` keeps the high-water mark of what it was before ``exec``:
#: a child forked from this process, which holds a DataFrame, would report this one's memory.
_MEASURED = """
import atexit, os, sys
def peak():
    with open("/proc/self/status") as status, open(os.environ["PEAK_FILE"], "w") as out:
        out.write(next(line.split()[1] for line in status if line.startswith("VmHWM:")))
atexit.register(peak)
from corral.cli import main
sys.exit(main(sys.argv[1:]))
"""


def run_child(source: Path, url: str, folder: Path, name: str) -> tuple[float, int]:
    """``corral run SOURCE`` in a child pinned to core 1: (wall seconds, peak RSS in KiB)."""
    peak = folder / f"{name}.peak"
    command = [
        sys.executable, "-c", _MEASURED, "run", str(source), "--schema", PERSON, "--base-url", url,
        "--model", "sim-1", "--concurrency", "64", "--no-adaptive", "-o", str(folder / f"{name}.jsonl"),
        "--store", str(folder / f"{name}.db"), "--quiet",
    ]  # fmt: skip
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        command = ["taskset", "-c", "1", *command]
    started = time.perf_counter()
    done = subprocess.run(
        command,
        cwd=ROOT,
        env={**os.environ, "PEAK_FILE": str(peak)},
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"corral run {source.name} failed ({done.returncode}): {done.stderr}")
    return wall, int(peak.read_text())


def requests_of(url: str) -> int:
    with urllib.request.urlopen(url.removesuffix("/v1") + "/sim/stats") as answer:
        return int(json.load(answer)["requests"])


def scale(rows: int) -> None:
    with tempfile.TemporaryDirectory(prefix="corral-frames-") as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        paths = write_inputs(folder, rows)
        size = paths["parquet"].stat().st_size
        print(f"inputs written in {time.perf_counter() - started:.1f} s ({size:,} B of Parquet)")
        results = {}
        with simulator("--latency-ms", "0", core=0) as url:
            for name in ("small", "parquet", "jsonl"):
                wall, rss = run_child(paths[name], url, folder, name)
                count = rows // 10 if name == "small" else rows
                results[name] = (count, wall, rss)
                rate = count / wall
                print(
                    f"  {name:8} {count:>9,} rows {wall:6.1f} s {rate:7,.0f} rows/s peak {rss / 1024:.1f} MiB"
                )
    small, big, jsonl = results["small"], results["parquet"], results["jsonl"]
    memory = big[2] / small[2]
    speed = (big[0] / big[1]) / (jsonl[0] / jsonl[1])
    verdict = "met" if memory <= 1.2 else "NOT met"
    print(f"Parquet, {rows:,} rows vs {rows // 10:,}: peak memory {memory:.2f}× (target ≤ 1.20×: {verdict})")
    verdict = "met" if speed >= 0.9 else "NOT met"
    print(f"Parquet vs JSONL, {rows:,} rows: rows/s {speed:.2f}× (target ≥ 0.90×: {verdict})")


def duplicates(rows: int) -> None:
    import pandas as pd

    import corral

    distinct = int(rows * 0.7)
    rng = random.Random(7)
    texts = [text(n) for n in range(distinct)] + [
        text(rng.randrange(distinct)) for _ in range(rows - distinct)
    ]
    rng.shuffle(texts)
    frame = pd.DataFrame({"text": texts, "row": range(rows)})
    with simulator("--latency-ms", "0", core=0) as url:
        before = requests_of(url)
        started = time.perf_counter()
        result = corral.extract_frame(
            frame, PERSON, model="sim-1", base_url=url, concurrency=64, adaptive=False
        )
        wall = time.perf_counter() - started
        sent = requests_of(url) - before
    ok = int(result["error"].isna().sum())
    unique = len(set(texts))
    print(
        f"DataFrame, {rows:,} rows, {unique:,} distinct texts: {sent:,} requests sent "
        f"(target = distinct: {'met' if sent == unique else 'NOT met'}), {ok:,} rows ok, "
        f"{rows / wall:,.0f} rows/s"
    )


@contextlib.contextmanager
def section(title: str) -> Iterator[None]:
    print(f"\n== {title}")
    started = time.perf_counter()
    yield
    print(f"   ({time.perf_counter() - started:.0f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the large Parquet run")
    parser.add_argument("--frame-rows", type=int, default=100_000, help="rows of the DataFrame")
    args = parser.parse_args()
    with section("Duplicates"):
        duplicates(args.frame_rows)
    with section("Parquet at scale"):
        scale(args.rows)


if __name__ == "__main__":
    main()
