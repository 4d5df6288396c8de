"""Figures: matplotlib without pyplot (a figure class picked once), PNG bytes, shared axis helpers."""

from __future__ import annotations

import functools
import io
from typing import Any

import numpy as np
import pandas as pd

# Drawing order and colours of packet events: the alarming ones last, so they stay visible.
EVENT_COLOURS = {
    "ACK": "#b0b0b0",
    "data": "#1f77b4",
    "SYN": "#2ca02c",
    "SYN-ACK": "#17becf",
    "FIN": "#9467bd",
    "retransmission": "#ff7f0e",
    "RST": "#d62728",
    "other": "#7f7f7f",
}


# Capture points from the client towards the server (sidecar ``point.kind``).
POINT_ORDER = {"pod": 0, "node": 1, "peer": 2}


@functools.cache
def _figure_class():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    class PodcapFigure(Figure):
        """A Figure on the Agg canvas that Jupyter displays as a PNG."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            FigureCanvasAgg(self)

        def _repr_png_(self) -> bytes:
            return figure_png(self)

    return PodcapFigure


def new_figure(width: float = 9.0, height: float = 4.0):
    """An empty :class:`PodcapFigure` of ``width`` x ``height`` inches."""
    return _figure_class()(figsize=(width, height), layout="constrained")


def figure_png(figure, dpi: int = 100) -> bytes:
    """The figure as PNG bytes (rendered by Agg)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def _integer_ticks(axis) -> None:
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))


def _column(table: pd.DataFrame, name: str, default: Any) -> np.ndarray:
    if name in table:
        return table[name].to_numpy()
    return np.full(len(table), default)
