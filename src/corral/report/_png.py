"""The report's plots as PNG images (``corral report --png DIR``), drawn with matplotlib.

They match the page's SVG plots: the same colours (:data:`corral.report._svg.ROLE_COLOURS`), ticks,
tick labels and limit lines, all taken from :mod:`corral.report._svg`. matplotlib is an optional extra,
imported only here. Figures are built on their own Agg canvas, never through pyplot: no global
backend is switched and no figure is left registered, so a notebook that calls this keeps its own.
"""

from __future__ import annotations

import math
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from corral.errors import ConfigError, OutputError
from corral.report._model import Plot, RunReport
from corral.report._svg import bars_of, clean_points, limit_points, series_colours, x_axis, y_axis

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["write_pngs"]

_SIZE_INCHES = (12.0, 6.0)
_DPI = 100  # 1200 × 600 pixels
_TEXT = "#1b1f24"
_MUTED = "#5d6773"
_UNSAFE_FILE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def _plain(text: str) -> str:
    """Text as matplotlib should print it: a ``$`` would otherwise start a maths formula."""
    return text.replace("$", r"\$")


def _draw(axes: Axes, plot: Plot) -> None:
    colours = series_colours(plot.series)
    x, y = x_axis(plot), y_axis(plot)
    for series, colour, bars in zip(plot.series, colours, bars_of(plot), strict=True):
        label = _plain(series.label)
        if series.style == "bars":
            axes.bar(
                [bar.x for bar in bars],
                [bar.value for bar in bars],
                width=[bar.width for bar in bars],
                align="edge",
                color=colour,
                edgecolor="white",  # the hairline gap the page's bars have too
                linewidth=0.6,
                label=label,
                zorder=2,
            )
            continue
        points = limit_points(series, x.lo, x.hi) if series.style == "limit" else clean_points(series)
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        if series.style == "limit":
            axes.step(xs, ys, where="post", color=colour, linewidth=1.4, linestyle=(0, (6, 4)), label=label,
                      zorder=4)  # fmt: skip
        elif series.style == "step":
            axes.step(xs, ys, where="post", color=colour, linewidth=2, label=label, zorder=3)
        else:
            marker = "o" if len(points) == 1 else ""
            axes.plot(xs, ys, color=colour, linewidth=2, marker=marker, label=label, zorder=3)
    axes.set_xlim(x.lo, x.hi)
    axes.set_ylim(y.lo, y.hi)
    axes.set_xticks(x.ticks, [_plain(label) for label in x.labels])
    axes.set_yticks(y.ticks, [_plain(label) for label in y.labels])


def _style(axes: Axes, plot: Plot) -> None:
    axes.set_title(_plain(plot.title), loc="left", fontsize=15, fontweight="bold", color=_TEXT, pad=30)
    axes.set_xlabel(_plain(plot.x_label), fontsize=12, color=_TEXT)
    axes.set_ylabel(_plain(plot.y_label), fontsize=12, color=_TEXT)
    axes.grid(axis="y", color=_TEXT, alpha=0.12, linewidth=0.8, zorder=0)
    axes.set_axisbelow(True)
    for side in ("top", "right", "left"):
        axes.spines[side].set_visible(False)
    axes.spines["bottom"].set_color(_MUTED)
    axes.tick_params(colors=_MUTED, labelsize=11, length=4)
    axes.tick_params(axis="y", length=0)
    if plot.series:
        columns = min(len(plot.series), 5)
        axes.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncols=columns, frameon=False, fontsize=11,
                    borderaxespad=0.3, handlelength=1.8)  # fmt: skip


def write_pngs(report: RunReport, directory: Path) -> list[Path]:
    """Each plot with data as ``directory/<slug>.png`` (1200 × 600); the directory is created.
    Returns the files written, in the report's order. Raises :class:`ConfigError` without matplotlib."""
    try:
        # The package itself first: if it is unusable, fail here even when submodules were cached.
        import matplotlib  # noqa: F401
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ConfigError("--png needs matplotlib: pip install 'corral[plot]'") from exc

    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot write the plots into {directory}: {exc.strerror}") from None
    written: list[Path] = []
    for plot in report.plots:
        if plot.empty:
            continue
        figure = Figure(figsize=_SIZE_INCHES, dpi=_DPI, facecolor="white")
        FigureCanvasAgg(figure)  # attaches itself: savefig renders with Agg
        # Room under the x label for the note, wrapped at ~150 characters a line (11 pt on 1200 px).
        note_lines = math.ceil(len(plot.note) / 150)
        figure.subplots_adjust(left=0.075, right=0.98, top=0.84, bottom=0.11 + 0.035 * note_lines)
        axes = figure.add_subplot()
        _draw(axes, plot)
        _style(axes, plot)
        if plot.note:
            figure.text(0.075, 0.02, _plain(plot.note), fontsize=11, color=_MUTED, wrap=True)
        path = directory / f"{_UNSAFE_FILE_NAME.sub('-', plot.slug) or 'plot'}.png"
        with warnings.catch_warnings():
            # A label in a script the default font lacks draws as boxes: not worth a warning per glyph.
            warnings.filterwarnings("ignore", message=r"Glyph \d+ .* missing from")
            try:
                figure.savefig(path, dpi=_DPI, facecolor="white")
            except OSError as exc:
                raise OutputError(f"cannot write the plot {path}: {exc.strerror}") from None
        written.append(path)
    return written
