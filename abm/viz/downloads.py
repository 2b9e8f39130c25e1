"""What the browser app lets a user take home: the run's tables and the scenario that ran.

`table_bytes(model, name, fmt)` serialises one of the run tables (`abm.run.tables`: the same
columns and dtypes as a run folder's `<name>.parquet`) as Parquet or CSV, and
`scenario_yaml(model)` the resolved scenario the session's model runs (the file with the
controls' values applied) as a YAML scenario file that `wsf run` accepts, so that what was
explored in the browser can be re-run: `wsf run FILE --steps N` writes the same tables as
the downloads after N steps.
"""

from __future__ import annotations

import io
import threading
from typing import Any

import yaml

from abm.run import tables

#: Tables offered for download (run folder names) and formats.
TABLES = ("model", "agents", "rounds", "events")
FORMATS = ("parquet", "csv")
MIME = {"parquet": "application/vnd.apache.parquet", "csv": "text/csv",
        "yaml": "application/yaml"}


def _locked(model: Any) -> Any:
    """The model's step lock (`VizModel.lock`), or a fresh one for other models: a download
    must not read the tables halfway through a step of the play loop."""
    return getattr(model, "lock", None) or threading.Lock()


def table_bytes(model: Any, name: str, fmt: str) -> bytes:
    """Table `name` (one of `TABLES`) of `model` so far, as Parquet or CSV bytes (`FORMATS`).

    Row counts: `model` steps + 1 (genesis is row 0); `agents` one row per agent per
    collected step; `rounds` one row per client per round; `events` one per event.
    """
    if name not in TABLES or fmt not in FORMATS:
        raise ValueError(f"no download {name}.{fmt}: tables {TABLES}, formats {FORMATS}")
    with _locked(model):
        frame = tables(model)[name]
    buffer = io.BytesIO()
    if fmt == "parquet":
        frame.to_parquet(buffer, index=False)
    else:
        frame.to_csv(buffer, index=False)
    return buffer.getvalue()


def scenario_yaml(model: Any, *, source: str = "", controls: str = "") -> str:
    """The scenario `model` runs, resolved (every default filled in), as a scenario file.

    The header says where it came from and how to reproduce the browser's run; the body is
    `Scenario.to_dict()`, which `load_scenario` accepts as it stands.
    """
    config = model.config
    header = [
        f"# Scenario {config.name!r} as run in the browser app (wsf viz), every default "
        f"filled in.",
        *([f"# From {source}"] if source else []),
        *([f"# Controls: {controls}"] if controls else []),
        f"# Reproduce the browser's tables after N steps: wsf run THIS_FILE --steps N "
        f"(the whole run: {config.steps} steps).",
    ]
    body = yaml.safe_dump(config.to_dict(), sort_keys=False, allow_unicode=True)
    return "\n".join(header) + "\n" + body
