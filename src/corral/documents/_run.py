"""A job's pass with documents: long texts cut into chunks, each chunk an item of the job, and the
chunks' answers merged into one grounded record per document.

    input ─► (too long? chunks: doc#1, doc#2, ... × passes) ─► the job's pass ─► chunk records ─┐
                                                                  (store, cache,  resume, retries) │
    output ◄── one record per document: merged, grounded, or an error naming its chunks ◄──────┘

Each chunk is an ordinary item of the job (``report.pdf#3``; ``#3/2`` for the second pass): it is its
own row in the run store, so a killed run resumes per chunk and a re-run pays for nothing twice, and it
is retried and re-asked like any item. A document is written once every one of its chunks has ended:
merged (:mod:`._merging`) and grounded (:mod:`._grounding`), or, if any chunk failed for good, as an
error that names them (``--retry-errors`` asks those chunks again, and only those). A chunk with no end
in this pass (its answer waits in a provider batch, or the budget stopped the input) leaves its
document unwritten, for the pass that finds it.

A text that fits in one chunk stays one item under its own id, its record the usual one plus
``grounding``; a document read from a file is always a document (``#1`` when it is one chunk), so a
folder's records all have the same shape. Only the documents whose chunks are in flight are held in
memory, so memory does not grow with the number of documents.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import re
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import orjson

from corral.documents._chunking import Chunk, chunk, estimate_tokens
from corral.documents._grounding import Aligner, Span, ground_record, string_leaves
from corral.documents._merging import Conflict, folded, merge
from corral.engine._confidence import path_parts, value_leaves
from corral.engine._stats import RunStats
from corral.errors import ConfigError, OutputInvalid
from corral.io.documents import Documents
from corral.io.sinks import Sink, dump_record
from corral.jobs import Job, JobResult
from corral.types import Item, Outcome

__all__ = ["DocumentCounts", "run_documents"]

#: of the room a request leaves for text, what a chunk takes: counts are estimates
_ROOM_SHARE = 0.9
#: fewer tokens than this for a chunk's text is no chunk at all
_MIN_ROOM = 100
#: ungrounded values named in one re-ask, at most
_MAX_DOUBTS = 10
#: what a later pass over a chunk adds to the instruction
_READING = (
    "This is reading {number} of this text: list everything it names that the schema asks for, "
    "including what is easy to miss."
)


@dataclass(slots=True)
class DocumentCounts:
    """What became of the documents (texts cut into chunks, and files read as documents) of a pass."""

    documents: int = 0
    ok: int = 0
    errors: int = 0
    #: documents left for a later pass (a chunk deferred to a provider batch, or not started)
    pending: int = 0
    chunks: int = 0
    #: string values found nowhere in their text (kept, flagged, unless dropped)
    ungrounded: int = 0
    #: records marked for a person to check (``review_below``)
    review: int = 0


async def run_documents(
    job: Job,
    items: Iterable[Item] | None = None,
    sink: Sink | None = None,
    *,
    counters: RunStats | None = None,
    documents: DocumentCounts | None = None,
    on_outcome: Callable[[Outcome[Any]], None] | None = None,
) -> JobResult:
    """One pass of ``job`` over ``items`` (default: its input) into ``sink`` (default: its output)
    with the spec's document options: :meth:`Job.run`, with long texts chunked, merged and grounded.
    ``documents`` counts what became of the documents."""
    counters = counters if counters is not None else RunStats()
    documents = documents if documents is not None else DocumentCounts()
    # Checked before the output is opened (rewritten): a window too small for any text refuses here.
    run = _DocumentPass(job, documents)
    source = job.items() if items is None else items
    with contextlib.ExitStack() as closing:
        run.out = sink if sink is not None else closing.enter_context(job.open_sink())
        return await job.run(
            run.pieces(source),
            _Assembler(run),
            counters=counters,
            on_outcome=on_outcome,
            on_pending=run.pending,
        )


@dataclass(slots=True)
class _Document:
    """A document whose chunks are in flight: what it needs to be assembled when they have all ended."""

    item: Item
    chunks: list[Chunk]
    #: chunk item id → (chunk index, pass), and the records that came back, by the same id
    ids: dict[str, tuple[int, int]]
    records: dict[str, Mapping[str, Any]] = field(default_factory=dict)


class _DocumentPass:
    #: where the records go (set once the output is opened)
    out: Sink

    def __init__(self, job: Job, counts: DocumentCounts) -> None:
        self.job = job
        self.options = job.spec.documents
        self.counts = counts
        self.extractor = job.extractor
        #: chunk item id → its document, while the document waits for chunks
        self.waiting: dict[str, _Document] = {}
        self.room = self._room()
        if self.options.ungrounded == "reask":
            self.extractor.check = self._doubts

    # --- in: items to chunk items ---------------------------------------------------------------

    async def pieces(self, items: Iterable[Item]) -> AsyncIterator[Item]:
        """The items to extract: a text that fits as it is, a long one (or a document) as chunks.
        Documents are read off the event loop (a PDF is parsed in pure Python)."""
        threaded = isinstance(items, Documents)
        iterator = iter(items)
        while True:
            item = await asyncio.to_thread(next, iterator, None) if threaded else next(iterator, None)
            if item is None:
                return
            for piece in self._cut(item, document=threaded):
                yield piece

    def _cut(self, item: Item, *, document: bool) -> Iterator[Item]:
        options = self.options
        if item.problem is not None or not options.chunking:
            if document:  # still a document's record, carrying the reading problem or too_long
                self._wait(item, [Chunk(0, 0, len(item.text), 0)], {item.id: (0, 1)})
            yield item
            return
        count = self._count
        if not document and options.passes == 1 and count(item.text) <= self.room:
            yield item
            return
        # An empty text is one empty chunk: it still ends as a record (the model says what it says).
        chunks = chunk(item.text, budget=self.room, overlap=options.overlap, count=count) or [
            Chunk(0, 0, 0, 0)
        ]
        ids: dict[str, tuple[int, int]] = {}
        pieces = []
        for number in range(1, options.passes + 1):
            for piece in chunks:
                piece_id = f"{item.id}#{piece.index + 1}" + (f"/{number}" if number > 1 else "")
                ids[piece_id] = (piece.index, number)
                # Each later pass is its own request (and cache entry): a new reading, not a repeat.
                note = _READING.format(number=number) if number > 1 else None
                pieces.append(Item(id=piece_id, text=item.text[piece.start : piece.end], note=note))
        self._wait(item, chunks, ids)
        yield from pieces

    def _count(self, text: str) -> int:
        """Tokens of ``text``, by measures that never move (a re-run cuts where this one did): the
        engine's first count, or one token a character outside ASCII (CJK runs near that), the more."""
        return max(self.extractor.token_count(text), estimate_tokens(text))

    def _wait(self, item: Item, chunks: list[Chunk], ids: dict[str, tuple[int, int]]) -> None:
        document = _Document(item, chunks, ids)
        for piece_id in ids:
            self.waiting[piece_id] = document
        self.counts.chunks += len(ids)

    def _room(self) -> int:
        """Tokens of text a chunk may hold: ``chunk_tokens``, or less when the model's context window
        leaves less once the prompt and the reply's room are counted."""
        room = self.extractor.text_room()
        if room is None:
            return self.options.chunk_tokens
        if room * _ROOM_SHARE < _MIN_ROOM:
            max_tokens = self.extractor.settings.max_tokens
            raise ConfigError(
                f"the model's context window of {self.extractor.context_window:,} tokens leaves "
                f"{max(room, 0):,} for text once the prompt and max_tokens={max_tokens:,} are counted"
                ": lower --max-tokens, or pass the window the model really has (--context-window)"
            )
        return min(self.options.chunk_tokens, int(room * _ROOM_SHARE))

    # --- re-asking ungrounded values ---------------------------------------------------------------

    def _doubts(self, item: Item, output: Any) -> list[str]:
        found = ground_record(output, Aligner(item.text), min_score=self.options.min_score)
        missing = [path for path, span in found.items() if span is None]
        return [f"{path}: {_value_at(output, path)!r} is not in the text" for path in missing[:_MAX_DOUBTS]]

    # --- out: chunk records to document records ---------------------------------------------------

    def pending(self, outcome: Outcome[Any]) -> None:
        """A chunk with no end in this pass: its document is not written in it."""
        document = self.waiting.get(outcome.id)
        if document is None:
            return
        self.counts.pending += 1
        for piece_id in document.ids:
            self.waiting.pop(piece_id, None)

    def take(self, record: Mapping[str, Any]) -> None:
        document = self.waiting.pop(str(record["id"]), None)
        if document is None:
            self.out.write(self._plain(record))
            return
        document.records[str(record["id"])] = record
        if len(document.records) == len(document.ids):
            self._finish(document)

    def _plain(self, record: Mapping[str, Any]) -> Mapping[str, Any]:
        if self.options.ground:
            grounding: dict[str, Any] = {}
            if record.get("error") is None and record.get("output") is not None:
                spans = ground_record(
                    record["output"], Aligner(record["input"]), min_score=self.options.min_score
                )
                self.counts.ungrounded += sum(span is None for span in spans.values())
                grounding = {path: _span(span, None) for path, span in spans.items()}
            record = {**record, "grounding": grounding}
        return self._reviewed(record)

    def _reviewed(self, record: Mapping[str, Any]) -> Mapping[str, Any]:
        """With ``review_below``: the paths a person should check, in ``review`` (a value less sure
        than that, or found nowhere in the text); none, no key."""
        threshold = self.options.review_below
        if threshold is None or record.get("error") is not None:
            return record
        doubtful = {
            path for path, entry in (record.get("confidence") or {}).items() if entry["value"] < threshold
        }
        doubtful |= {path for path, span in (record.get("grounding") or {}).items() if span is None}
        if not doubtful:
            return record
        self.counts.review += 1
        return {**record, "review": sorted(doubtful)}

    def _finish(self, document: _Document) -> None:
        item = document.item
        ordered = sorted(document.records.items(), key=lambda entry: document.ids[entry[0]])
        records = [record for _, record in ordered]
        assembled = _Assembled(item, document.chunks, self.options.min_score)
        failed = [(document.ids[piece_id], record) for piece_id, record in ordered if record.get("error")]
        error: dict[str, str] | None
        if failed and list(document.ids) == [item.id]:  # read whole: its own error, as it is
            error = dict(failed[0][1]["error"])
        elif failed:
            error = _chunks_failed(failed, len(document.chunks), self.options.passes)
        else:
            answers = [(document.chunks[document.ids[key][0]], record["output"]) for key, record in ordered]
            assembled.merge(answers, keys=dict(self.options.keys), ground=self.options.ground)
            if self.options.ungrounded == "drop":
                assembled.drop_ungrounded()
            assembled.carry_confidence(records)
            error = self._invalid(assembled.output)
        record = dict(self._reviewed(assembled.record(records, error, ground=self.options.ground)))
        self.counts.documents += 1
        if record["error"] is None:
            self.counts.ok += 1
            self.counts.ungrounded += sum(span is None for span in record.get("grounding", {}).values())
        else:
            self.counts.errors += 1
        self.out.write(record)
        store, handle = self.job.store, self.job.handle
        if store is not None and handle is not None:
            status = "ok" if record["error"] is None else "error"
            store.add_document(handle, item.id, status=status, record=dump_record(record), text=item.text)

    def _invalid(self, output: Any) -> dict[str, str] | None:
        """The merged record checked against the user's schema (a list over its maxItems, say)."""
        spec = self.extractor.spec
        try:
            spec.parse(orjson.dumps({"items": output} if spec.many else output))
        except OutputInvalid as exc:
            return {
                "kind": "merge",
                "message": f"the chunks' answers, merged, do not match the schema: {exc}",
            }
        return None


