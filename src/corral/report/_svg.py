"""A :class:`~corral.report._model.Plot` as an inline ``<svg>``, drawn by hand (no plotting library, so
the page stays one small self-contained file that any browser shows offline).

The scale arithmetic here (the axes' "nice" ticks, how ticks read, the colour of each role, where
bars and limits go) is shared with :mod:`corral.report._png`, so a plot reads the same in the page
and as an image.

Text drawn in the SVG uses ``currentColor``: inside the page it follows the light or dark theme.
Series colours come from the Okabe–Ito palette, which stays distinct under the common colour-vision
deficiencies; limits are also dashed, so they never rely on colour alone.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from corral.report._model import Plot, ReliabilityBin, Series

__all__ = [
    "ROLE_COLOURS",
    "Axis",
    "Bar",
    "bars_of",
    "clean_points",
    "is_time_axis",
    "limit_points",
    "plot_svg",
    "reliability_svg",
    "series_colours",
    "x_axis",
    "y_axis",
]

#: one colour per series role (Okabe–Ito): the page and the PNG images both take theirs from here
ROLE_COLOURS: dict[str, str] = {
    "ok": "#009E73",  # bluish green
    "error": "#D55E00",  # vermillion
    "retry": "#E69F00",  # orange
    "limit": "#8A8A8A",  # grey, and dashed
    "neutral": "#0072B2",  # blue
}
#: for a second (third, …) series of the same role in one plot: the rest of the palette
_MORE_COLOURS = ("#56B4E9", "#CC79A7", "#F0E442", "#000000")

# The drawing's own units; the element scales to its container (width 100%, viewBox).
_WIDTH = 560
_HEIGHT = 290
_FONT = "system-ui,-apple-system,'Segoe UI',Roboto,'Helvetica Neue',Arial,sans-serif"
_CHAR_WIDTH = 6.8  # a 12px system font's average advance: enough to lay out labels and legend
_MAX_HOVER_TARGETS = 300
#: a line with more points than this is thinned to a few per pixel column (its shape is kept)
_DECIMATE_ABOVE = 2_000
# Characters XML 1.0 forbids, and lone surrogates (which UTF-8 cannot encode): they become U+FFFD.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


@dataclass(frozen=True, slots=True)
class Axis:
    """One axis: its range, where its ticks are and how they read."""

    lo: float
    hi: float
    ticks: tuple[float, ...]
    labels: tuple[str, ...]
    #: how a value on this axis reads in a tooltip
    format: Callable[[float], str]


@dataclass(frozen=True, slots=True)
class Bar:
    """One bar: from ``x`` over ``width``, from zero up to ``value``."""

    x: float
    width: float
    value: float


def _esc(text: str) -> str:
    return html.escape(_NOT_XML.sub("\ufffd", text), quote=True)


def clean_points(series: Series) -> list[tuple[float, float]]:
    """The series' points with NaN and infinities dropped, in x order."""
    points = [(x, y) for x, y in series.points if math.isfinite(x) and math.isfinite(y)]
    points.sort(key=lambda point: point[0])
    return points


