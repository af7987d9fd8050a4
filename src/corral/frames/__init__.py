"""Tables in, tables out: :func:`extract_frame` (and its async form :func:`aextract_frame`) runs a
pandas or polars DataFrame, a pyarrow Table or a Hugging Face ``datasets.Dataset`` through a job and
gives back the same kind of table with the extraction as typed columns.

- :mod:`._convert`: each library's table to Arrow record batches and back (imported only when used);
- :mod:`._run`: the job (the one ``corral run`` runs), the rows' records, the new columns.
"""

from corral.frames._run import aextract_frame, extract_frame

__all__ = ["aextract_frame", "extract_frame"]
