"""Reading a run folder written by `abm.run_folder.write_run` into one `Run` object.

A run folder holds `config.yaml` (the resolved scenario, plus `seed` and `versions`),
`model.parquet` (one row per step), `agents.parquet` (one row per agent per step),
`rounds.parquet` (one row per client per FL round) and `summary.json`. Every table value is a
display-unit float (`1.0` == one USD, or one token); see docs/architecture.md for the schemas.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from abm.scenario import ScenarioError, read_yaml

CONFIG_FILE = "config.yaml"
MODEL_FILE = "model.parquet"
AGENTS_FILE = "agents.parquet"
ROUNDS_FILE = "rounds.parquet"
SUMMARY_FILE = "summary.json"
RUN_FILES = (CONFIG_FILE, MODEL_FILE, AGENTS_FILE, ROUNDS_FILE, SUMMARY_FILE)

# The columns this package reads. The tables hold more (see docs/architecture.md); only a
# missing column that analysis needs is refused, so that an extra or renamed column the
# analysis never touches does not make a finished run unreadable.
MODEL_COLUMNS = ("step", "accuracy", "reward_usd", "execution_cost_usd")
AGENTS_COLUMNS = (
    "step", "agent_id", "agent_type", "strategy", "client", "usd", "token_value",
    "lp_value", "wealth", "wealth_if_sold", "fees_earned", "hodl_value",
)
ROUNDS_COLUMNS = ("round", "step", "client", "behaviour", "contribution", "reward_usd")
PRICE_PREFIX = "price/"
#: summary.json holds headline figures and one entry per client: well under a megabyte.
MAX_SUMMARY_BYTES = 16 << 20


class RunFolderError(ValueError):
    """The folder is not a readable run folder; the message names the file and what is wrong."""


@dataclass(frozen=True, eq=False)
class Run:
    """One finished simulation run, as read from its folder.

    `model` has one row per step (step 0 is genesis), `agents` one row per agent per step,
    `rounds` one row per client per FL round; all money columns are USD display-unit floats.
    `config` is the resolved scenario (dict from `config.yaml`), `summary` the dict from
    `summary.json`.
    """

    path: Path
    config: dict[str, Any]
    model: pd.DataFrame
    agents: pd.DataFrame
    rounds: pd.DataFrame
    summary: dict[str, Any]

    @property
    def client_ids(self) -> list[str]:
        """Client ids in table order, from the per-client `price/<k>` columns of `model`."""
        return [c[len(PRICE_PREFIX):] for c in self.model.columns if c.startswith(PRICE_PREFIX)]

    @property
    def name(self) -> str:
        """Scenario name: from `summary.json` (`scenario` or `name`), else `config.yaml`
        (`name`), else the folder name."""
        for source, key in ((self.summary, "scenario"), (self.summary, "name"),
                            (self.config, "name")):
            value = source.get(key)
            if isinstance(value, str) and value:
                return value
        return self.path.name

    @property
    def seed(self) -> int | None:
        """The run's seed (`config.yaml` `seed`, else `summary.json` `seed`)."""
        value = self.config.get("seed", self.summary.get("seed"))
        return None if value is None else int(value)

    @property
    def steps(self) -> int:
        """Number of simulated steps (the last step index; step 0 is genesis)."""
        return int(self.model["step"].max()) if len(self.model) else 0

    @property
    def n_rounds(self) -> int:
        """Number of FL rounds in `rounds.parquet`."""
        return int(self.rounds["round"].nunique())

    @property
    def policy(self) -> str:
        """Distribution policy: `config.yaml` `rewards.policy`, else the `policy` column of
        `rounds.parquet`, else `"unknown"`."""
        rewards = self.config.get("rewards")
        if isinstance(rewards, dict) and isinstance(rewards.get("policy"), str):
            return rewards["policy"]
        if "policy" in self.rounds.columns and len(self.rounds):
            return ",".join(sorted(str(p) for p in self.rounds["policy"].unique()))
        return "unknown"


def run_from_result(result: Any, path: str | Path = ".") -> Run:
    """A `Run` of an in-memory `abm.run.RunResult` (its tables, config and summary, as a run
    folder would hold them), for analysis without writing the folder; `path` names it."""
    return Run(path=Path(path), config=result.config, model=result.model,
               agents=result.agents, rounds=result.rounds, summary=result.summary)


