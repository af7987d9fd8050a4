"""Reports of runs, from the run store (``corral report``), in the order a report is made:

    _data    a run read from the store into a RunReport: the numbers, the timeline, errors, items,
             and a document job's documents (records, grounding spans, texts)
    _model   what a report shows, as plain data (RunReport, Plot): renderers format nothing
    _html    the report as one self-contained HTML page (nothing fetched; untrusted text escaped)
    _svg     a plot as inline SVG, drawn by hand; its scale arithmetic serves _png too
    _png     the same plots as PNG images (matplotlib, the ``plot`` extra, imported only there)

A report can be made of any run, finished or still going, from another process.
"""

from corral.report._data import find_run, load_report
from corral.report._html import render_html
from corral.report._model import RunReport

__all__ = ["RunReport", "find_run", "load_report", "render_html"]