class _Assembler:
    """The pass's sink: chunk records are held for their document, everything else written on."""

    def __init__(self, run: _DocumentPass) -> None:
        self._run = run
        self.path = run.out.path

    def write(self, record: Mapping[str, Any]) -> None:
        self._run.take(record)

    def flush(self) -> None:
        self._run.out.flush()

    def close(self) -> None:
        self._run.out.close()

    def __enter__(self) -> _Assembler:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class _Assembled:
    """One document's merged, grounded record in the making."""

    def __init__(self, item: Item, chunks: list[Chunk], min_score: float) -> None:
        self.item = item
        self.chunks = chunks
        self.min_score = min_score
        self.output: Any = None
        self.conflicts: list[Conflict] = []
        self.grounding: dict[str, Span | None] = {}
        #: each grounded value (folded) and its first span
        self.spans: dict[str, Span] = {}
        #: each value's confidence and its method, by path (when the chunks' answers had them)
        self.confidence: dict[str, tuple[float, str]] = {}
        pages = (item.fields or {}).get("pages")
        self.page_starts = [start for start, _ in pages] if isinstance(pages, list) and pages else None

    def merge(
        self, answers: list[tuple[Chunk, Any]], *, keys: Mapping[str, Sequence[str]], ground: bool
    ) -> None:
        # Each answer's values are looked for in its own chunk (the model saw nothing else), so a
        # value is grounded where it was read; the merged record's values take the first such span.
        spans = self.spans
        if ground:
            aligner = Aligner(self.item.text)
            for piece, output in answers:
                within = (piece.start, piece.end)
                for value, span in _values(output, aligner, within, self.min_score):
                    spans.setdefault(folded(value), span)

        def grounded(_path: str, value: Any) -> bool:
            return not isinstance(value, str) or folded(value) in spans

        merged = merge([output for _, output in answers], keys=keys, grounded=grounded if ground else None)
        self.output = merged.value
        self.conflicts = merged.conflicts
        if ground:
            self.grounding = {path: spans.get(folded(value)) for path, value in string_leaves(self.output)}

    def carry_confidence(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Each merged value's confidence: the highest any chunk's answer gave the same value at the
        same field (the merge keeps values, not the answers they came from)."""
        best: dict[tuple[str, str], tuple[float, str]] = {}
        for record in records:
            confidence = record.get("confidence") or {}
            leaves = dict(value_leaves(record.get("output"))) if confidence else {}
            for path, entry in confidence.items():
                if path in leaves:
                    key = (_field(path), _value_key(leaves[path]))
                    if key not in best or entry["value"] > best[key][0]:
                        best[key] = (entry["value"], entry["method"])
        self.confidence = {
            path: best[(_field(path), _value_key(value))]
            for path, value in value_leaves(self.output)
            if (_field(path), _value_key(value)) in best
        }

    def drop_ungrounded(self) -> None:
        """Every value found nowhere in the text taken out: the innermost list entry holding it goes
        whole (an entity with a made-up name is not one the text gives), a field outside any list is
        emptied; the schema then says whether the record still stands."""
        targets = {_target(path) for path, span in self.grounding.items() if span is None}
        # Last first, so that taking an entry out of a list moves none of the others still to go.
        for target in sorted(targets, key=_path_order, reverse=True):
            self.output = _without(self.output, target)
        self.grounding = {path: self.spans.get(folded(value)) for path, value in string_leaves(self.output)}

    def record(
        self, records: list[Mapping[str, Any]], error: dict[str, str] | None, *, ground: bool
    ) -> dict[str, Any]:
        usage = {"prompt_tokens": 0, "completion_tokens": 0}
        for record in records:
            for name in usage:
                usage[name] += int((record.get("usage") or {}).get(name) or 0)
        built = {
            "id": self.item.id,
            **(self.item.kept or {}),  # the input's fields passed through (--keep), as a plain record has
            "output": None if error is not None else self.output,
            "grounding": {} if error is not None else {
                path: _span(span, self.page_starts) for path, span in self.grounding.items()
            },
            "conflicts": [] if error is not None else [
                {"path": c.path, "kept": c.kept, "others": list(c.others)} for c in self.conflicts
            ],
            "chunks": len(self.chunks),
            "error": error,
            "attempts": sum(int(record.get("attempts") or 0) for record in records),
            "usage": usage,
            "latency": round(sum(float(record.get("latency") or 0) for record in records), 4),
        }  # fmt: skip
        if not ground:
            del built["grounding"]
        if error is None and self.confidence:
            built["confidence"] = {
                path: {"value": value, "method": method} for path, (value, method) in self.confidence.items()
            }
        return built


def _chunks_failed(
    failed: list[tuple[tuple[int, int], Mapping[str, Any]]], chunks: int, passes: int
) -> dict[str, str]:
    def name(index: int, number: int) -> str:
        return f"{index + 1}" + (f" (pass {number})" if passes > 1 else "")

    names = [name(index, number) for (index, number), _ in failed]
    (index, number), first = failed[0]
    why = f"{first['error']['kind']}: {first['error']['message']}"
    listed = ", ".join(names)
    return {
        "kind": "chunks",
        "message": f"chunk{'s' if len(names) > 1 else ''} {listed} of {chunks} failed "
        f"(chunk {name(index, number)}: {why}); --retry-errors asks the failed chunks again",
    }


def _values(
    output: Any, aligner: Aligner, within: tuple[int, int], min_score: float
) -> Iterator[tuple[str, Span]]:
    for _path, value in string_leaves(output):
        span = aligner.find(value, within=within, min_score=min_score)
        if span is not None:
            yield value, span


def _span(span: Span | None, page_starts: list[int] | None) -> dict[str, Any] | None:
    if span is None:
        return None
    entry: dict[str, Any] = {
        "start": span.start,
        "end": span.end,
        "how": span.how,
        "score": round(span.score, 3),
    }
    if page_starts is not None:
        entry["page"] = bisect.bisect_right(page_starts, span.start)
    return entry


def _field(path: str) -> str:
    """A path without its indices: ``people[2].age`` → ``people[].age``."""
    return re.sub(r"\[\d+\]", "[]", path)


def _value_key(value: Any) -> str:
    return folded(value) if isinstance(value, str) else orjson.dumps(value).decode()


def _target(path: str) -> tuple[str | int, ...]:
    """What goes when the value at ``path`` is dropped: up to its innermost list entry, else itself."""
    parts = tuple(path_parts(path))
    last = max((at for at, part in enumerate(parts) if isinstance(part, int)), default=-1)
    return parts[: last + 1] if last >= 0 else parts


def _path_order(parts: tuple[str | int, ...]) -> tuple[tuple[int, int | str], ...]:
    return tuple((0, part) if isinstance(part, int) else (1, part) for part in parts)


def _without(node: Any, parts: Sequence[str | int]) -> Any:
    """``node`` with what is at ``parts`` taken out: a list's entry removed, an object's field None."""
    head, rest = parts[0], parts[1:]
    if isinstance(node, list) and isinstance(head, int) and head < len(node):
        if not rest:
            return node[:head] + node[head + 1 :]
        return [*node[:head], _without(node[head], rest), *node[head + 1 :]]
    if isinstance(node, dict) and isinstance(head, str) and head in node:
        return {**node, head: None if not rest else _without(node[head], rest)}
    return node


def _value_at(output: Any, path: str) -> Any:
    node = output
    for part in tuple(path_parts(path)):
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return None
    return node