def load_run(run_dir: str | Path) -> Run:
    """Read a run folder into a `Run`.

    Raises `RunFolderError` (a `ValueError`) naming the file when the folder does not exist,
    a run file is missing or unreadable, or a table lacks a column that analysis needs.
    """
    path = Path(run_dir)
    if not path.is_dir():
        raise RunFolderError(f"{path}: not a run folder (no such directory)")
    missing = [name for name in RUN_FILES if not (path / name).is_file()]
    if missing:
        raise RunFolderError(
            f"{path}: not a run folder: missing {', '.join(missing)} "
            f"(a run folder holds {', '.join(RUN_FILES)})"
        )
    config = _read_mapping(path / CONFIG_FILE, _load_yaml)
    summary = _read_mapping(path / SUMMARY_FILE, _load_json)
    model = _read_table(path / MODEL_FILE, MODEL_COLUMNS)
    agents = _read_table(path / AGENTS_FILE, AGENTS_COLUMNS)
    rounds = _read_table(path / ROUNDS_FILE, ROUNDS_COLUMNS)
    for name, frame in ((MODEL_FILE, model), (AGENTS_FILE, agents), (ROUNDS_FILE, rounds)):
        _check_table(path / name, frame)
    if not any(c.startswith(PRICE_PREFIX) for c in model.columns):
        raise RunFolderError(f"{path / MODEL_FILE}: no per-client '{PRICE_PREFIX}<k>' columns")
    return Run(path=path, config=config, model=model, agents=agents, rounds=rounds,
               summary=summary)


def _load_yaml(file: Path) -> Any:
    # The scenario loader: run folders are data, never code, and a hostile config.yaml (an
    # alias bomb, deep nesting) is refused in bounded time and memory.
    try:
        return read_yaml(file, kind="run config")
    except ScenarioError as exc:
        raise RunFolderError(str(exc)) from None


def _load_json(file: Path) -> Any:
    if file.stat().st_size > MAX_SUMMARY_BYTES:
        raise RunFolderError(f"{file}: larger than {MAX_SUMMARY_BYTES >> 20} MiB, not a summary")
    return json.loads(file.read_text(encoding="utf-8"))


def _read_mapping(file: Path, parse: Any) -> dict[str, Any]:
    try:
        data = parse(file)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise RunFolderError(f"{file}: unreadable ({str(exc)[:200]})") from None
    if not isinstance(data, dict):
        raise RunFolderError(f"{file}: expected a mapping at the top level, "
                             f"got {type(data).__name__}")
    return data


#: Columns of the run tables that hold labels; every other column analysis reads is a number.
LABEL_COLUMNS = frozenset({"agent_type", "strategy", "client", "behaviour"})


def _check_table(file: Path, frame: pd.DataFrame) -> None:
    """The table as `abm.run_folder.write_run` wrote it: rows in the model and agents tables (a
    run records step 0; a run without a round has an empty rounds table), and every column
    analysis reads that holds numbers numeric (bool, int or float) and finite. Raises
    RunFolderError naming the file, the column and the first bad row."""
    if frame.empty and file.name != ROUNDS_FILE:
        raise RunFolderError(f"{file}: the table has no rows (a run writes at least one); "
                             "the run folder is damaged")
    for column in (*MODEL_COLUMNS, *AGENTS_COLUMNS, *ROUNDS_COLUMNS):
        if column in LABEL_COLUMNS or column not in frame.columns:
            continue
        values = frame[column]
        if not (pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values)):
            raise RunFolderError(f"{file}: column '{column}' holds {values.dtype} values "
                                 "where numbers are expected; the run folder is damaged")
        bad = ~np.isfinite(values.to_numpy(dtype=float, na_value=np.nan))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise RunFolderError(f"{file}: column '{column}' = {float(values.iloc[row])} in row "
                                 f"{row}: not a finite number (allowed: finite numbers); "
                                 "the run folder is damaged")


def _read_table(file: Path, required: tuple[str, ...]) -> pd.DataFrame:
    try:
        frame = pd.read_parquet(file)
    except (OSError, ValueError) as exc:  # pyarrow's errors derive from these
        raise RunFolderError(f"{file}: unreadable Parquet table ({exc})") from exc
    absent = [c for c in required if c not in frame.columns]
    if absent:
        raise RunFolderError(f"{file}: missing column(s) {', '.join(absent)}")
    return frame
