"""The run's long (tidy) tables, derived from the model table: one row per entity per step.

`model.parquet` keeps one wide row per step (`price/c00`, ..., `wealth/client`, ...) for its
existing readers. The long forms beside it are what pandas and seaborn users reshape it into,
without the traps of reshaping by column name (`wealth/client` is not a token):

- `tokens.parquet` (`tokens_table`): one row per token per step: `step`, `client`, `price`
  (USD per token), `supply` (tokens), `reserve_token` (tokens) and `reserve_usd` (USD) of its
  pool, `volume_usd` and `fees_usd` traded and earned by the pool that step.
- `wealth.parquet` (`wealth_table`): one row per holder type per step: `step`, `agent_type`,
  `wealth` (at spot) and `wealth_if_sold` (USD, summed over the type's agents).

Text columns are pandas categoricals (clients in the model's order, holder types in
`AGENT_TYPES` order), as in the agents table.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

from abm.collect import AGENT_TYPES

#: Per-token columns of `tokens.parquet`, each read from the model table's `<name>/<client>`.
TOKEN_COLUMNS = ("price", "supply", "reserve_token", "reserve_usd", "volume_usd", "fees_usd")
#: Per-holder-type columns of `wealth.parquet`, each from the model table's `<name>/<type>`.
WEALTH_COLUMNS = ("wealth", "wealth_if_sold")
#: The long tables a run folder holds besides the run's own, by file stem.
LONG_TABLES = ("tokens", "wealth")
_CLIENT = re.compile(r"^price/(.+)$")


def clients_of(model: pd.DataFrame) -> list[str]:
    """The client (token) ids of a model table, in its column order (from `price/<client>`)."""
    return [m.group(1) for m in map(_CLIENT.match, model.columns) if m]


def _long(model: pd.DataFrame, keys: Sequence[str], columns: Sequence[str], key_name: str,
          categories: Sequence[str]) -> pd.DataFrame:
    steps = model["step"].to_numpy(dtype=np.int64)
    n, k = len(steps), len(keys)
    data: dict[str, object] = {
        "step": np.repeat(steps, k),
        key_name: pd.Categorical(np.tile(np.asarray(keys, dtype=object), n),
                                 categories=list(categories)),
    }
    for column in columns:
        names = [f"{column}/{key}" for key in keys]
        if all(name in model for name in names):
            data[column] = model[names].to_numpy(dtype=np.float64).reshape(n * k)
        else:  # a table written before the column existed
            data[column] = np.full(n * k, np.nan)
    return pd.DataFrame(data)


def tokens_table(model: pd.DataFrame) -> pd.DataFrame:
    """`tokens.parquet`: one row per token per step, sorted by step then client."""
    clients = clients_of(model)
    return _long(model, clients, TOKEN_COLUMNS, "client", clients)


def wealth_table(model: pd.DataFrame) -> pd.DataFrame:
    """`wealth.parquet`: one row per holder type per step, sorted by step then type."""
    present = [t for t in AGENT_TYPES if f"wealth/{t}" in model]
    return _long(model, present, WEALTH_COLUMNS, "agent_type", AGENT_TYPES)


def long_tables(model: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Every long table of a model table, by file stem (`LONG_TABLES`)."""
    return {"tokens": tokens_table(model), "wealth": wealth_table(model)}
