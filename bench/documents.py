"""Documents, side by side: corral against google's langextract 1.7.1 on the same texts, simulator, seed.

    pip install -e '.[dev,bench-documents]'   # langextract 1.7.1 beside corral
    python bench/documents.py            # 20 documents (one of 500,000+ characters), about 4 minutes
    python bench/documents.py --quick    # 6 documents (one of 100,000+ characters), 40-50 s

The corpus (``bench/_documents_corpus.py``) is generated into a temporary folder: filler prose with
people mentioned in it, so the truth is known: every person's name and the character span of every
mention. Both systems read the same files and ask the same simulator settings (a fresh ``corral sim``
subprocess per run on a free loopback port: same latency, seed, ``--hallucinate`` and ``--misplace``
shares) for people with a name and an age: corral through ``run_documents`` with a pydantic
``People`` schema (``keys`` people by name), langextract through ``lx.extract`` with its OpenAI
provider and one few-shot example (the simulator answers its few-shot prompts, ``corral.sim.fewshot``).
Each system runs in its own child process, one after the other, so neither shares a core, a heap or
an import with the other.

Chunks are kept comparable: corral cuts at ``--chunk-tokens`` (its own token count, 50 tokens of
overlap); langextract's ``max_char_buffer`` is then set to corral's mean chunk length in characters,
so both send about as many requests. Both have ``--concurrency`` requests in flight (langextract:
``max_workers``, with ``batch_length`` four times that: its documentation asks for batch_length >=
max_workers, and it waits for a whole batch before starting the next).

The main table (every figure measured in this run, over every document):

- names, recall and precision: recall over the true people, precision over the distinct names a
  system returns for a document (a name is a person when equal to theirs after folding case,
  whitespace and diacritics, or one edit away: the simulator's miscopied names are the person found,
  its invented ones are wrong); a document a system failed or lost finds nobody;
- offsets exact: of the extractions whose name is a true person's (corral: each ``people[i]`` and its
  ``grounding`` span; langextract: each extraction and its ``char_interval``), the share whose
  [start, end) is exactly one of that person's mentions (no span is not exact). corral returns one
  per person and document, langextract one per person and chunk, so the line under the table counts
  them again once per distinct name;
- invented names given a span: names none of whose words is in the document, and how many of them a
  system placed in it anyway;
- alignment CPU: CPU time of the thread doing the alignment (``time.thread_time``; ``process_time``
  would add the other threads' work) inside corral's ``Aligner.__init__`` (folding the document) and
  ``Aligner.find`` (every lookup): the whole of its grounding; and inside langextract's
  ``Resolver.align``, its generator drained inside the timer. The wrappers add two clock reads a call;
- wall: ``run_documents`` (opening the job included) and ``lx.extract``, timed inside each child;
- a failed chunk: what each did in the failure runs below, as observed.

Failure runs, on the documents under 30,000 characters: a simulator answering ``--error-rate`` of
requests with 500/502/503, and one answering ``--malformed-rate`` with text that is not JSON.
langextract's OpenAI client makes 3 attempts at a 5xx (the openai SDK's max_retries=2): corral is run
with the same 3 (``retries=2``) and, in the full run, with its default 7; where corral ended documents
in error, a second pass with ``retry_errors`` on the same run store and simulator follows. The last
lines give each system's alignment CPU and peak RSS (``resource.getrusage``'s ``ru_maxrss``, its
child process's high-water mark) on the biggest document alone.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unicodedata
import urllib.request
from pathlib import Path
from typing import Any

from rapidfuzz.distance import Levenshtein

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _documents_corpus import Document, Person, make_corpus

MODEL = "gpt-4o-mini"
API_KEY = "sk-bench-documents"
SCHEMA = """\
from pydantic import BaseModel


class Person(BaseModel):
    name: str
    age: int | None = None


class People(BaseModel):
    people: list[Person]
