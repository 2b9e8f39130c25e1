"""One toy component of every kind, each one class and nothing else (tests/test_registry.py).

Importing this module is all it takes for a scenario to use them: the classes register
themselves, and the schema, `wsf validate`, the browser controls and the scenario reference
see them at once. tests/conftest.py imports it, so that every test parametrised over
`registry.names(kind)` (fast paths, twins, conservation, ...) checks them as it checks the
built-ins; what must see the built-in registry alone (the committed scenario reference) runs
in a fresh interpreter.
"""

from __future__ import annotations

import numpy as np

from abm.agents.cash_out import CashOutRule
from abm.agents.conduct import ConductRule
from abm.agents.issuance import IssuanceRule
from abm.agents.lp_exit import ExitRule
from abm.agents.participation import ParticipationRule
from abm.agents.strategies import Order, Strategy
from abm.agents.switching import SwitchingRule
from abm.amm import to_units
from abm.fl.behaviours import Behaviour
from abm.fl.contribution import ContributionMethod
from abm.fl.data import Dataset, DatasetSource
from abm.registry import Params, param
from abm.rewards import Budget, DirectPolicy, RewardPolicy


class ToyPolicy(RewardPolicy):
    """Pays every allotment in cash, like `direct`, and tells holders their token is worth
    a fixed amount."""

    name = "toy_policy"

    class Params(Params):
        holder_value: float = param(0.5, "what a holder expects per token", unit="USD", ge=0)

    @classmethod
    def check_in(cls, params, scenario):
        most = 100 * scenario.market.opening_price
        if params.holder_value > most:
            return (f"holder_value {params.holder_value:g} USD is over 100 times the opening "
                    f"price ({most:g} USD at most): every fundamental investor would buy at "
                    f"any price")
        return None

    def token_value(self, reserve_usd, supply, pooled, prices, flow):
        # Elementwise, as the fast path needs: one token's scalars give that token's value.
        return np.full(np.shape(supply), self.params.holder_value)

    def deliver(self, market, treasury, clients, amounts):
        return DirectPolicy().deliver(market, treasury, clients, amounts)


class EvenRoundsBudget(Budget):
    """Pays a fixed amount on even rounds (0, 2, ...) and nothing on odd ones."""

    name = "even_rounds"

    class Params(Params):
        amount: float = param(300.0, "paid on even rounds", unit="USD per round", ge=0)

    def for_round(self, round_index, accuracy_gain):
        return self.params.amount if round_index % 2 == 0 else 0.0


class FavouriteMethod(ContributionMethod):
    """Gives the whole contribution to one client."""

    name = "favourite"

    class Params(Params):
        favourite: int = param(0, "index of the client credited", ge=0)

    @classmethod
    def check_in(cls, params, scenario):
        if params.favourite >= scenario.n_clients:
            return (f"favourite {params.favourite} names no client: the clients are 0 to "
                    f"{scenario.n_clients - 1}")
        return None

    def compute(self, result):
        c = np.zeros(result.n_clients)
        c[self.params.favourite] = 1.0
        return c


class Blobs(DatasetSource):
    """Two Gaussian blobs in the plane, one per class."""

    name = "blobs"
    size = 400

    class Params(DatasetSource.Params):
        spread: float = param(0.5, "standard deviation of each blob", gt=0, le=10)

    def load(self, rng):
        n = self.expected_size()
        y = np.arange(n) % 2
        X = rng.normal(0.0, self.params.spread, size=(n, 2)) + 2.0 * y[:, None]
        return Dataset(X.astype(np.float32), y, 2, self.name)


class Halfhearted(Behaviour):
    """Trains honestly and sends a scaled-down update."""

    name = "halfhearted"

    class Params(Params):
        scale: float = param(0.5, "factor applied to its update", ge=0, le=1)

    def update(self, train, global_params, generator):
        return train() * self.params.scale


class SellAll(CashOutRule):
    """Offers every token it holds after each round."""

    name = "sell_all"

    def tokens_to_sell(self, client):
        return client.balance(client.token)


class BuyFirst(Strategy):
    """Buys the first client's token every step."""

    name = "buy_first"

    class Params(Params):
        fraction: float = param(0.1, "share of cash per buy", ge=0, le=1)

    def decide(self, view, cash, holdings, rng):
        return [Order(0, "buy", cash * self.params.fraction)] if cash > 0 else []


