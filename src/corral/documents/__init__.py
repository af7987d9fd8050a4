"""Documents: long inputs chunked, merged and grounded (issue 18, in progress).

- :mod:`._grounding`: every extracted value's character span in its source document.
"""

from corral.documents._grounding import Aligner, Span, ground_record

__all__ = ["Aligner", "Span", "ground_record"]
