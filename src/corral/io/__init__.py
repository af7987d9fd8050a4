"""What comes in and what goes out: input readers (:mod:`.items`: JSONL, CSV, text; :mod:`.arrow`:
Parquet and Arrow, a batch at a time; :mod:`.documents`: a folder, glob or file of documents, each one
item; :mod:`.template`: a text made of several fields) and output writers (:mod:`.sinks`: JSONL, CSV,
Parquet)."""

from corral.io.arrow import items_from_batches
from corral.io.documents import DOCUMENT_TYPES, Documents, Skipped, count_documents, read_documents
from corral.io.items import FORMATS, Format, read_items
from corral.io.sinks import SINK_FORMATS, Sink, SinkFormat, open_sink
from corral.io.template import Template

__all__ = [
    "DOCUMENT_TYPES",
    "FORMATS",
    "SINK_FORMATS",
    "Documents",
    "Format",
    "Sink",
    "SinkFormat",
    "Skipped",
    "Template",
    "count_documents",
    "items_from_batches",
    "open_sink",
    "read_documents",
    "read_items",
]
