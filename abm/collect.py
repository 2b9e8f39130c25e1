"""The agents' marks as columns, and the agents table built from them.

Every step the model values every agent once (exact integers, as `Market.mark_accounts`'
one pass over the ledger's books gives them; kept up to date by a `MarkBook`, which
recomputes only the holdings whose pool or balances changed since the previous step) and
keeps the results as float64 columns (USD display units, one entry per agent in
`unique_id` order), which the agents read back as attributes (`Trader.wealth`, ...), the
model sums by holder type for `model.parquet`, and `AgentTable` copies, at the collected
steps, as the rows of `agents.parquet`. No Python work per agent per step beyond the exact
valuation of its holdings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from abm.agents.orders import ORDER_COLUMNS, OrderRecord
from abm.amm import ONE
from abm.amm.market import MarkBook, Marks

if TYPE_CHECKING:
    from abm.agents.trader import Trader
    from abm.amm import Market

#: The agent types, in the order of `agents.parquet`'s `agent_type` categories.
AGENT_TYPES = ("client", "investor", "lp", "federation")
#: How each agent (holder) type is named in legends, and its one colour: the browser app's
#: charts and the run and sweep reports' figures all read these, so a type looks the same
#: everywhere (matplotlib's tab10 blue, red, green, purple).
AGENT_TYPE_LABELS = {"client": "clients", "investor": "investors", "lp": "liquidity providers",
                     "federation": "federation"}
AGENT_TYPE_COLOURS = {"client": "#1f77b4", "investor": "#d62728", "lp": "#2ca02c",
                      "federation": "#9467bd"}
#: Number columns of `agents.parquet`, in table order: floats in USD display units, then
#: the cumulative order counters (`abm.agents.orders.ORDER_COLUMNS`: two int counts, two
#: USD sums).
VALUE_COLUMNS = ("usd", "token_value", "lp_value", "wealth", "wealth_if_sold", "fees_earned",
                 "hodl_value", "zapped_usd", *ORDER_COLUMNS)
#: Columns of `VALUE_COLUMNS` that hold counts (int64 in the table).
COUNT_COLUMNS = ("orders", "orders_cut")
#: Text columns of `agents.parquet`, stored as pandas categoricals.
LABEL_COLUMNS = ("agent_type", "strategy", "client")
#: Columns of agents.parquet besides `step` and `agent_id` (docs/architecture.md).
AGENT_COLUMNS = (*LABEL_COLUMNS, *VALUE_COLUMNS)
#: Columns whose values live in `AgentMarks` (read and written through the agents'
#: attributes); `hodl_value` and `zapped_usd` are the liquidity providers' own attributes.
MARKED = VALUE_COLUMNS[:6]
_LP_ONLY = VALUE_COLUMNS[6:8]


def _floats(units: list[int], before: list[int], floats: list[float]) -> list[float]:
    """Exact ints (base units) -> display units, each correctly rounded (the true division
    of Python ints; 18-decimal amounts overflow int64), reusing `floats[i]` where
    `units[i]` equals `before[i]`, the ints `floats` came from: a large int's correctly
    rounded division costs several times a comparison, and most agents' cash and LP
    shares do not change in a step."""
    return [f if u == b else u / ONE for u, b, f in zip(units, before, floats, strict=True)]


class AgentMarks:
    """The agents' valuations this step, one float64 array per column of `MARKED`.

    `agents` are the model's agents; they are kept in `unique_id` order and each learns its
    row (`Trader.mark_row`). `rows_of(kind)` are the rows of one agent type. `orders` holds
    every agent's cumulative order counters by row (`abm.agents.orders.OrderRecord`).
    """

    def __init__(self, agents: Sequence[Trader]) -> None:
        self.agents = sorted(agents, key=lambda a: a.unique_id)
        n = len(self.agents)
        self.ids = np.array([a.unique_id for a in self.agents], dtype=np.int64)
        self.accounts = [a.account for a in self.agents]
        self.labels = {
            "agent_type": np.array([a.agent_type for a in self.agents], dtype=object),
            "strategy": np.array([a.strategy for a in self.agents], dtype=object),
            "client": np.array([a.client for a in self.agents], dtype=object),
        }
        self.values = {c: np.zeros(n) for c in MARKED}
        self.orders = OrderRecord(n)
        #: Per valued column, the exact ints of the latest `mark` and their floats.
        self._last: dict[str, tuple[list[int], list[float]]] = {
            c: ([0] * n, [0.0] * n) for c in MARKED[:5]}
        self._lps = [(i, a) for i, a in enumerate(self.agents) if a.agent_type == "lp"]
        self._type_rows = {t: np.flatnonzero(self.labels["agent_type"] == t)
                           for t in AGENT_TYPES}
        self._rows = {account: i for i, account in enumerate(self.accounts)}
        #: Per pool, `accrue_fees`' inputs and its rows and coefficients for them.
        self._fee_rows: dict[str, tuple[int, dict[str, int], np.ndarray, np.ndarray]] = {}
        for i, agent in enumerate(self.agents):
            agent.mark_row = i
        #: The marks kept up to date between steps (`abm.amm.market.MarkBook`), made at the first
        #: `mark`.
        self._book: MarkBook | None = None

    def __len__(self) -> int:
        return len(self.agents)

    def mark(self, market: Market) -> None:
        """Value every agent at the market's current state (spot and if sold)."""
        m = self.valuations(market)
        wealth = [a + b + c for a, b, c in zip(m.usd, m.tokens, m.lp, strict=True)]
        for column, units in (("usd", m.usd), ("token_value", m.tokens), ("lp_value", m.lp),
                              ("wealth", wealth), ("wealth_if_sold", m.if_sold)):
            floats = _floats(units, *self._last[column])
            self.values[column][:] = floats
            self._last[column] = (units, floats)

    def valuations(self, market: Market) -> Marks:
        """Every agent's exact marks (`Market.mark_accounts`), by a `MarkBook` that
        recomputes only what changed since the previous step."""
        book = self._book
        if book is None or book.market is not market:
            book = self._book = MarkBook(market, self.accounts)
        return book.mark()

    def valuations_reference(self, market: Market) -> Marks:
        """`valuations` by one full pass over the ledger (`Market.mark_accounts`): the
        reference the incremental marks are tested against (`tests/test_fast_paths.py`)."""
        return market.mark_accounts(self.accounts)

    def total(self, column: str, kind: str) -> float:
        """Sum of `column` over the agents of type `kind`, added one by one in `unique_id`
        order (a cumulative sum: the same float as a loop over the agents would give)."""
        rows = self._type_rows[kind]
        return float(np.cumsum(self.values[column][rows])[-1]) if len(rows) else 0.0

    def accrue_fees(self, holders: Mapping[str, int], total_shares: int, fees: float,
                    pool: str | None = None) -> None:
        """Add `fees` (USD) pro rata to the agents among `holders` (account -> LP shares of
        one pool, base units; `total_shares` the pool's, locked ones included). With `pool`
        (its name), the rows and coefficients are kept until its holders or total change
        (a liquidity provider's shares move only when it deposits or withdraws)."""
        kept = self._fee_rows.get(pool) if pool is not None else None
        if kept is None or kept[0] != total_shares or kept[1] != holders:
            idx, coef = [], []
            for account, shares in holders.items():
                i = self._rows.get(account)
                if i is not None:
                    idx.append(i)
                    coef.append(shares / total_shares)  # exact int division, correctly rounded
            kept = (total_shares, dict(holders), np.array(idx, dtype=np.intp), np.array(coef))
            if pool is not None:
                self._fee_rows[pool] = kept
        if len(kept[2]):
            self.values["fees_earned"][kept[2]] += kept[3] * fees

    def row_values(self) -> np.ndarray:
        """This step's `VALUE_COLUMNS`, an (agents, 12) float64 array (a copy; the counts
        are exact in float64 below 2^53)."""
        out = np.empty((len(self.agents), len(VALUE_COLUMNS)))
        for j, column in enumerate(MARKED):
            out[:, j] = self.values[column]
        for j, column in enumerate(_LP_ONLY, start=len(MARKED)):
            out[:, j] = 0.0
            for i, lp in self._lps:
                out[i, j] = getattr(lp, column)
        start = len(MARKED) + len(_LP_ONLY)
        for j, values in enumerate(self.orders.columns(), start=start):
            out[:, j] = values
        return out


