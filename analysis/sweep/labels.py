"""How a sweep's runs are labelled in its tables: one column per grid key or design
parameter, one cell per value.

Read from the resolved spec in `sweep.yaml` (`abm.sweep.store.read_spec`), by
`analysis.sweep.loading` when it builds the combined tables. The sweep store never needs
these: a run is stored under its `run_id` with its raw `params`, and the labels are only
how the analysis shows those params. Cells are the values as written in the sweep file
(display units: a budget in USD, a fee in basis points), or a value's name.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from abm.sweep.spec import canonical_json, grid_items

__all__ = ["design_cells", "label_names", "param_cell", "param_columns", "sweep_parameters"]


def param_columns(grid: dict[str, list[Any] | dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Table cell for every grid label, per grid key: {key: {canonical JSON of label: cell}}.

    `grid` is as written in the sweep file (values, or {label: value}). Named values are shown
    by their label. Plain scalars stay as they are when a key's values share one kind
    (numbers, strings or booleans), so numeric parameters can be plotted on an axis; lists
    and mappings and mixed kinds become text, JSON for structures.
    """
    columns: dict[str, dict[str, Any]] = {}
    for key, values in grid.items():
        labels = [label for label, _ in grid_items(values)]
        kinds = {_kind(label) for label in labels}
        keep = len(kinds) == 1 and kinds <= {"number", "string", "bool"}
        as_float = kinds == {"number"} and any(isinstance(label, float) for label in labels)
        cells: dict[str, Any] = {}
        for label in labels:
            if keep:
                cell = float(label) if as_float else label
            else:
                cell = label if isinstance(label, str) else canonical_json(label)
            cells[canonical_json(label)] = cell
        columns[key] = cells
    return columns


def sweep_parameters(spec: dict[str, Any]) -> list[str]:
    """The parameters that tell a stored sweep's runs apart: grid keys, or the design's
    parameters (`spec` is `read_spec`'s record), in file order."""
    design = spec.get("design")
    if design:
        return list(design.get("parameters") or {})
    return list(spec.get("grid") or {})


def param_cell(spec: dict[str, Any], cells: dict[str, dict[str, Any]], key: str,
               label: Any) -> Any:
    """Table cell of one run's `label` for parameter `key`; `cells` is `param_columns` of the
    grid (or of the design's categoricals). A design's numeric values are their own cells."""
    design = spec.get("design")
    if design and (design["parameters"][key].get("kind") != "categorical"):
        return label
    return cells[key][canonical_json(label)]


def design_cells(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """`param_columns` of a stored grid, or of a stored design's categorical parameters."""
    design = spec.get("design")
    if not design:
        return param_columns(spec.get("grid") or {})
    return param_columns({key: list(p["labels"]) for key, p in design["parameters"].items()
                          if p.get("kind") == "categorical"})


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "structure"


def label_names(keys: Iterable[str], taken: set[str]) -> dict[str, str]:
    """Column name of each grid key in result tables: its dotted path, or `grid:<path>` when
    a table already has a column of that name (say, a grid over the `contribution` section
    next to the per-client `contribution` column)."""
    return {key: f"grid:{key}" if key in taken else key for key in keys}
