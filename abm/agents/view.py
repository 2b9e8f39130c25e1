"""The public information every market agent sees: prices, their history and the FL signal.

The model refreshes one `MarketView` per step; agents read it and never reach into the pools to
decide (they do touch the pools to trade). `prices` is live: every swap writes the pool's new
spot price into it, so an agent acting later in the step sees the trades made before it
(Mesa's sequential activation) instead of a stale snapshot — otherwise a crowd acting on one
signal overshoots together and prices oscillate step to step. The parts of derived signals
that only need past steps (the price `lookback` steps ago, the sum of a window) are computed
once per step and cached, so 100 investors cost one numpy computation, not 100. What a strategy
derives from the live prices for all of its investors at once is kept current token by token:
`changes(mark)` says which tokens traded since the strategy last looked (a trade moves one
price), so only those entries are recomputed, and `version` tells a group's cached decision
that a price moved; every investor still sees the trades before it.

The signal is described in docs/model.md, section 7.8. All figures are floats in display
units: prices in USD per token, supplies in tokens, budgets in USD per round.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from abm.rewards import RewardPolicy


@dataclass
class MarketView:
    """Read-only market and contribution state at the current step (display units)."""

    tokens: list[str]
    policy: RewardPolicy  # says what holders can expect from a token (`token_value`)
    round_every: int
    #: The market's belief that another FL round follows each round (per round, in [0, 1)).
    #: It is not the run's length, which no market participant can know.
    round_continuation: float
    step: int = 0
    rounds_done: int = 0
    prices: np.ndarray = field(default_factory=lambda: np.zeros(0))  # USD per token, (n,)
    #: The same live prices as a list of Python floats (equal element by element), for
    #: scalar reads on the hot path: indexing a list is several times cheaper than reading
    #: a numpy element, and float arithmetic on it gives the same IEEE results.
    price_list: list[float] = field(default_factory=list)
    supply: np.ndarray = field(default_factory=lambda: np.zeros(0))  # tokens in existence, (n,)
    pooled: np.ndarray = field(default_factory=lambda: np.zeros(0))  # tokens in pools, (n,)
    #: Exponential moving average of reward shares: the public contribution signal, (n,).
    share_signal: np.ndarray = field(default_factory=lambda: np.zeros(0))
    last_shares: np.ndarray = field(default_factory=lambda: np.zeros(0))
    last_budget: float = 0.0  # USD paid by buyers in the latest round
    round_just_ran: bool = False
    #: Counts changes of what agents decide on (every `update`, `trade` and `publish_round`):
    #: a group's decision computed at one version holds until the next.
    version: int = 0
    #: Counts `update`s and `publish_round`s: a change of everything (`changes`).
    epoch: int = 0
    _traded: list[int] = field(default_factory=list)  # token indices traded since `update`
    _history: list[np.ndarray] = field(default_factory=list)
    _cache: dict[tuple, np.ndarray] = field(default_factory=dict)
    _past: dict[tuple, list[float]] = field(default_factory=dict)  # _cache entries as lists
    #: State the investors of one group keep together (e.g. fundamental investors' beliefs
    #: as one investors x tokens array), keyed by the strategy; see `abm.agents.strategies`.
    groups: dict[object, object] = field(default_factory=dict)

    #: Weight of the newest round in the share signal (about a 5-round memory).
    SIGNAL_WEIGHT = 0.3

    @property
    def n(self) -> int:
        return len(self.tokens)

    @property
    def history_length(self) -> int:
        """Number of recorded price vectors (one per step so far)."""
        return len(self._history)

    @property
    def expected_rounds_left(self) -> float:
        """Rounds the market expects still to come: p / (1 - p) under a per-round
        continuation probability p (geometric, memoryless: the same at every step)."""
        p = self.round_continuation
        return p / (1.0 - p)

    def update(self, step: int, prices: np.ndarray, supply: np.ndarray, pooled: np.ndarray):
        """New step: record prices (USD/token) and supplies (tokens); drop cached signals."""
        self.step = step
        self.prices = prices.copy()
        self.price_list = self.prices.tolist()
        self.supply = supply
        self.pooled = pooled
        self._history.append(prices)
        self._index = {t: i for i, t in enumerate(self.tokens)}
        self._cache.clear()
        self._past.clear()
        self._traded = []
        self.version += 1
        self.epoch += 1

    def trade(self, token: str, price: float, pooled: float) -> None:
        """A swap moved `token` to spot `price` (USD/token) with `pooled` tokens in its pool."""
        self.trade_at(self._index[token], price, pooled)

    def trade_at(self, i: int, price: float, pooled: float) -> None:
        """`trade` for the token of index `i`."""
        self.prices[i] = price
        self.price_list[i] = price
        self.pooled[i] = pooled
        self._traded.append(i)
        self.version += 1

    def changes(self, mark: tuple[int, int] | None) -> tuple[tuple[int, int], list[int] | None]:
        """The tokens whose price changed since `mark` (returned by an earlier call; None
        at first), in trade order with repeats, or None if everything may have changed (a
        new step or round), and the new mark."""
        now = (self.epoch, len(self._traded))
        if mark is None or mark[0] != self.epoch:
            return now, None
        return now, self._traded[mark[1]:]

    def publish_round(self, shares: np.ndarray, budget: float) -> None:
        """The federation's round result: shares (n,) summing to 1 or 0, budget in USD."""
        self.rounds_done += 1
        self.version += 1
        self.epoch += 1
        self.last_shares = shares
        self.last_budget = budget
        # Starts from the prior the model sets (equal shares), so one noisy round moves the
        # signal but does not replace it.
        w = self.SIGNAL_WEIGHT
        self.share_signal = (1 - w) * self.share_signal + w * shares

    def price_history(self, lookback: int) -> np.ndarray:
        """The last `lookback + 1` price vectors, oldest first, shape (<= lookback + 1, n)."""
        return np.asarray(self._history[-(lookback + 1):])

    def momentum(self, lookback: int) -> np.ndarray:
        """Return over `lookback` steps, p_now / p_{t-lookback} - 1, per token (n,)."""
        key = ("momentum", lookback)
        if key not in self._cache:
            self._cache[key] = self.price_history(lookback)[0]
        return self.prices / self._cache[key] - 1.0

    def deviation_from_mean(self, window: int) -> np.ndarray:
        """p_now / mean(p_now and the `window - 1` previous steps' prices) - 1, per token (n,)."""
        key = ("mean", window)
        if key not in self._cache:
            self._cache[key] = self.price_history(window - 1)[:-1].sum(axis=0)
        mean = (self._cache[key] + self.prices) / window
        return self.prices / mean - 1.0

    def momentum_at(self, lookback: int, j: int) -> float:
        """`momentum(lookback)[j]` from the live price list: the same float (one division
        and one subtraction, as numpy does element by element)."""
        past = self._past.get(("momentum", lookback)) or self._past_list(
            ("momentum", lookback), self.momentum, lookback)
        return self.price_list[j] / past[j] - 1.0

    def deviation_at(self, window: int, j: int) -> float:
        """`deviation_from_mean(window)[j]` from the live price list: the same float."""
        past = self._past.get(("mean", window)) or self._past_list(
            ("mean", window), self.deviation_from_mean, window)
        p = self.price_list[j]
        return p / ((past[j] + p) / window) - 1.0

    def _past_list(self, key: tuple, signal, arg: int) -> list[float]:
        """The cached past part of a signal (`_cache[key]`) as a list of floats, kept for
        the step; `signal(arg)` fills the cache entry if this step has not yet."""
        if key not in self._cache:
            signal(arg)
        past = self._past[key] = self._cache[key].tolist()
        return past

    def fundamental_values(self, horizon_discount: float) -> np.ndarray:
        """USD per token a holder can expect to get out of token i, (n), on the public
        signal: `token_values` of F_i = signal_i x budget x expected rounds left
        (`expected_rounds_left`) x `horizon_discount`."""
        return self.token_values(self.share_signal * self.last_budget
                                 * self.expected_rounds_left * horizon_discount)

    def token_values(self, flows: np.ndarray) -> np.ndarray:
        """USD per token a holder can expect to get out of token i, (n,), when `flows` (n,)
        USD of rewards are still to come to client i (discounted): valued by the reward
        policy (`RewardPolicy.token_value`: what the policy pays holders, on top of the
        pool's USD reserve R_i backing the S_i tokens). R_i uses live prices
        (`pooled x price`)."""
        reserve_usd = self.pooled * self.prices
        return self.policy.token_value(reserve_usd, self.supply, self.pooled, self.prices,
                                       flows)

    def token_values_at(self, tokens: np.ndarray, flows: np.ndarray) -> np.ndarray:
        """`token_values` of the tokens of index `tokens` (an index array, (m,), repeats
        allowed) with `flows` (m,) USD still to come to each: the same floats as the
        entries of `token_values` (the policy's `token_value` is elementwise), in O(m)."""
        prices, pooled = self.prices[tokens], self.pooled[tokens]
        return self.policy.token_value(pooled * prices, self.supply[tokens], pooled, prices,
                                       flows)
