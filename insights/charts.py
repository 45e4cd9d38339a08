"""SVG geometry for the Reports page, computed here so the page needs no JavaScript. The
template prints it inside {% localize off %}: a German "3,5" would draw nothing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.utils.formats import date_format
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from insights.selectors import DayRow, duration_text

NEW_COLOUR = "#2f5d94"
RESOLVED_COLOUR = "#9db8d9"
BACKLOG_COLOUR = "#b45309"
RESPONSE_COLOUR = "#6d28d9"

# Room left and right of the plot for the day labels: a label is centred under its day, and the
# first day's sits half a step from the edge, less than half its own width ("23 Nov" was "' Nov").
LABEL_MARGIN = 24.0


def _viewbox(width: float, height: float) -> str:
    """The SVG's viewBox: the plot, the margin either side, 6 above and the labels' 22 below."""
    return f"{-LABEL_MARGIN:g} -6 {width + 2 * LABEL_MARGIN:g} {height + 22:g}"


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    colour: str
    title: str


def _ticks(days: list[DayRow], step: float) -> list[tuple[float, str]]:
    every = 1 if len(days) <= 10 else 7 if len(days) <= 45 else 14
    return [
        (round(index * step + step / 2, 2), date_format(row.day, "j M"))
        for index, row in enumerate(days)
        if index % every == 0
    ]


def volume_chart(days: list[DayRow]) -> dict[str, Any]:
    """New and resolved conversations per day side by side, the backlog as a line."""
    width, height = 600.0, 150.0
    step = width / max(len(days), 1)
    bar = max(min(step * 0.38, 14.0), 1.0)
    # The figures as they are (0 for a period without any); the scales never divide by 0.
    peak = max([max(r.new, r.resolved) for r in days] + [0])
    backlog_peak = max([r.backlog for r in days] + [0])
    scale, backlog_scale = peak or 1, backlog_peak or 1
    bars: list[Bar] = []
    points = []
    for index, row in enumerate(days):
        x0 = index * step + (step - 2 * bar) / 2
        label = date_format(row.day, "j M")
        for offset, count, colour, text in (
            (0.0, row.new, NEW_COLOUR, ngettext("%(day)s: %(n)d new", "%(day)s: %(n)d new", row.new)),
            (
                bar,
                row.resolved,
                RESOLVED_COLOUR,
                ngettext("%(day)s: %(n)d resolved", "%(day)s: %(n)d resolved", row.resolved),
            ),
        ):
            h = count / scale * height
            bars.append(
                Bar(
                    round(x0 + offset, 2),
                    round(height - h, 2),
                    round(bar, 2),
                    round(h, 2),
                    colour,
                    text % {"day": label, "n": count},
                )
            )
        points.append(f"{round(index * step + step / 2, 2)},{round(height - row.backlog / backlog_scale * height, 2)}")
    return {
        "width": width,
        "height": height,
        "viewbox": _viewbox(width, height),
        "bars": bars,
        "backlog": " ".join(points),
        "ticks": _ticks(days, step),
        "peak": peak,
        "backlog_peak": backlog_peak,
        "legend": [
            (_("New"), NEW_COLOUR),
            (_("Resolved"), RESOLVED_COLOUR),
            (_("Backlog (open at day's end)"), BACKLOG_COLOUR),
        ],
    }


def response_chart(days: list[DayRow]) -> dict[str, Any]:
    """Median first response per day (bars; a day without customer messages has none)."""
    width, height = 600.0, 110.0
    step = width / max(len(days), 1)
    bar = max(min(step * 0.6, 18.0), 1.0)
    peak = max([r.median_first_response or 0 for r in days] + [1.0])
    bars = []
    for index, row in enumerate(days):
        if row.median_first_response is None:
            continue
        h = row.median_first_response / peak * height
        bars.append(
            Bar(
                round(index * step + (step - bar) / 2, 2),
                round(height - h, 2),
                round(bar, 2),
                round(h, 2),
                RESPONSE_COLOUR,
                _("%(day)s: median first response %(t)s")
                % {"day": date_format(row.day, "j M"), "t": duration_text(row.median_first_response)},
            )
        )
    return {
        "width": width,
        "height": height,
        "viewbox": _viewbox(width, height),
        "bars": bars,
        "ticks": _ticks(days, step),
        "peak": duration_text(peak),
    }


def share(value: float | None, peak: float | None) -> float:
    """A horizontal bar's length in per cent of the row's peak."""
    if not value or not peak:
        return 0.0
    return round(min(value / peak, 1.0) * 100, 1)