"""
PROMPT = "Extract every person named in the text, with their age when the text gives it."
EXAMPLE_TEXT = (
    "The survey team was led by Ada Brennan, 41 years old. "
    "Ada Brennan mapped the coast with a clerk named Tobias Wren."
)


# --- the parent: corpus, simulators, children, scores ---------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="6 documents, the biggest 100,000 characters")
    parser.add_argument("--documents", type=int, help="documents (default 20; --quick 6)")
    parser.add_argument(
        "--big-chars", type=int, help="the biggest document (default 500,000; --quick 100,000)"
    )
    parser.add_argument(
        "--latency-ms", type=float, help="the simulator's median latency (default 300; --quick 100)"
    )
    parser.add_argument("--seed", type=int, default=7, help="the corpus's and the simulator's seed")
    parser.add_argument("--hallucinate", type=float, default=0.05, help="simulator share of invented values")
    parser.add_argument("--misplace", type=float, default=0.15, help="simulator share of miscopied values")
    parser.add_argument("--error-rate", type=float, default=0.4, help="5xx share in a failure run")
    parser.add_argument("--malformed-rate", type=float, default=0.25, help="not-JSON share in the other")
    parser.add_argument("--chunk-tokens", type=int, default=500, help="corral's chunk budget")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight, both systems")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder and print it")
    args = parser.parse_args()
    if args.worker:
        _worker(json.loads(args.worker))
        return
    quick = args.quick
    count = args.documents or (6 if quick else 20)
    big = args.big_chars or (100_000 if quick else 500_000)
    latency = args.latency_ms if args.latency_ms is not None else (100.0 if quick else 300.0)
    longs = 1 if quick else 3

    root = Path(tempfile.mkdtemp(prefix="corral-bench-documents-"))
    try:
        _run(args, root, count=count, big=big, latency=latency, longs=longs)
    finally:
        if args.keep:
            print(f"\n(files kept in {root})")
        else:
            shutil.rmtree(root, ignore_errors=True)


class _Runs:
    """Runs one system in a child process against a fresh simulator, on one folder of the corpus."""

    def __init__(self, args: argparse.Namespace, root: Path, latency: float, schema: str) -> None:
        self.root = root
        self.sim_flags = [
            "--latency-ms", str(latency), "--seed", str(args.seed),
            "--hallucinate", str(args.hallucinate), "--misplace", str(args.misplace),
        ]  # fmt: skip
        self.common: dict[str, Any] = {
            "schema": schema,
            "concurrency": args.concurrency,
            "chunk_tokens": args.chunk_tokens,
            "batch_length": 4 * args.concurrency,
        }

    def run(
        self, system: str, folder: str, extra: list[str], *, again: bool = False, **more: Any
    ) -> dict[str, Any]:
        """``system`` over ``folder``; ``again``: where documents ended in error, then a second pass
        of corral with ``retry_errors`` on the same run store and simulator (``result["again"]``)."""
        root = self.root
        name = f"{system}-{folder}-{more.get('tag', 'main')}"
        with _Simulator([*self.sim_flags, *extra], root / f"sim-{name}.log") as sim:
            config = {
                **self.common, **more, "system": system, "input": str(root / folder), "url": sim.url,
                "result": str(root / f"result-{name}.json"), "output": str(root / f"out-{name}.jsonl"),
            }  # fmt: skip
            if again:
                config["store"] = str(root / f"store-{name}")
            result = _child(config, root / f"child-{name}.log")
            result["sim"] = sim.stats()
            if again and any(doc["error"] for doc in result["docs"].values()):
                config = {**config, "retry_errors": True, "result": str(root / f"result-{name}-again.json")}
                result["again"] = _child(config, root / f"child-{name}-again.log")
                total, first = sim.stats(), result["sim"]
                result["again"]["sim"] = {
                    "requests": total["requests"] - first["requests"],
                    "by_fault": {
                        kind: count - first.get("by_fault", {}).get(kind, 0)
                        for kind, count in total.get("by_fault", {}).items()
                    },
                }
        return result


def _run(args: argparse.Namespace, root: Path, *, count: int, big: int, latency: float, longs: int) -> None:
    started = time.perf_counter()
    for folder in ("all", "big", "faults"):
        (root / folder).mkdir()
    long_chars = 50_000 if count > 6 else 25_000
    corpus = make_corpus(
        root / "all", count=count, big_chars=big, long_chars=long_chars, longs=longs, seed=args.seed
    )
    by_id = {doc.id: doc for doc in corpus}
    shutil.copy(root / "all" / corpus[0].id, root / "big" / corpus[0].id)
    # The failure runs: the documents under 30,000 characters (all but the long ones).
    fault_docs = [doc for doc in corpus if len(doc.text) < 30_000]
    for doc in fault_docs:
        shutil.copy(root / "all" / doc.id, root / "faults" / doc.id)
    (root / "people_schema.py").write_text(SCHEMA)
    runs = _Runs(args, root, latency, f"{root / 'people_schema.py'}:People")
    chars = sum(len(doc.text) for doc in corpus)
    mentions = sum(len(p.spans) for doc in corpus for p in doc.people)
    people = sum(len(doc.people) for doc in corpus)
    print(
        f"{count} documents, {chars:,} characters ({len(corpus[0].text):,} in the biggest), {people} "
        f"people, {mentions} mentions; simulator: {latency:g} ms median latency (lognormal), seed "
        f"{args.seed}, --hallucinate {args.hallucinate:g}, --misplace {args.misplace:g}; "
        f"{args.concurrency} requests in flight each",
        flush=True,
    )

    # Main run: corral first, so that langextract's chunks can be sized like corral's.
    main = {"corral": runs.run("corral", "all", [])}
    corral_chunks = sum(doc["chunks"] for doc in main["corral"]["docs"].values())
    buffer = runs.common["max_char_buffer"] = round(chars / max(corral_chunks, 1))
    main["langextract"] = runs.run("langextract", "all", [])
    print(
        f"chunks: corral --chunk-tokens {args.chunk_tokens} gave {corral_chunks} (mean {buffer:,} "
        f"characters, {_OVERLAP} tokens of overlap); langextract max_char_buffer={buffer:,} gave "
        f"{main['langextract']['chunks']}, batch_length={runs.common['batch_length']}, "
        f"max_workers={args.concurrency}",
        flush=True,
    )
    # Failed chunks: the shorter documents against 5xx, then against answers that are not JSON.
    # langextract's OpenAI client makes 3 attempts at a 5xx (the openai SDK's max_retries=2): corral
    # is run with the same 3 (retries=2), then, in the full run, with its default 7 (retries=6).
    errors = ("5xx", f"--error-rate {args.error_rate:g}", ["--error-rate", str(args.error_rate)])
    rate = args.malformed_rate
    malformed = ("not JSON", f"--malformed-rate {rate:g}", ["--malformed-rate", str(rate)])
    faults: list[tuple[str, str, str, dict[str, Any]]] = [
        (
            *errors[:2],
            "corral, 3 attempts",
            runs.run("corral", "faults", errors[2], tag="5xx-3", retries=2, again=True),
        ),
    ]
    if not args.quick:
        faults.append(
            (*errors[:2], "corral, 7 (its default)", runs.run("corral", "faults", errors[2], tag="5xx-7"))
        )
    faults += [
        (*errors[:2], "langextract, 3 (the SDK's)", runs.run("langextract", "faults", errors[2], tag="5xx")),
        (
            *malformed[:2],
            "corral, 3 (re-asks)",
            runs.run("corral", "faults", malformed[2], tag="bad", again=True),
        ),
        (*malformed[:2], "langextract, 1", runs.run("langextract", "faults", malformed[2], tag="bad")),
    ]
    alone = {system: runs.run(system, "big", []) for system in ("corral", "langextract")}
    # Memory against the number of documents: corral (with its run store) over few and over many
    # documents of the same sizes, against a simulator that answers at once.
    scale: dict[str, tuple[int, int, dict[str, Any]]] = {}
    for label, number in (("few", count), ("many", 10 * count)):
        (root / label).mkdir()
        docs = make_corpus(root / label, count=number, big_chars=15_000, long_chars=15_000, longs=0, seed=1)
        chars_in = sum(len(doc.text) for doc in docs)
        store = str(root / f"store-{label}")
        scale[label] = (
            number,
            chars_in,
            runs.run("corral", label, ["--latency-ms", "0"], tag=label, store=store),
        )

    _print_main(main, faults, by_id)
    _print_faults(faults, fault_docs, by_id)
    _print_alone(alone, corpus[0], by_id)
    _print_scale(scale)
    print(f"\n(whole benchmark: {time.perf_counter() - started:.0f} s)")


def _print_main(
    main: dict[str, dict[str, Any]],
    faults: list[tuple[str, str, str, dict[str, Any]]],
    by_id: dict[str, Document],
) -> None:
    print(
        "\n| system | names: recall | names: precision | offsets exact | invented names given a span "
        "| alignment CPU | wall | a failed chunk |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    scores = {}
    for system, result in main.items():
        score = scores[system] = _score(result, by_id)
        failed = "; ".join(
            f"{kind}: {_observed(shown, short=True)}"
            for kind, _, who, shown in faults
            if who.startswith(system) and "7" not in who
        )
        print(
            f"| {system if system == 'corral' else 'langextract 1.7.1'} "
            f"| {score['recall']:.3f} ({score['found']}/{score['people']}) "
            f"| {score['precision']:.3f} ({score['right']}/{score['names']}) "
            f"| {score['exact_share']:.3f} ({score['exact']}/{score['mapped']}) "
            f"| {score['invented_spanned']}/{score['invented']} "
            f"| {result['align_cpu'] * 1000:,.0f} ms | {result['wall']:.1f} s | {failed} |"
        )
    print()
    for system, score in scores.items():
        spanned = score["spanned"]
        wrong = score["names"] - score["right"]
        distinct = score["distinct_exact"] / max(score["distinct_mapped"], 1)
        print(
            f"{system}: {wrong} wrong names; names with a span only (corral's "
            "ungrounded='drop', langextract's extractions with a char_interval): recall "
            f"{spanned['recall']:.3f}, precision {spanned['precision']:.3f} "
            f"({spanned['right']}/{spanned['names']}); offsets exact once per distinct name: "
            f"{score['distinct_exact']}/{score['distinct_mapped']} ({distinct:.3f})"
        )


def _print_faults(
    faults: list[tuple[str, str, str, dict[str, Any]]], fault_docs: list[Document], by_id: dict[str, Document]
) -> None:
    chars = sum(len(doc.text) for doc in fault_docs)
    print(
        f"\nFailed chunks: {len(fault_docs)} documents ({chars:,} characters), the same simulator "
        "settings plus one fault:\n"
    )
    print(
        "| fault | system, attempts | requests (faulted) | documents whole / error / lost | recall "
        "| wall | what happened |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for _, label, who, result in faults:
        rows = [(who, result)]
        if "again" in result:
            again = {**result["again"], "expected_ids": result["expected_ids"], "before": result}
            rows.append(("then --retry-errors", again))
        for name, shown in rows:
            docs = shown["docs"]
            whole = sum(1 for doc in docs.values() if not doc["error"])
            sim = shown["sim"]
            faulted = sum(sim.get("by_fault", {}).values())
            print(
                f"| {label} | {name} | {sim.get('requests', 0)} ({faulted}) "
                f"| {whole} / {len(docs) - whole} / {shown['expected_docs'] - len(docs)} "
                f"| {_score(shown, by_id)['recall']:.3f} | {shown['wall']:.1f} s | {_observed(shown)} |"
            )


def _print_alone(alone: dict[str, dict[str, Any]], doc: Document, by_id: dict[str, Document]) -> None:
    print()
    for system, result in alone.items():
        score = _score(result, by_id)
        print(
            f"{system}, the {len(doc.text):,}-character document alone: alignment CPU "
            f"{result['align_cpu'] * 1000:,.0f} ms ({result['align_calls']:,} calls), peak RSS "
            f"{result['rss_peak'] / 1024:,.1f} MiB (interpreter and imports: "
            f"{result['rss_before'] / 1024:,.1f} MiB), wall {result['wall']:.1f} s, recall "
            f"{score['recall']:.3f}, offsets exact {score['exact_share']:.3f}"
        )


def _print_scale(scale: dict[str, tuple[int, int, dict[str, Any]]]) -> None:
    (few, few_chars, small), (many, many_chars, large) = scale["few"], scale["many"]
    grown = large["rss_peak"] / small["rss_peak"] - 1
    print(
        f"corral's peak RSS over {few} documents ({few_chars:,} characters) and over {many} "
        f"({many_chars:,}), with its run store, the simulator answering at once: "
        f"{small['rss_peak'] / 1024:,.1f} MiB and {large['rss_peak'] / 1024:,.1f} MiB ({grown:+.1%})"
    )


_OVERLAP = 50  # corral's default DocumentOptions.overlap, unchanged here


def _observed(result: dict[str, Any], *, short: bool = False) -> str:
    """What a system did with the failures of one run, in words."""
    docs = result["docs"]
    if result.get("raised"):
        kind = result["raised"].split(":")[0]
        return f"lx.extract raised {kind}: all {result['expected_docs']} documents of the call lost"
    if result["system"] == "langextract":
        dropped = result.get("dropped_chunks", 0)
        if dropped:
            return (
                f"{dropped} of {result['chunks']} chunks dropped, a warning logged for each; every document "
                "returned, with no mark on the ones missing a chunk"
            )
        return "no chunk failed"
    failed = [doc["error"] for doc in docs.values() if doc["error"]]
    if failed:
        example = min(failed, key=len)
        message = example.split(" (chunk")[0] if short else example
        whole = len(docs) - len(failed)
        text = (
            f"{len(failed)} document{'s' * (len(failed) != 1)} an error naming the failed chunks "
            f'("{message}"), {whole} whole'
        )
        return f"{text}; {_retried(result)}" if result.get("retry_errors") else text
    if result.get("retry_errors"):
        return "all documents whole; " + _retried(result)
    return "every failed request retried until answered: all documents whole"


def _retried(result: dict[str, Any]) -> str:
    """What a ``--retry-errors`` pass asked again, against the chunks that had failed before it."""
    before = result["before"]["docs"]
    failed = 0
    for doc in before.values():
        named = re.match(r"chunks? ([\d, ]+) of", doc["error"] or "")
        failed += len(named.group(1).split(",")) if named else 0
    items = result["items"]
    moved = [doc_id for doc_id, doc in result["docs"].items() if doc["chunks"] != before[doc_id]["chunks"]]
    asked = items["done"] - items["reused"]
    text = f"{asked} chunk{'s' * (asked != 1)} asked again (of {items['done']}; {failed} had failed)"
    if moved:
        plural = "s" * (len(moved) != 1)
        text += f", {len(moved)} document{plural} cut into a different number of chunks than before"
    return text


def _score(
    result: dict[str, Any], by_id: dict[str, Document], *, spanned_only: bool = False
) -> dict[str, Any]:
    """Names (recall, precision), offsets and invented names of one run against the truth; a document
    a system lost or failed counts its people as not found. ``spanned_only``: as if the extractions
    without a span had been dropped."""
    counts = (
        "people", "found", "names", "right", "mapped", "exact", "invented", "invented_spanned",
        "distinct_mapped", "distinct_exact",
    )  # fmt: skip
    tally: dict[str, Any] = dict.fromkeys(counts, 0)
    for doc_id in result["expected_ids"]:
        truth = by_id[doc_id]
        tally["people"] += len(truth.people)
        doc = result["docs"].get(doc_id)
        if doc is None or doc["error"]:
            continue
        words = set(_WORDS.findall(_fold(truth.text)))
        found: set[str] = set()
        distinct: dict[str, Person | None] = {}
        #: each distinct name returned for a true person: whether every span given to it is exact
        distinct_exact: dict[str, bool] = {}
        for extraction in doc["extractions"]:
            if spanned_only and extraction["start"] is None:
                continue
            person = _person_of(extraction["name"], truth.people)
            key = " ".join(extraction["name"].casefold().split())
            distinct.setdefault(key, person)
            if person is not None:
                found.add(person.name)
                tally["mapped"] += 1
                exact = (extraction["start"], extraction["end"]) in {tuple(s) for s in person.spans}
                tally["exact"] += exact
                distinct_exact[key] = distinct_exact.get(key, True) and exact
            elif not words.intersection(_WORDS.findall(_fold(extraction["name"]))):
                tally["invented"] += 1
                tally["invented_spanned"] += extraction["start"] is not None
        tally["distinct_mapped"] += len(distinct_exact)
        tally["distinct_exact"] += sum(distinct_exact.values())
        tally["found"] += len(found)
        tally["names"] += len(distinct)
        tally["right"] += sum(person is not None for person in distinct.values())
    tally["recall"] = tally["found"] / max(tally["people"], 1)
    tally["precision"] = tally["right"] / max(tally["names"], 1)
    tally["exact_share"] = tally["exact"] / max(tally["mapped"], 1)
    if not spanned_only:
        tally["spanned"] = _score(result, by_id, spanned_only=True)
    return tally


_WORDS = re.compile(r"\w+")


def _person_of(name: str, people: list[Person]) -> Person | None:
    """The person a returned name is: equal folded, else the one a single edit away."""
    folded = _fold(name)
    near = None
    for person in people:
        truth = _fold(person.name)
        if truth == folded:
            return person
        if near is None and Levenshtein.distance(truth, folded, score_cutoff=1) <= 1:
            near = person
    return near


_STRAIGHT = str.maketrans({"‘": "'", "’": "'", "“": '"', "”": '"', "–": "-", "—": "-"})


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.translate(_STRAIGHT))
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(bare.casefold().split())


class _Simulator:
    """``corral sim`` as a subprocess on a free loopback port."""

    def __init__(self, flags: list[str], log: Path) -> None:
        self.flags = flags
        self.log = log

    def __enter__(self) -> _Simulator:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/v1"
        corral = Path(sys.executable).with_name("corral")
        command = [str(corral), "sim", "--host", "127.0.0.1", "--port", str(port), *self.flags]
        self._log = self.log.open("w")
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{self.url}/models", timeout=1).close()
                return self
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.__exit__(None, None, None)
                    raise RuntimeError(
                        f"the simulator did not start: {self.log.read_text()[-2000:]}"
                    ) from None
                time.sleep(0.1)

    def stats(self) -> dict[str, Any]:
        base = self.url.removesuffix("/v1")
        with urllib.request.urlopen(f"{base}/sim/stats", timeout=5) as reply:
            stats: dict[str, Any] = json.loads(reply.read())
            return stats

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


def _child(config: dict[str, Any], log: Path) -> dict[str, Any]:
    """Run one system in a child process; its result."""
    env = {**os.environ, "OPENAI_API_KEY": API_KEY}
    with log.open("w") as out:
        done = subprocess.run(
            [sys.executable, __file__, "--worker", json.dumps(config)],
            stdout=out, stderr=subprocess.STDOUT, env=env, timeout=900, check=False,
        )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"the {config['system']} child failed:\n{log.read_text()[-4000:]}")
    result: dict[str, Any] = json.loads(Path(config["result"]).read_text())
    return result


# --- the children: one system, one run ------------------------------------------------------------


class _Clock:
    """CPU time of the calling thread inside the wrapped calls."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.calls = 0

    def wrap(self, function: Any, *, drain: bool = False) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.thread_time()
            try:
                result = function(*args, **kwargs)
                if drain:  # a generator does its work as it is iterated
                    result = list(result)
            finally:
                self.seconds += time.thread_time() - start
                self.calls += 1
            return iter(result) if drain else result

        return timed


