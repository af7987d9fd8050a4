"""Documents: long inputs chunked, merged and grounded.

- :mod:`._run`: :func:`run_documents`, a job's pass with long texts cut into chunks (each an item of
  the job) and the chunks' answers assembled into one grounded record per document;
- :mod:`._chunking`: a long text cut into chunks under a token budget, at paragraphs and sentences.
- :mod:`._merging`: the answers of a document's chunks (and passes) as one record, conflicts listed;
- :mod:`._grounding`: every extracted value's character span in its source document.
"""

from corral.documents._chunking import DEFAULT_OVERLAP, Chunk, chunk, estimate_tokens, sentence_spans
from corral.documents._grounding import Aligner, Span, ground_record, string_leaves
from corral.documents._merging import Conflict, Merged, merge
from corral.documents._run import DocumentCounts, run_documents

__all__ = [
    "DEFAULT_OVERLAP",
    "Aligner",
    "Chunk",
    "Conflict",
    "DocumentCounts",
    "Merged",
    "Span",
    "chunk",
    "estimate_tokens",
    "ground_record",
    "merge",
    "run_documents",
    "sentence_spans",
    "string_leaves",
]
