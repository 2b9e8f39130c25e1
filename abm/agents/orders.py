"""Orders on record: what every market agent asked, what it got done, and what each guard cut
(docs/model.md, 7.12).

An agent's order passes its limits in a fixed order before it reaches a pool, and each limit
may shrink it:

1. `cash`: what the agent can pay with. For a buy, an investor's `max_trade` share of its USD
   and its USD balance; for a sale, the tokens it holds.
2. `position`: an investor's `max_position` share of its wealth in one token (buys only).
3. `dilution`: the new tokens a client may still issue (`issuance.dilution_limit`; an
   offering of new tokens and the sales that fund training costs).
4. `slippage`: the trade guard, the price-impact cap `R_in s / (1 - s)`, and the pool
   refusing a fill below the minimum out (then nothing is done).

An order that a limit leaves below `DUST` (0.01 USD or token) is not swapped: the limit that
made it so is charged with the whole remainder. Orders asked below `DUST` are not orders (the
strategy asked for nothing worth a swap) and are not recorded. So, exactly, in the order's
base units: `asked = done + Σ_guard cut[guard]`.

`OrderRecord` keeps integer counts and float USD sums per agent row (the rows of
`abm.collect.AgentMarks`), cumulative over the run: a few list updates per order, no arrays,
so that the investors' fast path stays fast. USD amounts are display units: a buy's amounts
are its USD; a sale's are its tokens valued at the pool's spot price just before the order
(the guard cuts a quantity; the spot value makes quantities of different tokens comparable).
The exact base units done are kept too: `done_usd_units` (USD spent on buys) and
`done_token_units` (tokens sold, summed over tokens), which equal the ledger's movements.

This module imports neither mesa nor torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from abm.amm import ONE

#: The limits that can cut an order, in the order they apply.
GUARDS = ("cash", "position", "dilution", "slippage")
#: Cumulative per-agent columns of agents.parquet (docs/architecture.md): orders asked and
#: orders a guard cut (counts), USD asked and done (display units, sales at spot).
ORDER_COLUMNS = ("orders", "orders_cut", "asked_usd", "done_usd")
#: What a client's sale is for (`Client.sales`): its cash-out rule, the offering, and the
#: issuance that funds a training cost.
SALE_PURPOSES = ("cash_out", "offering", "funding")


class OrderRecord:
    """Cumulative order counters of `n` agents (rows), and what each guard cut.

    Per row: `orders` and `orders_cut` (counts), `asked_usd` and `done_usd` (USD display
    units), `cut_usd[guard]` and `cut_orders[guard]` (USD cut and orders it cut), and the exact
    base units done, `done_usd_units` (USD spent on buys) and `done_token_units` (tokens sold).
    """

    def __init__(self, n: int) -> None:
        self.orders = [0] * n
        self.orders_cut = [0] * n
        self.asked_usd = [0.0] * n
        self.done_usd = [0.0] * n
        self.done_usd_units = [0] * n
        self.done_token_units = [0] * n
        self.cut_usd = {g: [0.0] * n for g in GUARDS}
        self.cut_orders = {g: [0] * n for g in GUARDS}

    def __len__(self) -> int:
        return len(self.orders)

    def record(self, row: int, buy: bool, price: float, asked: int, done: int,
               cash: int = 0, position: int = 0, dilution: int = 0) -> None:
        """One order of agent `row`: `asked` and `done` in base units of what it pays with
        (USD for a buy, tokens for a sale, `price` USD per token before the order); `cash`,
        `position` and `dilution` what those limits cut (base units); the slippage guard cut
        the rest, `asked - done - cash - position - dilution`."""
        self.orders[row] += 1
        # Each int divided exactly (correctly rounded), then valued: a buy's USD is exact.
        unit = 1.0 if buy else price
        self.asked_usd[row] += asked / ONE * unit
        self.done_usd[row] += done / ONE * unit
        if buy:
            self.done_usd_units[row] += done
        else:
            self.done_token_units[row] += done
        if done == asked:
            return
        self.orders_cut[row] += 1
        slippage = asked - done - cash - position - dilution
        # Guard by guard, in `GUARDS` order (unrolled: this runs for most orders of a step).
        cut_usd, cut_orders = self.cut_usd, self.cut_orders
        if cash:
            cut_usd["cash"][row] += cash / ONE * unit
            cut_orders["cash"][row] += 1
        if position:
            cut_usd["position"][row] += position / ONE * unit
            cut_orders["position"][row] += 1
        if dilution:
            cut_usd["dilution"][row] += dilution / ONE * unit
            cut_orders["dilution"][row] += 1
        if slippage:
            cut_usd["slippage"][row] += slippage / ONE * unit
            cut_orders["slippage"][row] += 1

    def columns(self) -> list[list[float] | list[int]]:
        """The `ORDER_COLUMNS` values of every row, in `ORDER_COLUMNS` order."""
        return [self.orders, self.orders_cut, self.asked_usd, self.done_usd]

    def carried(self, old_rows: dict[int, int], new_ids: Sequence[int]) -> OrderRecord:
        """A record for the agents `new_ids` (in row order) carrying over the rows of this
        one (`old_rows`: agent id -> its row here); agents new to it start at zero."""
        new = OrderRecord(len(new_ids))
        for i, uid in enumerate(new_ids):
            j = old_rows.get(uid)
            if j is None:
                continue
            for name in ("orders", "orders_cut", "asked_usd", "done_usd", "done_usd_units",
                         "done_token_units"):
                getattr(new, name)[i] = getattr(self, name)[j]
            for g in GUARDS:
                new.cut_usd[g][i] = self.cut_usd[g][j]
                new.cut_orders[g][i] = self.cut_orders[g][j]
        return new

    def summary(self, agent_types: Sequence[str], type_order: Sequence[str]) -> dict[str, Any]:
        """By agent type (`agent_types[row]`; every type of `type_order`): orders, orders
        cut, USD asked and done, done as % of asked, and per guard the orders it cut and the
        USD it cut (summary.json `orders.by_type`)."""
        out: dict[str, Any] = {}
        for kind in type_order:
            rows = [i for i, t in enumerate(agent_types) if t == kind]
            asked = sum(self.asked_usd[i] for i in rows)
            done = sum(self.done_usd[i] for i in rows)
            out[kind] = {
                "orders": sum(self.orders[i] for i in rows),
                "orders_cut": sum(self.orders_cut[i] for i in rows),
                "asked_usd": asked,
                "done_usd": done,
                "done_pct": 100.0 * done / asked if asked else None,
                "by_guard": {g: {"orders_cut": sum(self.cut_orders[g][i] for i in rows),
                                 "cut_usd": sum(self.cut_usd[g][i] for i in rows)}
                             for g in GUARDS},
            }
        return out


class SaleBook:
    """A client's own sales of one purpose (`SALE_PURPOSES`), cumulative, base units:
    `asked` and `sold` tokens, `usd` received; `asked_usd` and `sold_usd` the tokens valued at
    the spot price just before each sale (display units)."""

    __slots__ = ("asked", "asked_usd", "sold", "sold_usd", "usd")

    def __init__(self) -> None:
        self.asked = self.sold = self.usd = 0
        self.asked_usd = self.sold_usd = 0.0

    def add(self, asked: int, sold: int, usd: int, price: float) -> None:
        self.asked += asked
        self.sold += sold
        self.usd += usd
        self.asked_usd += asked / ONE * price
        self.sold_usd += sold / ONE * price

    def as_dict(self) -> dict[str, float | None]:
        """Display units (tokens, USD), for summary.json `orders.clients.<id>.<purpose>`."""
        return {"asked_tokens": self.asked / ONE, "sold_tokens": self.sold / ONE,
                "sold_pct": 100 * self.sold / self.asked if self.asked else None,
                "asked_usd_at_spot": self.asked_usd, "sold_usd_at_spot": self.sold_usd,
                "proceeds_usd": self.usd / ONE}


def orders_summary(record: OrderRecord, agent_types: Sequence[str],
                   type_order: Sequence[str], client_sales: dict[str, dict[str, SaleBook]]
                   ) -> dict[str, Any]:
    """summary.json `orders`: the run's orders by agent type and guard
    (`OrderRecord.summary`) and every client's own sales by purpose, asked against sold
    (`client_sales`: client id -> purpose -> `SaleBook`; purposes it never asked for are
    left out)."""
    return {
        "by_type": record.summary(agent_types, type_order),
        "clients": {cid: {p: book.as_dict() for p, book in books.items() if book.asked}
                    for cid, books in client_sales.items()},
        "note": "orders asked (0.01 USD or token and above) and what the limits cut, in the "
                "order they apply: cash (max_trade and the USD balance for a buy, the holding "
                "for a sale), position (max_position), dilution (a client's new tokens), "
                "slippage (the trade guard's price-impact cap and minimum out); a sale valued "
                "at the spot price before it (docs/model.md, 7.12)",
    }
