"""Reports of runs, from the run store (``corral report``), in the order a report is made:

    _data    a run read from the store into a RunReport: the numbers, the timeline, errors, items,
             and a document job's documents (records, grounding spans, texts)
    _model   what a report shows, as plain data (RunReport, Plot): renderers format nothing
    _scores  the job's records as the store holds them scored against gold (corral.evaluation), and
             the scores as the page shows them: the Evaluation section
    _html    the report as one self-contained HTML page (nothing fetched; untrusted text escaped)
    _svg     a plot as inline SVG, drawn by hand; its scale arithmetic serves _png too
    _png     the same plots as PNG images (matplotlib, the ``plot`` extra, imported only there)

A report can be made of any run, finished or still going, from another process. With gold records
it also scores the job's output (``corral report --gold GOLD --schema SPEC``)::

    with RunStore.open(path) as store:
        run = find_run(store, "out.jsonl")
        page = render_html(load_report(store, run), evaluate_run(store, run, "gold.jsonl", Person))
"""

from corral.report._data import find_run, load_report
from corral.report._html import render_html
from corral.report._model import RunReport
from corral.report._scores import evaluate_run

__all__ = ["RunReport", "evaluate_run", "find_run", "load_report", "render_html"]
