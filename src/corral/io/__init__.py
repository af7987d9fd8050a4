"""What comes in and what goes out: input readers (:mod:`.items`: JSONL, CSV, text; :mod:`.documents`:
a folder, glob or file of documents, each one item) and output writers (:mod:`.sinks`: JSONL, CSV,
Parquet)."""

from corral.io.documents import DOCUMENT_TYPES, Documents, Skipped, count_documents, read_documents
from corral.io.items import FORMATS, Format, read_items
from corral.io.sinks import SINK_FORMATS, Sink, SinkFormat, open_sink

__all__ = [
    "DOCUMENT_TYPES",
    "FORMATS",
    "SINK_FORMATS",
    "Documents",
    "Format",
    "Sink",
    "SinkFormat",
    "Skipped",
    "count_documents",
    "open_sink",
    "read_documents",
    "read_items",
]
