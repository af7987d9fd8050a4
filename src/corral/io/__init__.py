"""What comes in and what goes out: input readers (:mod:`.items`: JSONL, CSV, text) and output
writers (:mod:`.sinks`: JSONL, CSV, Parquet)."""

from corral.io.items import FORMATS, Format, read_items
from corral.io.sinks import SINK_FORMATS, Sink, SinkFormat, open_sink

__all__ = ["FORMATS", "SINK_FORMATS", "Format", "Sink", "SinkFormat", "open_sink", "read_items"]
