"""Reports of runs, from the run store: :mod:`.data` reads a run into a :class:`~.model.RunReport`;
:mod:`.html` draws it as one self-contained page (plots as SVG from :mod:`.svg`); :mod:`.png` draws
the same plots as images (matplotlib, the ``plot`` extra)."""

from corral.report._data import find_run, load_report
from corral.report._html import render_html
from corral.report._model import RunReport

__all__ = ["RunReport", "find_run", "load_report", "render_html"]
