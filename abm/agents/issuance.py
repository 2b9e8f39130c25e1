"""Issuance: offerings through which investors' USD reaches the clients that train
(docs/model.md, 7.14).

An issuance rule is a registered component (`abm.registry`, kind `issuance`), named once per
scenario in `market.issuance`. It says how many tokens each client puts up for sale in a
step (`tranche`) and whether a client issues new tokens to pay a training cost its USD cannot
cover (`fund_costs`), within a dilution limit (`issuable`). The client executes the sales
through its pool with its own price-impact limit (`abm.agents.client.Client`), so every token
and USD moves through the ledger and every buyer pays the pool's price and fee.

This module imports neither mesa nor torch.
"""

from __future__ import annotations

from typing import Literal

from pydantic import model_validator

from abm.amm import to_units
from abm.registry import Component, param
from abm.registry import Params as _Params


class IssuanceRule(Component):
    """Base class: no offering and no issuance (what `none` does)."""

    kind = "issuance"
    #: Whether a client issues new tokens to cover a round's training cost it cannot pay.
    fund_costs: bool = False
    #: Where offered tokens come from: newly minted, or the client's genesis supply.
    source: Literal["new", "genesis"] = "new"

    def sells(self, client_index: int) -> bool:
        """Whether client `client_index` (0-based, scenario order) takes part in an offering."""
        return False

    def tranche(self, client_index: int, step: int, remaining: int) -> int:
        """Tokens (base units) client `client_index` offers at `step` (Mesa's step counter,
        1 at the first step), `remaining` being what its offering has left to sell."""
        return 0

    def window(self) -> tuple[int, int]:
        """The steps `[start, end)` in which offerings sell (empty: none)."""
        return (0, 0)

    def offered_tokens(self) -> int:
        """Tokens (base units) each selling client offers over the whole offering."""
        return 0

    def issuable(self, genesis_supply: int) -> int:
        """Most new tokens (base units) one client may issue over the run."""
        return 0


class NoIssuance(IssuanceRule):
    """No offering: clients' tokens are created only at genesis and by the reward policy, so
    investors' USD reaches a client only when the client sells tokens it was given."""

    name = "none"


class Offering(IssuanceRule):
    """Clients sell tokens into their own pools over a schedule, newly issued (diluting every
    holder) or from their genesis supply: in every step from start_step to end_step - 1 a
    selling client offers what is left of its offering divided by the steps left, capped by
    its price-impact limit (what is not sold rolls into the next step; what is unsold at the
    end is never issued). With fund_costs, a client whose USD does not cover a round's
    cost_per_round issues and sells new tokens for the shortfall. New tokens of both kinds
    together stay within dilution_limit x the client's genesis supply."""

    name = "offering"

    class Params(_Params):
        clients: list[int] = param([], "clients that sell, by 0-based index in scenario order "
                                   "(c00 is 0); empty: every client", max_length=1000)
        source: Literal["new", "genesis"] = param(
            "new", "new: tokens minted for the offering (supply grows, holders are diluted); "
            "genesis: tokens from the client's genesis supply (supply unchanged)")
        tokens: float = param(1000.0, "tokens each selling client offers over the offering",
                              unit="tokens", ge=0, le=1e15)
        start_step: int = param(1, "first step of the offering", unit="step", ge=1, le=10**6)
        end_step: int = param(101, "the offering sells in steps start_step to end_step - 1",
                              unit="step", ge=2, le=10**6)
        fund_costs: bool = param(False, "each round, a training client whose USD does not cover "
                                 "its cost_per_round issues and sells new tokens for the "
                                 "shortfall (within dilution_limit)")
        dilution_limit: float = param(0.2, "new tokens one client may issue over the run "
                                      "(offering and cost funding), as a share of its genesis "
                                      "supply (market.initial_supply)", unit="fraction",
                                      ge=0, le=10)

        @model_validator(mode="after")
        def _schedule(self):
            if self.end_step <= self.start_step:
                raise ValueError(f"end_step ({self.end_step}) must be after start_step "
                                 f"({self.start_step})")
            if len(set(self.clients)) != len(self.clients) or any(c < 0 for c in self.clients):
                raise ValueError(f"clients must be distinct indices >= 0, got {self.clients}")
            return self

    @classmethod
    def check_in(cls, params, scenario):
        n = scenario.n_clients
        bad = [c for c in params.clients if c >= n]
        if bad:
            return f"clients {bad} name no client: the clients are 0 to {n - 1}"
        if params.end_step - 1 > scenario.steps:
            return (f"end_step {params.end_step} lies beyond the run: the offering must end by "
                    f"step {scenario.steps + 1} (steps + 1)")
        supply = scenario.market.initial_supply
        if params.source == "new" and params.tokens > params.dilution_limit * supply:
            return (f"an offering of {params.tokens:g} new tokens exceeds the dilution limit "
                    f"of {params.dilution_limit:g} x {supply:g} genesis tokens; offer fewer or "
                    f"raise dilution_limit")
        if params.source == "genesis":
            free = supply - (scenario.market.pool_tokens
                             if scenario.market.seeded_by == "client" else 0.0)
            if params.tokens > free:
                return (f"an offering of {params.tokens:g} genesis tokens exceeds the "
                        f"{free:g} a client holds after genesis")
        return None

    @property
    def fund_costs(self) -> bool:  # type: ignore[override]
        return self.params.fund_costs

    @property
    def source(self) -> str:  # type: ignore[override]
        return self.params.source

    def sells(self, client_index):
        return not self.params.clients or client_index in self.params.clients

    def window(self):
        return (self.params.start_step, self.params.end_step)

    def offered_tokens(self):
        return to_units(self.params.tokens)

    def tranche(self, client_index, step, remaining):
        start, end = self.window()
        if not (start <= step < end) or remaining <= 0 or not self.sells(client_index):
            return 0
        return remaining // (end - step)

    def issuable(self, genesis_supply):
        # Exact: the limit as a rational of base units, rounded down.
        return to_units(self.params.dilution_limit) * genesis_supply // to_units(1)