def _worker(config: dict[str, Any]) -> None:
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    files = sorted(p for p in Path(config["input"]).iterdir() if p.suffix in (".md", ".txt"))
    corral = config["system"] == "corral"
    result = _run_corral(config) if corral else _run_langextract(config, files)
    result["system"] = config["system"]
    result["retry_errors"] = config.get("retry_errors", False)
    result["expected_docs"] = len(files)
    result["expected_ids"] = [p.name for p in files]
    result["rss_before"] = rss_before
    result["rss_peak"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    Path(config["result"]).write_text(json.dumps(result))


def _run_corral(config: dict[str, Any]) -> dict[str, Any]:
    import asyncio

    from corral.documents import Aligner, run_documents
    from corral.jobs import DocumentOptions, ExtractOptions, JobSpec, open_job

    clock = _Clock()
    Aligner.__init__ = clock.wrap(Aligner.__init__)  # type: ignore[method-assign]
    Aligner.find = clock.wrap(Aligner.find)  # type: ignore[method-assign]
    retries = {"retries": config["retries"]} if "retries" in config else {}  # else corral's default, 6
    # A run store only where a second pass asks the failed chunks again (--retry-errors).
    store = (
        {"store": config["store"], "retry_errors": config.get("retry_errors", False)}
        if "store" in config
        else {}
    )
    spec = JobSpec(
        schema=config["schema"],
        input=config["input"],
        output=config["output"],
        durable="store" in config,
        **store,
        extract=ExtractOptions(
            model=MODEL, base_url=config["url"], concurrency=config["concurrency"], **retries
        ),
        documents=DocumentOptions(chunk_tokens=config["chunk_tokens"], keys=(("people", ("name",)),)),
    )

    async def go() -> Any:
        async with open_job(spec) as job:
            return await run_documents(job)

    start = time.perf_counter()
    counts = asyncio.run(go()).counts
    wall = time.perf_counter() - start
    docs = {}
    for line in Path(config["output"]).read_text().splitlines():
        record = json.loads(line)
        people = (record.get("output") or {}).get("people") or []
        extractions = []
        for i, person in enumerate(people):
            span = (record.get("grounding") or {}).get(f"people[{i}].name")
            extractions.append({
                "name": person.get("name") or "",
                "start": span["start"] if span else None,
                "end": span["end"] if span else None,
            })  # fmt: skip
        error = record.get("error")
        docs[record["id"]] = {
            "error": error["message"] if error else None,
            "chunks": record.get("chunks") or 1,
            "extractions": extractions,
        }
    return {
        "wall": wall,
        "align_cpu": clock.seconds,
        "align_calls": clock.calls,
        "docs": docs,
        # chunk items ended in this pass, and of them those read from the run store (no request)
        "items": {"done": counts.done, "reused": counts.reused},
    }


def _run_langextract(config: dict[str, Any], files: list[Path]) -> dict[str, Any]:
    import langextract as lx
    from langextract import resolver

    clock = _Clock()
    # setattr: with langextract installed or not (CI has it not), the same line type-checks.
    setattr(resolver.Resolver, "align", clock.wrap(resolver.Resolver.align, drain=True))  # noqa: B010
    chunks = 0
    resolve = resolver.Resolver.resolve

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal chunks
        chunks += 1
        return resolve(self, *args, **kwargs)

    setattr(resolver.Resolver, "resolve", counted)  # noqa: B010
    warnings: list[str] = []

    class Dropped(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            message = record.getMessage()
            if record.levelno >= logging.WARNING and "Chunk omitted" in message:
                warnings.append(message[:300])

    logging.getLogger("absl").addHandler(Dropped())
    documents = []
    for path in files:
        with path.open(encoding="utf-8", newline="") as handle:
            documents.append(lx.data.Document(text=handle.read(), document_id=path.name))
    examples = [
        lx.data.ExampleData(
            text=EXAMPLE_TEXT,
            extractions=[
                lx.data.Extraction(
                    extraction_class="person", extraction_text="Ada Brennan", attributes={"age": "41"}
                ),
                lx.data.Extraction(
                    extraction_class="person", extraction_text="Tobias Wren", attributes={"age": None}
                ),
            ],
        )
    ]
    raised = None
    annotated: list[Any] = []
    start = time.perf_counter()
    try:
        annotated = lx.extract(
            text_or_documents=documents,
            prompt_description=PROMPT,
            examples=examples,
            model_id=MODEL,
            api_key=API_KEY,
            language_model_params={"base_url": config["url"]},
            max_char_buffer=config["max_char_buffer"],
            batch_length=config["batch_length"],
            max_workers=config["concurrency"],
            extraction_passes=1,
            show_progress=False,
        )
    except Exception as exc:  # reported as observed: what langextract does when a chunk fails
        raised = f"{type(exc).__name__}: {exc}"[:400]
    wall = time.perf_counter() - start
    docs = {}
    for doc in annotated:
        extractions = []
        for extraction in doc.extractions or []:
            if extraction.extraction_class.lower() != "person":
                continue
            interval = extraction.char_interval
            aligned = interval is not None and interval.start_pos is not None
            extractions.append({
                "name": extraction.extraction_text,
                "start": interval.start_pos if aligned else None,
                "end": interval.end_pos if aligned else None,
            })  # fmt: skip
        docs[doc.document_id] = {"error": None, "chunks": None, "extractions": extractions}
    return {
        "wall": wall,
        "align_cpu": clock.seconds,
        "align_calls": clock.calls,
        "docs": docs,
        "chunks": chunks,
        "raised": raised,
        "dropped_chunks": len(warnings),
        "warnings": warnings[:3],
    }


if __name__ == "__main__":
    main()