class AgentTable:
    """The rows of `agents.parquet`, one block per collected step: every agent's labels
    and `VALUE_COLUMNS` (`AgentMarks.row_values`) at that step."""

    def __init__(self) -> None:
        self._blocks: list[tuple[int, AgentMarks, np.ndarray]] = []
        #: Each block's `strategy` labels as they were when it was collected (investors who
        #: switch strategies change them; `AgentMarks.labels` then gets a new array).
        self._strategies: list[np.ndarray] = []

    def __len__(self) -> int:
        return sum(len(marks) for _, marks, _ in self._blocks)

    @property
    def steps(self) -> list[int]:
        """The collected steps, in order."""
        return [step for step, _, _ in self._blocks]

    def collect(self, step: int, marks: AgentMarks) -> None:
        self._blocks.append((step, marks, marks.row_values()))
        self._strategies.append(marks.labels["strategy"])

    def dataframe(self) -> pd.DataFrame:
        """`step, agent_id, agent_type, strategy, client, <VALUE_COLUMNS>`, sorted by step
        then agent id; the three label columns are categoricals (`agent_type`'s categories
        are `AGENT_TYPES`, the others' their sorted values)."""
        if not self._blocks:
            return pd.DataFrame({c: pd.Series(dtype="int64") for c in ("step", "agent_id")}
                                | {c: pd.Series(dtype="category") for c in LABEL_COLUMNS}
                                | {c: pd.Series(dtype="int64" if c in COUNT_COLUMNS
                                                 else "float64") for c in VALUE_COLUMNS})
        sizes = [len(marks) for _, marks, _ in self._blocks]
        data: dict[str, Any] = {
            "step": np.repeat(np.array(self.steps, dtype=np.int64), sizes),
            "agent_id": np.concatenate([marks.ids for _, marks, _ in self._blocks]),
        }
        for column in LABEL_COLUMNS:
            labels = np.concatenate(self._strategies if column == "strategy" else
                                    [marks.labels[column] for _, marks, _ in self._blocks])
            categories = (list(AGENT_TYPES) if column == "agent_type"
                          else sorted(set(labels.tolist())))
            data[column] = pd.Categorical(labels, categories=categories)
        values = np.concatenate([v for _, _, v in self._blocks])
        for j, column in enumerate(VALUE_COLUMNS):
            data[column] = (values[:, j].astype(np.int64) if column in COUNT_COLUMNS
                            else values[:, j])
        return pd.DataFrame(data)
