"""Markdown tables and cells for the run report (`analysis.report`) and the sweep report
(`analysis.sweep`): one renderer, so both print a number, a missing value and a `|` alike.

`markdown_table` renders a frame rather than `DataFrame.to_markdown`, which needs the
optional `tabulate` package: twenty lines here avoid a dependency and let each column carry
its own number format (contributions need four decimals, USD two, counts none). Values are
shown as they are given (display units: USD, percent, rho); nothing here converts units.
"""

from __future__ import annotations

from collections.abc import Mapping
from numbers import Integral, Real
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["MISSING", "cell", "escape", "markdown_table"]

#: How a table or sentence shows a value that is missing or undefined (None, NaN).
MISSING = "n/a"


def markdown_table(frame: pd.DataFrame, formats: Mapping[str, str] | None = None,
                   default_format: str = ",.2f") -> str:
    """A GitHub-flavoured Markdown table of `frame` (index left out).

    Floats use `formats[column]` (a `format()` spec) or `default_format`; integers are
    printed whole, booleans as yes/no, NaN or None as `n/a`. Numeric columns are
    right-aligned. `|` inside text is escaped so that it cannot break the table.
    """
    formats = formats or {}
    columns = [str(c) for c in frame.columns]
    numeric = [pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(
        frame[c]) for c in frame.columns]
    lines = [
        "| " + " | ".join(escape(c) for c in columns) + " |",
        "| " + " | ".join("---:" if n else "---" for n in numeric) + " |",
    ]
    for row in frame.itertuples(index=False, name=None):
        cells = [cell(v, formats.get(c, default_format)) for c, v in zip(columns, row,
                                                                         strict=True)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cell(value: Any, spec: str) -> str:
    """One value as a table cell: `MISSING` for None or NaN, yes/no for a boolean, an integer
    whole, any other number with the `format()` spec `spec`, text escaped (`escape`)."""
    if value is None or (not isinstance(value, str) and bool(pd.isna(value))):
        return MISSING
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, Integral):
        return str(int(value))
    if isinstance(value, Real):
        return format(float(value), spec)
    return escape(str(value))


def escape(text: str) -> str:
    """`text` safe inside a table cell: `|` escaped, line breaks turned into spaces."""
    return text.replace("|", "\\|").replace("\n", " ")