class LeaveAt(ExitRule):
    """Leaves the pools at a given step."""

    name = "leave_at"

    class Params(Params):
        step: int = param(4, "step at which it leaves", unit="step", ge=1)

    def should_exit(self, lp, step):
        return step >= self.params.step


class EveryOther(ParticipationRule):
    """Trains in the first round and every other round after it, whatever it earns."""

    name = "every_other"

    def participates(self, history, cost_usd, participating):
        return len(history) % 2 == 0


class OneShot(IssuanceRule):
    """Every client sells a fixed number of new tokens into its pool in one step."""

    name = "one_shot"

    class Params(Params):
        step: int = param(1, "the step of the sale", unit="step", ge=1)
        tokens: float = param(100.0, "new tokens each client sells", unit="tokens", ge=0)

    def sells(self, client_index):
        return True

    def window(self):
        return (self.params.step, self.params.step + 1)

    def offered_tokens(self):
        return to_units(self.params.tokens)

    def tranche(self, client_index, step, remaining):
        return remaining if step == self.params.step else 0

    def issuable(self, genesis_supply):
        return self.offered_tokens()


class Coin(ConductRule):
    """Trains honestly or flips its labels, with fixed odds, whatever either pays."""

    name = "coin"

    class Params(Params):
        flip: float = param(0.5, "probability of flipping its labels in a round",
                            unit="fraction", ge=0, le=1)

    @property
    def actions(self):
        return ("honest", "label_flip")

    def probabilities(self, state):
        return np.array([1.0 - self.params.flip, self.params.flip])


class Restless(SwitchingRule):
    """Re-picks its strategy uniformly between its own and the noise trader's, whatever
    either earns, with probability `rate` per step."""

    name = "restless"

    class Params(Params):
        rate: float = param(0.5, "probability of a revision in a step",
                            unit="probability per step", ge=0, le=1)

    @property
    def strategies(self):
        return ("buy_first", "noise")

    @property
    def rate(self):
        return self.params.rate


SCENARIO = {
    "name": "toys",
    "seed": 3,
    "steps": 6,
    "round_every": 2,
    "fl": {"dataset": {"name": "blobs", "spread": 0.4}, "model": "logreg",
           "partition": {"scheme": "iid"}},
    "contribution": {"method": "favourite", "params": {"favourite": 1}},
    "market": {"issuance": {"kind": "one_shot", "step": 1, "tokens": 50}},
    "rewards": {"policy": "toy_policy", "params": {"holder_value": 0.3},
                "budget": {"kind": "even_rounds", "amount": 200}},
    "clients": [{"count": 2, "cash_out": {"kind": "sell_all"},
                 "conduct": {"kind": "coin", "flip": 0.5}},
                {"count": 1, "behaviour": "halfhearted", "behaviour_params": {"scale": 0.2},
                 "participation": {"kind": "every_other"}}],
    "investors": [{"strategy": "buy_first", "count": 2, "params": {"fraction": 0.2},
                   "inventory": 0.0, "switching": {"kind": "restless", "rate": 0.5}}],
    "liquidity_providers": [{"count": 1, "exit": {"kind": "leave_at", "step": 3}}],
}


class Whale(Strategy):
    """Spends a large share of its cash on one token at one step, and records the buy as an
    event of a kind of its own, `whale_buy` (events.parquet)."""

    name = "whale"
    events = ("whale_buy",)

    class Params(Params):
        step: int = param(3, "step of the buy", unit="step", ge=1)
        token: int = param(0, "index of the client whose token it buys", ge=0)
        fraction: float = param(0.5, "share of its cash spent", unit="fraction", ge=0, le=1)

    @classmethod
    def check_in(cls, params, scenario):
        if params.token >= scenario.n_clients:
            return (f"token {params.token} names no client: the clients are 0 to "
                    f"{scenario.n_clients - 1}")
        return None

    def decide(self, view, cash, holdings, rng):
        p = self.params
        if view.step != p.step or cash <= 0:
            return []
        self._event("whale_buy", p.token, f"a whale buys {view.tokens[p.token]} for "
                                          f"{cash * p.fraction:,.0f} USD")
        return [Order(p.token, "buy", cash * p.fraction)]
