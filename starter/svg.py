"""Small inline-SVG primitives for the dashboard: no plotting library, no network.

Every piece of text and every attribute value goes through ``html.escape``, so a
cohort label or a scenario name can never break out of the markup.
"""

from __future__ import annotations

import math
from html import escape

FONT = "'Hiragino Sans','Hiragino Kaku Gothic ProN','Noto Sans CJK JP','IPAGothic','Yu Gothic',Meiryo,sans-serif"
INK, MUTED, GRID = "#1f2933", "#616e7c", "#e4e7eb"


def _attrs(attributes: dict[str, object]) -> str:
    return "".join(
        f' {name.rstrip("_").replace("_", "-")}="{escape(str(value), quote=True)}"'
        for name, value in attributes.items() if value is not None
    )


class Canvas:
    """One ``<svg>`` element, drawn into in user units (pixels at 100 %)."""

    def __init__(self, width: int, height: int, label: str) -> None:
        self.width, self.height, self.label = width, height, label
        self._defs: list[str] = []
        self._parts: list[str] = []

    def add(self, tag: str, content: str | None = None, **attributes: object) -> None:
        if content is None:
            self._parts.append(f"<{tag}{_attrs(attributes)}/>")
        else:
            self._parts.append(f"<{tag}{_attrs(attributes)}>{escape(content)}</{tag}>")

    def rect(self, x: float, y: float, w: float, h: float, fill: str, **extra: object) -> None:
        self.add("rect", x=_n(x), y=_n(y), width=_n(max(w, 0)), height=_n(max(h, 0)), fill=fill, **extra)

    def line(self, x1: float, y1: float, x2: float, y2: float, stroke: str = GRID, width: float = 1,
             **extra: object) -> None:
        self.add("line", x1=_n(x1), y1=_n(y1), x2=_n(x2), y2=_n(y2), stroke=stroke, stroke_width=width, **extra)

    def text(self, x: float, y: float, content: str, *, size: int = 12, fill: str = INK,
             anchor: str = "start", weight: str | None = None, baseline: str = "middle") -> None:
        self.add("text", content, x=_n(x), y=_n(y), font_size=size, fill=fill, text_anchor=anchor,
                 font_weight=weight, dominant_baseline=baseline)

    def polyline(self, points: list[tuple[float, float]], stroke: str, width: float = 2) -> None:
        self.add("polyline", points=" ".join(f"{_n(x)},{_n(y)}" for x, y in points), fill="none",
                 stroke=stroke, stroke_width=width, stroke_linejoin="round", stroke_linecap="round")

    def circle(self, x: float, y: float, r: float, fill: str, **extra: object) -> None:
        self.add("circle", cx=_n(x), cy=_n(y), r=_n(r), fill=fill, **extra)

    def gradient(self, gradient_id: str, stops: list[tuple[float, str]]) -> str:
        """A left-to-right linear gradient; returns the ``fill`` that uses it."""
        inner = "".join(f'<stop offset="{_n(o * 100)}%" stop-color="{escape(c, quote=True)}"/>' for o, c in stops)
        self._defs.append(f'<linearGradient id="{escape(gradient_id, quote=True)}">{inner}</linearGradient>')
        return f"url(#{gradient_id})"

    def render(self) -> str:
        defs = f"<defs>{''.join(self._defs)}</defs>" if self._defs else ""
        return (
            # Inline in HTML the parser puts <svg> in the SVG namespace: no xmlns (and no URL) needed.
            f'<svg viewBox="0 0 {self.width} {self.height}"'
            f' width="{self.width}" height="{self.height}" role="img" aria-label="{escape(self.label, quote=True)}"'
            f' font-family="{escape(FONT, quote=True)}"><title>{escape(self.label)}</title>'
            f"{defs}{''.join(self._parts)}</svg>"
        )


def _n(value: float) -> str:
    """Coordinates with at most one decimal: small files, no float noise."""
    return f"{value:.1f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high] (1, 2, 2.5, 5 × 10ⁿ steps)."""
    if high <= low:
        high = low + 1
    raw = (high - low) / max(count, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.floor(low / step) * step
    ticks, tick = [], first
    while tick < high + step * 0.999:
        ticks.append(round(tick, 10))
        tick += step
    return ticks


# --- colour --------------------------------------------------------------------------------

# A perceptually even blue ramp (ColorBrewer "Blues"), light for 0 % to dark for 100 %.
BLUES = ("#f7fbff", "#deebf7", "#c6dbef", "#9ecae1", "#6baed6", "#4292c6", "#2171b5", "#08519c", "#08306b")
# Okabe–Ito and friends: distinguishable for colour-blind readers.
CATEGORICAL = ("#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#7f7f7f", "#f0e442",
               "#332288", "#117733", "#882255", "#44aa99", "#999933", "#aa4499", "#6699cc")


def ramp(value: float, colours: tuple[str, ...] = BLUES) -> str:
    """The colour of ``value`` in [0, 1] on a piecewise-linear ramp."""
    value = min(max(value, 0.0), 1.0) * (len(colours) - 1)
    low = int(math.floor(value))
    if low >= len(colours) - 1:
        return colours[-1]
    a, b, t = _rgb(colours[low]), _rgb(colours[low + 1]), value - low
    return "#" + "".join(f"{round(x + (y - x) * t):02x}" for x, y in zip(a, b))


def readable_on(fill: str) -> str:
    """Dark or white text, whichever reads better on ``fill``."""
    r, g, b = _rgb(fill)
    return INK if 0.299 * r + 0.587 * g + 0.114 * b > 150 else "#ffffff"


def _rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)