def series_colours(series: Sequence[Series]) -> list[str]:
    """A colour per series: its role's, or (for a repeated role) the next unused one of the palette."""
    used_roles: set[str] = set()
    spare = iter(_MORE_COLOURS * (len(series) // len(_MORE_COLOURS) + 1))
    colours = []
    for one in series:
        if one.role in used_roles and one.role != "limit":
            colours.append(next(spare))
        else:
            colours.append(ROLE_COLOURS[one.role])
        used_roles.add(one.role)
    return colours


def bars_of(plot: Plot) -> list[list[Bar]]:
    """Bars per series (empty for other styles), in x order, each as wide as the series says (or
    ``plot.bar_width``). Bar series overlap, each drawn in front of those before it: a subset (429s
    among all retries) goes after its whole, and shows inside it."""
    out: list[list[Bar]] = []
    for series in plot.series:
        if series.style != "bars":
            out.append([])
            continue
        widths = series.widths or (plot.bar_width,) * len(series.points)
        bars = [
            Bar(x, width, y)
            for (x, y), width in zip(series.points, widths, strict=True)
            if math.isfinite(x) and math.isfinite(y) and math.isfinite(width) and width > 0
        ]
        bars.sort(key=lambda bar: bar.x)
        out.append(bars)
    return out


def is_time_axis(plot: Plot) -> bool:
    """Whether x is a duration in seconds (time since the start, a latency)."""
    return plot.x_unit == "seconds"


# --- ticks --------------------------------------------------------------------------------------


def _nice_step(span: float, target: int) -> float:
    """The 1-2-5 step that cuts ``span`` into about ``target`` parts."""
    raw = span / target
    magnitude = 10.0 ** math.floor(math.log10(raw))
    for factor in (1.0, 2.0, 5.0):
        if raw <= factor * magnitude * 1.0000001:
            return factor * magnitude
    return 10.0 * magnitude


#: steps a clock reads well: seconds, then whole minutes and hours (1-2-5 days beyond)
_TIME_STEPS = (1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0,
               7200.0, 10800.0, 21600.0, 43200.0, 86400.0)  # fmt: skip


def _time_step(span: float, target: int) -> float:
    if span / target < 1.0:
        return _nice_step(span, target)
    for step in _TIME_STEPS:
        if span / step <= target:
            return step
    return _nice_step(span / 86400.0, target) * 86400.0


def _ticks_in(lo: float, hi: float, step: float) -> tuple[float, ...]:
    first, last = math.ceil(lo / step - 1e-9), math.floor(hi / step + 1e-9)
    if last - first > 100:  # a step the float range cannot honour: show the ends only
        return (lo, hi)
    return tuple(0.0 if i == 0 else i * step for i in range(first, last + 1))


def _decimals(step: float) -> int:
    return 0 if step >= 1 else math.ceil(-math.log10(step) - 1e-9)


def _number_formatter(ticks_max: float, step: float) -> Callable[[float], str]:
    """``1,250`` below ten thousand; ``12k``, ``3.5M``, ``2B`` above, as precise as the step needs."""
    if ticks_max >= 1e15:  # beyond any count corral keeps: only the magnitude matters
        return lambda value: "0" if value == 0 else f"{value:.3g}"
    for divisor, suffix in ((1e9, "B"), (1e6, "M"), (1e4, "k")):
        if ticks_max >= divisor:
            scale = divisor if divisor != 1e4 else 1e3
            decimals = _decimals(step / scale)
            return lambda value: "0" if value == 0 else f"{value / scale:,.{decimals}f}{suffix}"
    decimals = _decimals(step)
    return lambda value: "0" if value == 0 else f"{value:,.{decimals}f}"


def _time_formatter(ticks_max: float, step: float) -> Callable[[float], str]:
    """``5s`` up to two minutes, ``m:ss`` up to an hour, ``h:mm:ss`` beyond (whole days past four)."""
    if ticks_max < 120:
        decimals = _decimals(step)
        return lambda value: "0s" if value == 0 else f"{value:.{decimals}f}s"
    if ticks_max >= 4 * 86400 and step >= 86400:
        return lambda value: f"{value / 86400:,.0f}d"

    def clock(value: float) -> str:
        sign, total = ("-" if value < 0 else ""), round(abs(value))
        minutes, seconds = divmod(total, 60)
        if ticks_max < 3600:
            return f"{sign}{minutes}:{seconds:02d}"
        hours, minutes = divmod(minutes, 60)
        return f"{sign}{hours}:{minutes:02d}:{seconds:02d}"

    return clock


def _value_text(value: float) -> str:
    """A data value in a tooltip: whole numbers with separators, others to three significant digits."""
    if abs(value) >= 1e15:
        return f"{value:.3g}"
    if value == round(value):
        return f"{round(value):,}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _axis(lo: float, hi: float, *, time: bool, target: int, expand: bool) -> Axis:
    if lo == hi:  # a single value: give it room on both sides (never below zero if it is not)
        pad = max(abs(lo) * 0.1, 1.0)
        lo, hi = (lo - pad if lo - pad >= 0 or lo < 0 else 0.0), hi + pad
    span = hi - lo
    if not math.isfinite(span):  # the ends are finite but their distance is not: halve the ends
        lo, hi = lo / 2, hi / 2
        span = hi - lo
    step = _time_step(span, target) if time else _nice_step(span, target)
    if expand:
        lo, hi = math.floor(lo / step + 1e-9) * step, math.ceil(hi / step - 1e-9) * step
    ticks = _ticks_in(lo, hi, step)
    ticks_max = max(abs(lo), abs(hi))
    formatter = _time_formatter(ticks_max, step) if time else _number_formatter(ticks_max, step)
    fine = _time_formatter(ticks_max, min(step, 0.1)) if time else _value_text
    return Axis(lo, hi, ticks, tuple(formatter(t) for t in ticks), fine)


def x_axis(plot: Plot, target: int = 6) -> Axis:
    """The x range of the data (not rounded out: time plots end where the run ended)."""
    xs: list[float] = []
    for series, bars in zip(plot.series, bars_of(plot), strict=True):
        xs.extend(x for x, _ in clean_points(series))
        xs.extend(bar.x + bar.width for bar in bars)
    lo, hi = (min(xs), max(xs)) if xs else (0.0, 1.0)
    return _axis(lo, hi, time=is_time_axis(plot), target=target, expand=False)


def y_axis(plot: Plot, target: int = 5) -> Axis:
    """The y range rounded out to whole ticks; from zero unless the plot fits its data."""
    ys: list[float] = [0.0] if plot.from_zero else []
    for series in plot.series:
        ys.extend(y for _, y in clean_points(series))
    lo, hi = (min(ys), max(ys)) if ys else (0.0, 1.0)
    if lo == hi == 0.0:
        hi = 1.0
    return _axis(lo, hi, time=False, target=target, expand=True)


# --- drawing -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Frame:
    """The plotting area inside the drawing, and the maps from data to it."""

    left: float
    top: float
    right: float
    bottom: float
    x: Axis
    y: Axis

    def px(self, value: float) -> float:
        return self.left + (value - self.x.lo) / (self.x.hi - self.x.lo) * (self.right - self.left)

    def py(self, value: float) -> float:
        clamped = min(max(value, self.y.lo), self.y.hi)
        return self.bottom - (clamped - self.y.lo) / (self.y.hi - self.y.lo) * (self.bottom - self.top)


def _text_width(text: str) -> float:
    return len(text) * _CHAR_WIDTH


def _legend(series: Sequence[Series], colours: Sequence[str], left: float, right: float) -> list[str]:
    """Legend entries laid out in rows from the top left, wrapping at the plot's right edge."""
    parts, x, y = [], left, 14.0
    for one, colour in zip(series, colours, strict=True):
        width = 22 + _text_width(one.label) + 16
        if x > left and x + width > right:
            x, y = left, y + 18
        if one.style == "bars":
            swatch = f'<rect x="{x:.1f}" y="{y - 5:.1f}" width="12" height="10" rx="2" fill="{colour}"/>'
        else:
            dash = ' stroke-dasharray="4 3"' if one.style == "limit" else ""
            swatch = (
                f'<line x1="{x:.1f}" y1="{y:.1f}" x2="{x + 16:.1f}" y2="{y:.1f}" stroke="{colour}" '
                f'stroke-width="2.5" stroke-linecap="round"{dash}/>'
            )
        parts.append(f'{swatch}<text x="{x + 22:.1f}" y="{y + 4:.1f}">{_esc(one.label)}</text>')
        x += width
    return parts


def _legend_rows(series: Sequence[Series], width: float) -> int:
    rows, used = 1, 0.0
    for one in series:
        entry = 22 + _text_width(one.label) + 16
        if used > 0 and used + entry > width:
            rows, used = rows + 1, 0.0
        used += entry
    return rows


def _decimate(points: list[tuple[float, float]], frame: _Frame) -> list[tuple[float, float]]:
    """At most first/min/max/last per pixel column: the drawn shape is the same, the file small."""
    if len(points) <= _DECIMATE_ABOVE:
        return points
    kept: list[tuple[float, float]] = []
    column: list[tuple[float, float]] = []
    current: int | None = None
    for point in [*points, (math.inf, 0.0)]:
        key = int(frame.px(point[0])) if math.isfinite(point[0]) else None
        if key != current and column:
            chosen = {column[0], min(column, key=lambda p: p[1]), max(column, key=lambda p: p[1]), column[-1]}
            kept.extend(sorted(chosen, key=column.index))
            column = []
        current = key
        column.append(point)
    return kept


def _path_points(points: list[tuple[float, float]], frame: _Frame, *, step: bool) -> str:
    coords: list[str] = []
    previous_y: float | None = None
    for x, y in points:
        if step and previous_y is not None:
            coords.append(f"{frame.px(x):.1f},{frame.py(previous_y):.1f}")
        coords.append(f"{frame.px(x):.1f},{frame.py(y):.1f}")
        previous_y = y
    return " ".join(coords)


def _curve(series: Series, colour: str, frame: _Frame) -> str:
    """A line or step series; a lone point shows as a dot (a polyline of one point draws nothing)."""
    points = _decimate(clean_points(series), frame)
    if not points:
        return ""
    if len(points) == 1:
        x, y = points[0]
        return f'<circle cx="{frame.px(x):.1f}" cy="{frame.py(y):.1f}" r="3" fill="{colour}"/>'
    return (
        f'<polyline points="{_path_points(points, frame, step=series.style == "step")}" fill="none" '
        f'stroke="{colour}" stroke-width="1.75" stroke-linejoin="round" stroke-linecap="round"/>'
    )


def limit_points(series: Series, lo: float, hi: float) -> list[tuple[float, float]]:
    """Where a limit series is drawn: one value across the whole x range ``lo``..``hi``, or each
    value held from its point to the next and the last to the right edge."""
    points = clean_points(series)
    if not points:
        return []
    held = [(lo, points[0][1]), *points] if len(points) == 1 else points
    return [*held, (hi, held[-1][1])]


def _limit(series: Series, colour: str, frame: _Frame) -> str:
    """A dashed reference line (held levels: a limit stays until it changes)."""
    held = limit_points(series, frame.x.lo, frame.x.hi)
    if not held:
        return ""
    return (
        f'<polyline points="{_path_points(held, frame, step=True)}" fill="none" stroke="{colour}" '
        'stroke-width="1.25" stroke-dasharray="6 4"/>'
    )


def _bars(series: Series, bars: list[Bar], colour: str, frame: _Frame) -> str:
    parts = [f'<g fill="{colour}">']
    for bar in bars:
        left, right = frame.px(bar.x), frame.px(bar.x + bar.width)
        gap = 1.0 if right - left > 4 else 0.0
        top, bottom = sorted((frame.py(bar.value), frame.py(0.0)))
        tip = f"{series.label}: {frame.x.format(bar.x)}–{frame.x.format(bar.x + bar.width)}: "
        parts.append(
            f'<rect x="{left + gap / 2:.1f}" y="{top:.1f}" width="{max(right - left - gap, 0.6):.1f}" '
            f'height="{max(bottom - top, 0.0):.1f}">'
            f"<title>{_esc(tip + _value_text(bar.value))}</title></rect>"
        )
    parts.append("</g>")
    return "".join(parts)


def _hover_targets(plot: Plot, colours: Sequence[str], frame: _Frame) -> str:
    """Invisible circles with a tooltip on line and step points, thinned to a few hundred at most."""
    curves = [(s, c) for s, c in zip(plot.series, colours, strict=True) if s.style in ("line", "step")]
    total = sum(len(s.points) for s, _ in curves)
    if not total:
        return ""
    stride = math.ceil(total / _MAX_HOVER_TARGETS)
    parts = ['<g class="hover">']
    for series, colour in curves:
        for x, y in clean_points(series)[::stride]:
            tip = f"{series.label}: {frame.x.format(x)} → {_value_text(y)}"
            parts.append(
                f'<circle cx="{frame.px(x):.1f}" cy="{frame.py(y):.1f}" r="5" fill="{colour}" '
                f'fill-opacity="0"><title>{_esc(tip)}</title></circle>'
            )
    parts.append("</g>")
    return "".join(parts)


def _axes(frame: _Frame) -> list[str]:
    parts = ['<g stroke="currentColor" stroke-opacity="0.12">']
    parts += [f'<line x1="{frame.left:.1f}" x2="{frame.right:.1f}" y1="{frame.py(t):.1f}" '
              f'y2="{frame.py(t):.1f}"/>' for t in frame.y.ticks]  # fmt: skip
    parts.append("</g>")
    parts.append(
        f'<line x1="{frame.left:.1f}" x2="{frame.right:.1f}" y1="{frame.bottom:.1f}" y2="{frame.bottom:.1f}" '
        'stroke="currentColor" stroke-opacity="0.45"/>'
    )
    parts.append('<g fill="currentColor" fill-opacity="0.68">')
    for tick, label in zip(frame.y.ticks, frame.y.labels, strict=True):
        parts.append(
            f'<text x="{frame.left - 8:.1f}" y="{frame.py(tick) + 3.5:.1f}" text-anchor="end">{label}</text>'
        )
    for tick, label in zip(frame.x.ticks, frame.x.labels, strict=True):
        x = frame.px(tick)
        parts.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{frame.bottom:.1f}" y2="{frame.bottom + 4:.1f}" '
            'stroke="currentColor" stroke-opacity="0.45"/>'
            f'<text x="{x:.1f}" y="{frame.bottom + 17:.1f}" text-anchor="middle">{label}</text>'
        )
    parts.append("</g>")
    return parts


def _axis_titles(frame: _Frame, plot: Plot) -> list[str]:
    middle_x, middle_y = (frame.left + frame.right) / 2, (frame.top + frame.bottom) / 2
    return [
        f'<g fill="currentColor" fill-opacity="0.85" font-size="12.5">'
        f'<text x="{middle_x:.1f}" y="{_HEIGHT - 6}" text-anchor="middle">{_esc(plot.x_label)}</text>'
        f'<text transform="translate(13 {middle_y:.1f}) rotate(-90)" text-anchor="middle">'
        f"{_esc(plot.y_label)}</text></g>"
    ]


def _wrapped(text: str, width: float, char_width: float) -> list[str]:
    """``text`` in lines of whole words that fit ``width`` (a word longer than a line gets its own)."""
    room = max(1, int(width / char_width))
    lines: list[str] = []
    for word in text.split():
        if lines and len(lines[-1]) + 1 + len(word) <= room:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines or [""]


def _empty(plot: Plot, frame: _Frame) -> list[str]:
    """A dashed frame with the plot's note in it (why there is nothing to draw), wrapped to fit: an
    SVG text does not wrap by itself, and a sentence wider than the frame would be cut off."""
    note = plot.note or "No data to show."
    size, gap = 13, 18
    lines = _wrapped(note, frame.right - frame.left - 24, _CHAR_WIDTH * size / 12)
    middle_x = (frame.left + frame.right) / 2
    first_y = (frame.top + frame.bottom) / 2 + 4 - gap * (len(lines) - 1) / 2
    spans = "".join(
        f'<tspan x="{middle_x:.1f}" y="{first_y + gap * n:.1f}">{_esc(line)}</tspan>'
        for n, line in enumerate(lines)
    )
    return [
        f'<rect x="{frame.left:.1f}" y="{frame.top:.1f}" width="{frame.right - frame.left:.1f}" '
        f'height="{frame.bottom - frame.top:.1f}" fill="none" stroke="currentColor" stroke-opacity="0.25" '
        'stroke-dasharray="3 3" rx="4"/>',
        f'<text class="empty-note" text-anchor="middle" fill="currentColor" fill-opacity="0.7" '
        f'font-size="{size}">{spans}</text>',
    ]


def plot_svg(plot: Plot) -> str:
    """The plot as one ``<svg>`` element (no XML prolog, no namespace: it is meant for an HTML page)."""
    colours = series_colours(plot.series)
    x, y = x_axis(plot), y_axis(plot)
    if plot.empty:
        x = _axis(0.0, 1.0, time=False, target=2, expand=False)
        x = Axis(x.lo, x.hi, (), (), x.format)
        y = Axis(y.lo, y.hi, (), (), y.format)
    left = 26 + max((_text_width(label) for label in y.labels), default=0.0) + 10
    legend_rows = _legend_rows(plot.series, _WIDTH - 16 - left) if plot.series else 0
    frame = _Frame(left, 14.0 + 18 * legend_rows + 4, _WIDTH - 16.0, _HEIGHT - 44.0, x, y)
    parts = [
        f'<svg viewBox="0 0 {_WIDTH} {_HEIGHT}" width="100%" role="img" aria-label="{_esc(plot.title)}" '
        f'class="chart" font-family="{_FONT}" font-size="12">',
        f"<title>{_esc(plot.title)}</title>",
    ]
    if plot.empty:
        parts += _empty(plot, frame)
    else:
        parts += _axes(frame)
        bars = bars_of(plot)
        drawn = zip(plot.series, colours, bars, strict=True)
        for series, colour, its_bars in drawn:
            if series.style == "bars":
                parts.append(_bars(series, its_bars, colour, frame))
        for series, colour in zip(plot.series, colours, strict=True):
            if series.style in ("line", "step"):
                parts.append(_curve(series, colour, frame))
            elif series.style == "limit":
                parts.append(_limit(series, colour, frame))
        parts.append(_hover_targets(plot, colours, frame))
    parts += _axis_titles(frame, plot)
    if plot.series:
        parts.append('<g class="legend" fill="currentColor">')
        parts += _legend(plot.series, colours, frame.left, frame.right)
        parts.append("</g>")
    parts.append("</svg>")
    return "".join(parts)


# --- the reliability diagram ---------------------------------------------------------------------

#: what each mark of the reliability diagram is, for its legend (a bar, a dot on a line, the diagonal)
_RELIABILITY_LEGEND = (
    Series("share right, per bin", (), "bars", "neutral"),
    Series("at the bin's mean confidence", (), "line", "error"),
    Series("perfectly calibrated", (), "limit", "limit"),
)


def reliability_svg(bins: Sequence[ReliabilityBin], title: str) -> str:
    """A reliability diagram as one ``<svg>``: per bin of confidence a bar as high as the share of its
    values that were right, a dot at their mean confidence, and how many values it holds at its foot;
    the dashed diagonal is where confidence and accuracy agree. Both axes run from 0 to 1."""
    unit = _axis(0.0, 1.0, time=False, target=5, expand=True)
    colours = [ROLE_COLOURS[series.role] for series in _RELIABILITY_LEGEND]
    left = 26 + max(_text_width(label) for label in unit.labels) + 10
    rows = _legend_rows(_RELIABILITY_LEGEND, _WIDTH - 16 - left)
    frame = _Frame(left, 14.0 + 18 * rows + 4, _WIDTH - 16.0, _HEIGHT - 44.0, unit, unit)
    parts = [
        f'<svg viewBox="0 0 {_WIDTH} {_HEIGHT}" width="100%" role="img" aria-label="{_esc(title)}" '
        f'class="chart reliability" font-family="{_FONT}" font-size="12">',
        f"<title>{_esc(title)}</title>",
        *_axes(frame),
        f'<g class="bins" fill="{colours[0]}" fill-opacity="0.35">',
    ]
    usable = [b for b in bins if _finite_bin(b)]
    for b in usable:
        x0, x1 = frame.px(b.lo), frame.px(b.hi)
        top = frame.py(b.accuracy)
        tip = (
            f"confidence {b.lo:.1f}–{b.hi:.1f}: {b.count:,} value{'s' if b.count != 1 else ''}, "
            f"mean confidence {b.confidence:.3f}, {b.accuracy:.3f} right"
        )
        parts.append(
            f'<rect x="{x0 + 1:.1f}" y="{top:.1f}" width="{max(x1 - x0 - 2, 0.6):.1f}" '
            f'height="{max(frame.bottom - top, 0.0):.1f}"><title>{_esc(tip)}</title></rect>'
        )
    parts.append("</g>")
    parts.append(
        f'<line x1="{frame.px(0.0):.1f}" y1="{frame.py(0.0):.1f}" x2="{frame.px(1.0):.1f}" '
        f'y2="{frame.py(1.0):.1f}" stroke="{colours[2]}" stroke-width="1.25" stroke-dasharray="6 4"/>'
    )
    dots = [(frame.px(b.confidence), frame.py(b.accuracy)) for b in usable]
    if len(dots) > 1:
        points = " ".join(f"{x:.1f},{y:.1f}" for x, y in dots)
        parts.append(
            f'<polyline points="{points}" fill="none" stroke="{colours[1]}" stroke-width="1.5" '
            'stroke-linejoin="round"/>'
        )
    parts.append(f'<g class="means" fill="{colours[1]}">')
    parts += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5"/>' for x, y in dots]
    parts.append("</g>")
    # Each bin's count at its foot: what its bar stands on (a bin of three values proves little).
    parts.append('<g class="counts" fill="currentColor" fill-opacity="0.8" font-size="10.5">')
    for b in usable:
        middle, count = (frame.px(b.lo) + frame.px(b.hi)) / 2, _count_text(b.count)
        parts.append(f'<text x="{middle:.1f}" y="{frame.bottom - 5:.1f}" text-anchor="middle">{count}</text>')
    parts.append("</g>")
    titles = Plot("reliability", title, "confidence", "share right", ())
    parts += _axis_titles(frame, titles)
    parts.append('<g class="legend" fill="currentColor">')
    parts += _legend(_RELIABILITY_LEGEND, colours, frame.left, frame.right)
    parts.append("</g></svg>")
    return "".join(parts)


def _finite_bin(b: ReliabilityBin) -> bool:
    values = (b.lo, b.hi, b.confidence, b.accuracy)
    return b.count > 0 and all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in values) and b.lo < b.hi


def _count_text(count: int) -> str:
    """A bin's count in the width of a bin: ``1,234``, ``12k``, ``3.4M``."""
    if count < 10_000:
        return f"{count:,}"
    if count < 1_000_000:
        return f"{count / 1000:.0f}k"
    return f"{count / 1e6:.1f}M"
