"""Documents: long inputs chunked, merged and grounded (issue 18, in progress).

- :mod:`._chunking`: a long text cut into chunks under a token budget, at paragraphs and sentences.
- :mod:`._merging`: the answers of a document's chunks (and passes) as one record, conflicts listed;
- :mod:`._grounding`: every extracted value's character span in its source document.
"""

from corral.documents._chunking import DEFAULT_OVERLAP, Chunk, chunk, estimate_tokens, sentence_spans
from corral.documents._grounding import Aligner, Span, ground_record
from corral.documents._merging import Conflict, Merged, merge

__all__ = [
    "DEFAULT_OVERLAP",
    "Aligner",
    "Chunk",
    "Conflict",
    "Merged",
    "Span",
    "chunk",
    "estimate_tokens",
    "ground_record",
    "merge",
    "sentence_spans",
]
